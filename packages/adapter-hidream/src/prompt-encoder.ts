// HiDreamImagePipeline's prompt encoding (diffusers' encode_prompt): two CLIPs with projection
// (their text embeddings concatenated into the pooled embedding), T5's last hidden state of the
// prompt padded to max_sequence_length (its padding masked), and every hidden state of Llama 3.1
// past the embeddings, stacked (the transformer picks its llama_layers from them). The tokenizers
// load with the encoder; the four encoders' weights load on first use and can be released after
// it, since Llama 3.1 8B alone is 16 GB in bf16.
import { join } from 'node:path';

import { concat, stack, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { missingFolders, requireFolders, type LoadOptions } from '@ditcache/diffusion';
import { ClipTextModel, DecoderLM, HIDREAM_LLAMA_MAX_LENGTH, T5Encoder, loadTokenizer, type Tokenizer } from '@ditcache/text-encoders';

/** The folders of a HiDream pipeline that prompt encoding needs. */
export const TEXT_COMPONENTS = [
  'tokenizer',
  'tokenizer_2',
  'tokenizer_3',
  'tokenizer_4',
  'text_encoder',
  'text_encoder_2',
  'text_encoder_3',
  'text_encoder_4',
] as const;

/** diffusers' default max_sequence_length for HiDream's T5 and Llama (and its CLIPs, up to their own limit). */
export const MAX_SEQUENCE_LENGTH = HIDREAM_LLAMA_MAX_LENGTH;

/** The token limit diffusers' HiDream pipeline gives its CLIP tokenizers. */
export const CLIP_MAX_LENGTH = 218;

export interface HiDreamEncodePromptOptions {
  /** Tokens of T5 and Llama (and of the CLIPs, up to 218) a prompt is padded or truncated to (default 128). */
  maxSequenceLength?: number;
}

/** What encode returns; the caller owns (and disposes) every tensor. */
export interface HiDreamPromptEmbeddings {
  /** T5's last hidden state (B, tokens, d_model). */
  promptEmbedsT5: Tensor;
  /** Llama's hidden states after the embeddings, stacked (layers, B, tokens, hidden). */
  promptEmbedsLlama3: Tensor;
  /** The two CLIPs' text embeddings, concatenated (B, projection 1 + projection 2). */
  pooledPromptEmbeds: Tensor;
  /** Tokens truncation dropped from the longest prompt, per tokenizer (diffusers warns of these). */
  truncatedTokens: { clip: number; clip2: number; t5: number; llama: number };
  /** The token counts each tokenizer padded to. */
  lengths: { clip: number; t5: number; llama: number };
}

/** The text folders a pipeline folder lacks (none when prompts can be encoded). */
export function missingTextComponents(dir: string): string[] {
  return missingFolders(dir, TEXT_COMPONENTS);
}

interface Encoders {
  clip: ClipTextModel;
  clip2: ClipTextModel;
  t5: T5Encoder;
  llama: DecoderLM;
}

export class HiDreamPromptEncoder implements Disposable {
  readonly tokenizers: readonly [clip: Tokenizer, clip2: Tokenizer, t5: Tokenizer, llama: Tokenizer];
  private encoders: Encoders | null = null;

  constructor(
    readonly dir: string,
    private readonly opts: LoadOptions = {},
  ) {
    requireFolders(dir, TEXT_COMPONENTS, 'prompt encoding');
    const llama = loadTokenizer(join(dir, 'tokenizer_4'));
    // diffusers' HiDreamImagePipeline pads Llama's prompts with its eos token (Llama 3.1 has no pad token).
    if (llama.eosToken) llama.setPadToken(llama.eosToken);
    this.tokenizers = [loadTokenizer(join(dir, 'tokenizer')), loadTokenizer(join(dir, 'tokenizer_2')), loadTokenizer(join(dir, 'tokenizer_3')), llama];
  }

  /** Whether the encoders' weights are loaded. */
  get loaded(): boolean {
    return this.encoders !== null;
  }

  /** Loads the four encoders' weights now (encode does it when needed); all or none stay loaded. */
  load(): void {
    if (this.encoders) return;
    const at = (name: string) => join(this.dir, name);
    const loaded: Disposable[] = [];
    const keep = <T extends Disposable>(model: T): T => {
      loaded.push(model);
      return model;
    };
    try {
      this.encoders = {
        clip: keep(ClipTextModel.load(at('text_encoder'), this.opts)),
        clip2: keep(ClipTextModel.load(at('text_encoder_2'), this.opts)),
        t5: keep(T5Encoder.load(at('text_encoder_3'), this.opts)),
        llama: keep(DecoderLM.load(at('text_encoder_4'), this.opts)),
      };
    } catch (e) {
      for (const model of loaded) model[Symbol.dispose]();
      throw e;
    }
  }

  /** Frees the encoders' weights; the next encode loads them again. The tokenizers stay. */
  release(): void {
    if (!this.encoders) return;
    for (const model of Object.values(this.encoders)) model.dispose();
    this.encoders = null;
  }

  /** diffusers' HiDreamImagePipeline.encode_prompt for one prompt or a batch (the same prompt for all four encoders). */
  encode(prompt: string | readonly string[], opts: HiDreamEncodePromptOptions = {}): HiDreamPromptEmbeddings {
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new TypeError('encodePrompt: give at least one prompt');
    const length = opts.maxSequenceLength ?? MAX_SEQUENCE_LENGTH;
    if (!Number.isInteger(length) || length < 1) throw new RangeError(`encodePrompt: maxSequenceLength must be a positive integer, got ${length}`);
    const [clipTokenizer, clip2Tokenizer, t5Tokenizer, llamaTokenizer] = this.tokenizers;
    // diffusers' lengths: min(max_sequence_length, 218) for the CLIPs, else the tokenizer's model_max_length.
    const lengths = {
      clip: Math.min(length, CLIP_MAX_LENGTH),
      t5: Math.min(length, t5Tokenizer.modelMaxLength ?? length),
      llama: Math.min(length, llamaTokenizer.modelMaxLength ?? length),
    };
    const encoded = {
      clip: prompts.map((p) => clipTokenizer.encodePadded(p, lengths.clip)),
      clip2: prompts.map((p) => clip2Tokenizer.encodePadded(p, lengths.clip)),
      t5: prompts.map((p) => t5Tokenizer.encodePadded(p, lengths.t5)),
      llama: prompts.map((p) => llamaTokenizer.encodePadded(p, lengths.llama)),
    };
    this.load();
    const { clip, clip2, t5, llama } = this.encoders as Encoders;
    const device = this.opts.device ?? 'cpu';
    const rows = (what: { ids: number[]; attentionMask: number[] }[], key: 'ids' | 'attentionMask', n: number): Tensor =>
      tensor(Int32Array.from(what.flatMap((e) => e[key])), [prompts.length, n], { device });
    const mostTruncated = (what: { truncatedTokens: number }[]) => Math.max(...what.map((e) => e.truncatedTokens));
    return {
      ...tidy(() => {
        // The CLIPs run without a mask, T5 and Llama with their padding masked, as diffusers calls them.
        const textEmbeds = (model: ClipTextModel, ids: Tensor): Tensor => model.forward(ids).textEmbeds as Tensor;
        const pooled = concat([textEmbeds(clip, rows(encoded.clip, 'ids', lengths.clip)), textEmbeds(clip2, rows(encoded.clip2, 'ids', lengths.clip))], 1);
        const t5States = t5.forward(rows(encoded.t5, 'ids', lengths.t5), { attentionMask: rows(encoded.t5, 'attentionMask', lengths.t5) });
        const llamaStates = llama.forward(rows(encoded.llama, 'ids', lengths.llama), {
          attentionMask: rows(encoded.llama, 'attentionMask', lengths.llama),
          outputHiddenStates: true,
        }).hiddenStates as Tensor[];
        return { promptEmbedsT5: t5States, promptEmbedsLlama3: stack(llamaStates.slice(1), 0), pooledPromptEmbeds: pooled };
      }),
      truncatedTokens: {
        clip: mostTruncated(encoded.clip),
        clip2: mostTruncated(encoded.clip2),
        t5: mostTruncated(encoded.t5),
        llama: mostTruncated(encoded.llama),
      },
      lengths,
    };
  }

  dispose(): void {
    this.release();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
