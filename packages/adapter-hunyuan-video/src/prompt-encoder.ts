// HunyuanVideoPipeline's prompt encoding (diffusers' encode_prompt): each prompt wrapped in the
// pipeline's video-description template and read by its Llama 3 text encoder, padded to
// max_sequence_length + 95 tokens; the pipeline keeps the hidden state two layers before the last
// (hidden_states[-3]) and crops the template's first 95 tokens from it and from the mask. CLIP-L's
// pooled output of the prompt (77 tokens) is the pooled embedding. The 95 is diffusers' crop_start,
// counted with Llama 3's vocabulary and passed, not counted again, so a tokenizer that splits the
// template otherwise keeps (or loses) template tokens exactly as diffusers does. The tokenizers load
// with the encoder; the weights load on first use and can be released after it, since the Llama 3
// 8B text encoder is 16 GB in bf16.
import { join } from 'node:path';

import { tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { ConfigError, missingFolders, requireFolders, type LoadOptions } from '@ditcache/diffusion';
import {
  ClipTextModel,
  DecoderLM,
  HUNYUAN_VIDEO_MAX_LENGTH,
  HUNYUAN_VIDEO_PROMPT_TEMPLATE,
  formatPrompt,
  loadTokenizer,
  type PaddedEncoding,
  type Tokenizer,
} from '@ditcache/text-encoders';

/** The folders of a HunyuanVideo pipeline that prompt encoding needs. */
export const TEXT_COMPONENTS = ['tokenizer', 'text_encoder', 'tokenizer_2', 'text_encoder_2'] as const;

/** HunyuanVideoPipeline's default max_sequence_length: Llama tokens kept after the template's 95. */
export const DEFAULT_MAX_SEQUENCE_LENGTH = HUNYUAN_VIDEO_MAX_LENGTH;

/** The token limit diffusers gives CLIP-L's tokenizer. */
export const CLIP_MAX_LENGTH = 77;

/** diffusers' num_hidden_layers_to_skip: the embeddings are hidden_states[-(2 + 1)]. */
const HIDDEN_LAYERS_TO_SKIP = 2;

export interface HunyuanVideoEncodePromptOptions {
  /** Llama tokens kept after the template's first 95 (default 256); the prompt is padded or truncated to it. */
  maxSequenceLength?: number;
}

/** What encode returns; the caller owns (and disposes) every tensor. */
export interface HunyuanVideoPromptEmbeddings {
  /** Llama's hidden_states[-3] past the template's first 95 tokens (B, maxSequenceLength, hidden). */
  promptEmbeds: Tensor;
  /** CLIP-L's pooled output (B, hidden of CLIP). */
  pooledPromptEmbeds: Tensor;
  /** (B, maxSequenceLength) int32: 1 for a token (the template's tail included), 0 for padding. */
  promptAttentionMask: Tensor;
  /** Tokens truncation dropped from the longest-cut prompt, per tokenizer (diffusers warns of CLIP's). */
  truncatedTokens: { llama: number; clip: number };
  /** What each prompt lost, in order. */
  truncatedTokensPerPrompt: { llama: number; clip: number }[];
}

/** The text folders a pipeline folder lacks (none when prompts can be encoded). */
export function missingTextComponents(dir: string): string[] {
  return missingFolders(dir, TEXT_COMPONENTS);
}

/** maxSequenceLength as HunyuanVideoPipeline takes it (default 256). */
export function checkMaxSequenceLength(n: number | undefined, where: string): number {
  const v = n ?? DEFAULT_MAX_SEQUENCE_LENGTH;
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${where}: maxSequenceLength must be a positive integer, got ${v}`);
  return v;
}

interface Encoders {
  llama: DecoderLM;
  clip: ClipTextModel;
}

export class HunyuanVideoPromptEncoder implements Disposable {
  readonly tokenizers: readonly [llama: Tokenizer, clip: Tokenizer];
  private encoders: Encoders | null = null;

  constructor(
    readonly dir: string,
    private readonly opts: LoadOptions = {},
  ) {
    requireFolders(dir, TEXT_COMPONENTS, 'prompt encoding');
    this.tokenizers = [loadTokenizer(join(dir, 'tokenizer')), loadTokenizer(join(dir, 'tokenizer_2'))];
  }

  /** Whether the encoders' weights are loaded. */
  get loaded(): boolean {
    return this.encoders !== null;
  }

  /** Loads both encoders' weights now (encode does it when needed); both or neither stay loaded. */
  load(): void {
    if (this.encoders) return;
    const llama = DecoderLM.load(join(this.dir, 'text_encoder'), this.opts);
    try {
      // hidden_states[-3] of a one-layer model does not exist (diffusers fails with an IndexError).
      if (llama.config.numHiddenLayers < HIDDEN_LAYERS_TO_SKIP) {
        throw new ConfigError(
          `${join(this.dir, 'text_encoder')}: num_hidden_layers ${llama.config.numHiddenLayers}; HunyuanVideo reads the output of the layer ${HIDDEN_LAYERS_TO_SKIP} before the last, so it needs at least ${HIDDEN_LAYERS_TO_SKIP}`,
        );
      }
      this.encoders = { llama, clip: ClipTextModel.load(join(this.dir, 'text_encoder_2'), this.opts) };
    } catch (e) {
      llama.dispose();
      throw e;
    }
  }

  /** Frees the encoders' weights; the next encode loads them again. The tokenizers stay. */
  release(): void {
    if (!this.encoders) return;
    this.encoders.llama.dispose();
    this.encoders.clip.dispose();
    this.encoders = null;
  }

  /** diffusers' HunyuanVideoPipeline.encode_prompt for one prompt or a batch (CLIP reads the same prompt, as diffusers' does). */
  encode(prompt: string | readonly string[], opts: HunyuanVideoEncodePromptOptions = {}): HunyuanVideoPromptEmbeddings {
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new TypeError('encodePrompt: give at least one prompt');
    const length = checkMaxSequenceLength(opts.maxSequenceLength, 'encodePrompt');
    const { template, dropTokens } = HUNYUAN_VIDEO_PROMPT_TEMPLATE;
    const [llamaTokenizer, clipTokenizer] = this.tokenizers;
    const llamaTokens = prompts.map((p) => llamaTokenizer.encodePadded(formatPrompt(template, p), length + dropTokens));
    const clipTokens = prompts.map((p) => clipTokenizer.encodePadded(p, CLIP_MAX_LENGTH));
    this.load();
    const { llama, clip } = this.encoders as Encoders;
    const device = this.opts.device ?? 'cpu';
    const rows = (encoded: PaddedEncoding[], key: 'ids' | 'attentionMask', from = 0): Tensor =>
      tensor(Int32Array.from(encoded.flatMap((e) => e[key].slice(from))), [prompts.length, encoded[0][key].length - from], { device });
    const mostTruncated = (encoded: PaddedEncoding[]) => Math.max(...encoded.map((e) => e.truncatedTokens));
    return {
      ...tidy(() => {
        const states = llama.forward(rows(llamaTokens, 'ids'), { attentionMask: rows(llamaTokens, 'attentionMask'), outputHiddenStates: true })
          .hiddenStates as Tensor[];
        // CLIP runs without a mask, as diffusers calls it.
        const pooled = clip.forward(rows(clipTokens, 'ids')).pooledOutput;
        return { promptEmbeds: (states.at(-(HIDDEN_LAYERS_TO_SKIP + 1)) as Tensor).narrow(1, dropTokens, length).contiguous(), pooledPromptEmbeds: pooled };
      }),
      promptAttentionMask: rows(llamaTokens, 'attentionMask', dropTokens),
      truncatedTokens: { llama: mostTruncated(llamaTokens), clip: mostTruncated(clipTokens) },
      truncatedTokensPerPrompt: prompts.map((_, i) => ({ llama: llamaTokens[i].truncatedTokens, clip: clipTokens[i].truncatedTokens })),
    };
  }

  dispose(): void {
    this.release();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
