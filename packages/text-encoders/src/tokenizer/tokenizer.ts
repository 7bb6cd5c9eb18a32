// A tokenizer assembled from the sections of a Hugging Face tokenizer.json: added tokens,
// normalizer, pre-tokenizer, model and post-processor, run in that order as the Rust
// tokenizers library runs them; plus the padding and truncation of transformers' tokenizer call.
import { TokenizerError } from '../errors.js';
import { AddedTokenMatcher, type AddedToken } from './added-tokens.js';
import { BpeModel } from './bpe.js';
import { buildDecoder, type Decoder } from './decoders.js';
import { buildNormalizer, type Normalizer } from './normalizers.js';
import { buildPostProcessor, type SpecialTokenFrame } from './post-processors.js';
import { buildPreTokenizer, type PreTokenizer } from './pre-tokenizers.js';
import { finishDecoding, type TransformersDecoding } from './transformers-decode.js';
import { UnigramModel } from './unigram.js';

/** What transformers' tokenizer_config.json / special_tokens_map.json add to tokenizer.json. */
export interface TokenizerSettings {
  /** The padding token's text (transformers' pad_token). */
  padToken?: string | null;
  /** transformers' model_max_length (CLIP: 77). */
  modelMaxLength?: number | null;
  /** The end-of-sequence token's text (HiDream pads with it). */
  eosToken?: string | null;
  /** transformers' padding_side: where padding goes (default right). */
  paddingSide?: 'left' | 'right';
  /** What transformers' decode does beyond tokenizer.json's decoder (the tokenizer class's own decoder, clean-up). */
  decoding?: TransformersDecoding;
}

/** transformers' tokenizer call on several texts: `tokenizer(texts, padding, max_length, truncation, add_special_tokens)`. */
export interface BatchOptions {
  /** 'longest': to the longest text of the batch (padding=True); 'max_length': to maxLength; false: none. */
  padding?: 'longest' | 'max_length' | false;
  maxLength?: number;
  /** Cut each text's tokens so that, with the special tokens, it holds at most maxLength. */
  truncation?: boolean;
  addSpecialTokens?: boolean;
}

/** Token ids and attention masks of a batch, padded as asked. */
export interface BatchEncoding {
  ids: number[][];
  /** 1 for real tokens, 0 for padding. */
  attentionMask: number[][];
  /** Per text, the tokens that truncation dropped. */
  truncatedTokens: number[];
}

/** One prompt as a model reads it: `maxLength` ids, truncated, padded on the paddingSide (right unless tokenizer_config.json says left). */
export interface PaddedEncoding {
  /** Token ids with the special tokens, padded to maxLength. */
  ids: number[];
  /** 1 for real tokens, 0 for padding. */
  attentionMask: number[];
  /** Tokens that truncation dropped (0 when the prompt fit). */
  truncatedTokens: number;
}

type Json = Record<string, unknown>;

/** The JSON of a tokenizer.json (or one built in its shape from older files). */
export type TokenizerJson = Json;

export class Tokenizer {
  /** The padding token's id; setPadToken changes it. */
  padId: number | null;
  readonly modelMaxLength: number | null;
  readonly eosToken: string | null;
  readonly paddingSide: 'left' | 'right';
  private readonly rawTokens: AddedTokenMatcher;
  private readonly normalizedTokens: AddedTokenMatcher;
  private readonly normalizer: Normalizer | null;
  private readonly preTokenizer: PreTokenizer | null;
  private readonly model: { tokenize(piece: string): number[] };
  private readonly frame: SpecialTokenFrame;
  private readonly vocab = new Map<string, number>();
  private readonly idToToken = new Map<number, string>();
  private readonly specialIds = new Set<number>();
  private readonly decoderSpec: unknown;
  private readonly decoding: TransformersDecoding;
  private readonly source: string;
  private decoder: Decoder | null = null;

  /** `source` names the file in errors. */
  constructor(spec: TokenizerJson, settings: TokenizerSettings, source: string) {
    this.source = source;
    const model = spec.model as Json | undefined;
    if (!model || typeof model !== 'object') throw new TokenizerError(`${source}: no model section`);
    if (model.type === 'BPE' || (model.type === undefined && 'merges' in model)) {
      if (model.dropout !== null && model.dropout !== undefined && model.dropout !== 0) {
        throw new TokenizerError(
          `${source}: model.dropout ${JSON.stringify(model.dropout)} is not supported (BPE dropout samples merges at random; supported: null)`,
        );
      }
      if (!model.vocab || typeof model.vocab !== 'object' || !Array.isArray(model.merges)) {
        throw new TokenizerError(`${source}: the BPE model lacks ${!Array.isArray(model.merges) ? 'merges' : 'vocab'}`);
      }
      const vocab = model.vocab as Record<string, number>;
      for (const [token, id] of Object.entries(vocab)) this.vocab.set(token, id);
      const merges = (model.merges as (string | [string, string])[]).map((m): [string, string] => {
        if (Array.isArray(m)) return [m[0], m[1]];
        const space = m.indexOf(' ', 1);
        if (space < 0) throw new TokenizerError(`${source}: merge ${JSON.stringify(m)} is not two tokens`);
        return [m.slice(0, space), m.slice(space + 1)];
      });
      this.model = new BpeModel({
        vocab: this.vocab,
        merges,
        unkToken: (model.unk_token as string | null) ?? null,
        endOfWordSuffix: (model.end_of_word_suffix as string | null) ?? '',
        continuingSubwordPrefix: (model.continuing_subword_prefix as string | null) ?? '',
        fuseUnk: model.fuse_unk === true,
        byteFallback: model.byte_fallback === true,
        ignoreMerges: model.ignore_merges === true,
      });
    } else if (model.type === 'Unigram') {
      const vocab = model.vocab as [string, number][];
      vocab.forEach(([piece], id) => {
        if (!this.vocab.has(piece)) this.vocab.set(piece, id);
      });
      this.model = new UnigramModel({ vocab, unkId: model.unk_id as number, byteFallback: model.byte_fallback === true });
    } else {
      throw new TokenizerError(`${source}: model type ${JSON.stringify(model.type)} is not supported (supported: BPE, Unigram)`);
    }

    const added: AddedToken[] = ((spec.added_tokens ?? []) as Json[]).map((t) => ({
      id: t.id as number,
      content: t.content as string,
      normalized: t.normalized === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      singleWord: t.single_word === true,
    }));
    for (const t of added) this.vocab.set(t.content, t.id);
    this.normalizer = buildNormalizer(spec.normalizer, `${source}: normalizer`);
    const normalize = this.normalizer;
    for (const [token, id] of this.vocab) if (!this.idToToken.has(id)) this.idToToken.set(id, token);
    // tokenizers gives a normalized added token's id back as its normalised content (decode included).
    for (const t of added) this.idToToken.set(t.id, t.normalized && normalize ? normalize(t.content) : t.content);
    for (const t of (spec.added_tokens ?? []) as Json[]) if (t.special === true) this.specialIds.add(t.id as number);
    this.rawTokens = new AddedTokenMatcher(added.filter((t) => !t.normalized));
    // A normalized token is looked for in the normalised text, so as its normalised content.
    this.normalizedTokens = new AddedTokenMatcher(
      added.filter((t) => t.normalized),
      (t) => (normalize ? normalize(t.content) : t.content),
    );
    this.decoding = settings.decoding ?? {};
    this.decoderSpec = this.decoding.decoder ?? spec.decoder;
    this.preTokenizer = buildPreTokenizer(spec.pre_tokenizer, `${source}: pre_tokenizer`);
    this.frame = buildPostProcessor(spec.post_processor, `${source}: post_processor`);

    const padding = spec.padding as { pad_id?: number } | null | undefined;
    this.padId = padding?.pad_id ?? null;
    if (settings.padToken) this.setPadToken(settings.padToken);
    this.modelMaxLength = settings.modelMaxLength ?? null;
    this.eosToken = settings.eosToken ?? null;
    this.paddingSide = settings.paddingSide ?? 'right';
  }

  /** Pads with `token` from now on, as diffusers' HiDream sets `tokenizer_4.pad_token = tokenizer_4.eos_token`. */
  setPadToken(token: string): void {
    const id = this.vocab.get(token);
    if (id === undefined) throw new TokenizerError(`${this.source}: the pad token ${JSON.stringify(token)} is not in the vocabulary`);
    this.padId = id;
  }

  /** The id of a token of the vocabulary (added tokens included), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.vocab.get(token);
  }

  /** Special tokens the post-processor adds to one sequence. */
  get specialTokenCount(): number {
    return this.frame.before.length + this.frame.after.length;
  }

  /** Token ids of `text`, with the special tokens unless `addSpecialTokens` is false (no truncation). */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    const ids: number[] = [];
    for (const raw of this.rawTokens.split(text)) {
      if ('id' in raw) {
        ids.push(raw.id);
        continue;
      }
      const normalized = this.normalizer ? this.normalizer(raw.text) : raw.text;
      for (const part of this.normalizedTokens.split(normalized)) {
        if ('id' in part) {
          ids.push(part.id);
          continue;
        }
        const pieces = this.preTokenizer ? this.preTokenizer([part.text]) : [part.text];
        for (const piece of pieces) if (piece) ids.push(...this.model.tokenize(piece));
      }
    }
    return opts.addSpecialTokens === false ? ids : [...this.frame.before, ...ids, ...this.frame.after];
  }

  /**
   * transformers' `tokenizer(text, padding="max_length", max_length=maxLength, truncation=True)`:
   * the text's tokens cut to leave room for the special tokens, the special tokens added, then
   * padding to maxLength.
   */
  encodePadded(text: string, maxLength: number): PaddedEncoding {
    const batch = this.encodeBatch([text], { padding: 'max_length', maxLength, truncation: true });
    return { ids: batch.ids[0], attentionMask: batch.attentionMask[0], truncatedTokens: batch.truncatedTokens[0] };
  }

  /** transformers' tokenizer call on a batch of texts (see BatchOptions); padding goes on the paddingSide. */
  encodeBatch(texts: readonly string[], opts: BatchOptions = {}): BatchEncoding {
    const addSpecialTokens = opts.addSpecialTokens !== false;
    const specials = addSpecialTokens ? this.specialTokenCount : 0;
    const { maxLength } = opts;
    const needsLength = opts.truncation || opts.padding === 'max_length';
    if (needsLength && (maxLength === undefined || !Number.isInteger(maxLength) || maxLength < specials)) {
      throw new RangeError(`encodeBatch: maxLength must be an integer of at least ${specials} (the special tokens), got ${maxLength}`);
    }
    const rows = texts.map((text) => {
      const content = this.encode(text, { addSpecialTokens: false });
      const kept = opts.truncation ? content.slice(0, (maxLength as number) - specials) : content;
      const ids = addSpecialTokens ? [...this.frame.before, ...kept, ...this.frame.after] : kept;
      return { ids, truncated: content.length - kept.length };
    });
    const longest = Math.max(0, ...rows.map((r) => r.ids.length));
    const width = opts.padding === 'max_length' ? Math.max(maxLength as number, longest) : opts.padding === 'longest' ? longest : 0;
    if (rows.some((r) => r.ids.length < width) && this.padId === null) {
      throw new TokenizerError('encodeBatch: this tokenizer has no pad token (tokenizer_config.json names none; setPadToken sets one)');
    }
    const pad = (row: number[], value: number) => {
      const fill: number[] = new Array(Math.max(0, width - row.length)).fill(value);
      return this.paddingSide === 'left' ? [...fill, ...row] : [...row, ...fill];
    };
    return {
      ids: rows.map((r) => pad(r.ids, this.padId as number)),
      attentionMask: rows.map((r) =>
        pad(
          r.ids.map(() => 1),
          0,
        ),
      ),
      truncatedTokens: rows.map((r) => r.truncated),
    };
  }

  /** transformers' decode of `ids`: tokenizer.json's decoder (or the tokenizer class's), then what transformers adds (settings.decoding). */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    this.decoder ??= buildDecoder(this.decoderSpec, `${this.source}: decoder`);
    const tokens: string[] = [];
    for (const id of ids) {
      const token = this.idToToken.get(id);
      if (token !== undefined && !(opts.skipSpecialTokens && this.specialIds.has(id))) tokens.push(token);
    }
    return finishDecoding(this.decoder(tokens), this.decoding);
  }
}
