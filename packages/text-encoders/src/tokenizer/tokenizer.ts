// A tokenizer assembled from the sections of a Hugging Face tokenizer.json: added tokens,
// normalizer, pre-tokenizer, model and post-processor, run in that order as the Rust
// tokenizers library runs them; plus the padding and truncation of transformers' tokenizer call.
import { TokenizerError } from '../errors.js';
import { AddedTokenMatcher, type AddedToken } from './added-tokens.js';
import { BpeModel } from './bpe.js';
import { buildNormalizer, type Normalizer } from './normalizers.js';
import { buildPostProcessor, type SpecialTokenFrame } from './post-processors.js';
import { buildPreTokenizer, type PreTokenizer } from './pre-tokenizers.js';
import { UnigramModel } from './unigram.js';

/** What transformers' tokenizer_config.json / special_tokens_map.json add to tokenizer.json. */
export interface TokenizerSettings {
  /** The padding token's text (transformers' pad_token). */
  padToken?: string | null;
  /** transformers' model_max_length (CLIP: 77). */
  modelMaxLength?: number | null;
}

/** One prompt as a model reads it: `maxLength` ids, truncated and padded on the right. */
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
  readonly padId: number | null;
  readonly modelMaxLength: number | null;
  private readonly rawTokens: AddedTokenMatcher;
  private readonly normalizedTokens: AddedTokenMatcher;
  private readonly normalizer: Normalizer | null;
  private readonly preTokenizer: PreTokenizer | null;
  private readonly model: { tokenize(piece: string): number[] };
  private readonly frame: SpecialTokenFrame;
  private readonly vocab = new Map<string, number>();

  /** `source` names the file in errors. */
  constructor(spec: TokenizerJson, settings: TokenizerSettings, source: string) {
    const model = spec.model as Json | undefined;
    if (!model || typeof model !== 'object') throw new TokenizerError(`${source}: no model section`);
    if (model.type === 'BPE' || (model.type === undefined && 'merges' in model)) {
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
    this.rawTokens = new AddedTokenMatcher(added.filter((t) => !t.normalized));
    this.normalizedTokens = new AddedTokenMatcher(added.filter((t) => t.normalized));
    this.normalizer = buildNormalizer(spec.normalizer, `${source}: normalizer`);
    this.preTokenizer = buildPreTokenizer(spec.pre_tokenizer, `${source}: pre_tokenizer`);
    this.frame = buildPostProcessor(spec.post_processor, `${source}: post_processor`);

    const padding = spec.padding as { pad_id?: number } | null | undefined;
    if (settings.padToken) {
      const id = this.vocab.get(settings.padToken);
      if (id === undefined) throw new TokenizerError(`${source}: the pad token ${JSON.stringify(settings.padToken)} is not in the vocabulary`);
      this.padId = id;
    } else this.padId = padding?.pad_id ?? null;
    this.modelMaxLength = settings.modelMaxLength ?? null;
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
    if (!Number.isInteger(maxLength) || maxLength < this.specialTokenCount) {
      throw new RangeError(`encodePadded: maxLength must be an integer of at least ${this.specialTokenCount} (the special tokens), got ${maxLength}`);
    }
    if (this.padId === null) throw new TokenizerError('encodePadded: this tokenizer has no pad token (tokenizer_config.json names none)');
    const content = this.encode(text, { addSpecialTokens: false });
    const room = maxLength - this.specialTokenCount;
    const kept = content.slice(0, room);
    const ids = [...this.frame.before, ...kept, ...this.frame.after];
    const attentionMask = ids.map(() => 1);
    while (ids.length < maxLength) {
      ids.push(this.padId);
      attentionMask.push(0);
    }
    return { ids, attentionMask, truncatedTokens: content.length - kept.length };
  }
}
