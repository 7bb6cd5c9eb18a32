// QwenImagePipeline's prompt encoding (diffusers' encode_prompt): each prompt wrapped in Qwen-Image's
// chat template, tokenized by its Qwen2 tokenizer (padded to the longest, at most 1024 + 34 tokens),
// read by the Qwen2.5-VL language model; of the last hidden state each prompt keeps its own tokens
// less the template's first 34, zero-padded to the longest and cut to max_sequence_length, with a
// mask of its real tokens. The tokenizer loads with the encoder; the weights load on first use and
// can be released after it, since Qwen2.5-VL 7B is 16 GB in bf16.
import { join } from 'node:path';

import { concat, stack, tensor, tidy, zeros, type Tensor } from '@ditcache/cuda-runtime';
import { missingFolders, requireFolders, type LoadOptions } from '@ditcache/diffusion';
import { DecoderLM, QWEN_IMAGE_MAX_LENGTH, QWEN_IMAGE_PROMPT_TEMPLATE, formatPrompt, loadTokenizer, type Tokenizer } from '@ditcache/text-encoders';

/** The folders of a Qwen-Image pipeline that prompt encoding needs. */
export const TEXT_COMPONENTS = ['tokenizer', 'text_encoder'] as const;

/** QwenImagePipeline's max_sequence_length: its __call__ default (encode_prompt's own is the limit) and the limit. */
export const DEFAULT_MAX_SEQUENCE_LENGTH = 512;
export const MAX_SEQUENCE_LENGTH_LIMIT = QWEN_IMAGE_MAX_LENGTH;

export interface QwenImageEncodePromptOptions {
  /** Prompt tokens kept after the template's (default 512, at most 1024). */
  maxSequenceLength?: number;
}

/** What encode returns; the caller owns (and disposes) the tensors. */
export interface QwenImagePromptEmbeddings {
  /** The last hidden state of each prompt's tokens past the template's first 34, zero-padded (B, tokens, hidden). */
  promptEmbeds: Tensor;
  /** (B, tokens) int32: 1 for a prompt's tokens, 0 for padding; null when no prompt is padded (diffusers' None). */
  promptEmbedsMask: Tensor | null;
  /** Tokens the longest-cut prompt lost, to the tokenizer's 1024 + 34 limit and to maxSequenceLength. */
  truncatedTokens: number;
  /** What each prompt lost, in order. */
  truncatedTokensPerPrompt: number[];
}

/** The text folders a pipeline folder lacks (none when prompts can be encoded). */
export function missingTextComponents(dir: string): string[] {
  return missingFolders(dir, TEXT_COMPONENTS);
}

/** maxSequenceLength checked as QwenImagePipeline checks it (default 512). */
export function checkMaxSequenceLength(n: number | undefined, where: string): number {
  const v = n ?? DEFAULT_MAX_SEQUENCE_LENGTH;
  if (!Number.isInteger(v) || v < 1 || v > MAX_SEQUENCE_LENGTH_LIMIT) {
    throw new RangeError(`${where}: maxSequenceLength must be an integer from 1 to ${MAX_SEQUENCE_LENGTH_LIMIT}, got ${v}`);
  }
  return v;
}

export class QwenImagePromptEncoder implements Disposable {
  readonly tokenizer: Tokenizer;
  private encoder: DecoderLM | null = null;

  constructor(
    readonly dir: string,
    private readonly opts: LoadOptions = {},
  ) {
    requireFolders(dir, TEXT_COMPONENTS, 'prompt encoding');
    this.tokenizer = loadTokenizer(join(dir, 'tokenizer'));
  }

  /** Whether the text encoder's weights are loaded. */
  get loaded(): boolean {
    return this.encoder !== null;
  }

  /** Loads the text encoder's weights now (encode does it when needed). */
  load(): void {
    this.encoder ??= DecoderLM.load(join(this.dir, 'text_encoder'), this.opts);
  }

  /** Frees the text encoder's weights; the next encode loads them again. The tokenizer stays. */
  release(): void {
    this.encoder?.dispose();
    this.encoder = null;
  }

  /** diffusers' QwenImagePipeline.encode_prompt for one prompt or a batch. */
  encode(prompt: string | readonly string[], opts: QwenImageEncodePromptOptions = {}): QwenImagePromptEmbeddings {
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new TypeError('encodePrompt: give at least one prompt');
    const maxTokens = checkMaxSequenceLength(opts.maxSequenceLength, 'encodePrompt');
    const { template, dropTokens } = QWEN_IMAGE_PROMPT_TEMPLATE;
    const batch = this.tokenizer.encodeBatch(
      prompts.map((p) => formatPrompt(template, p)),
      { padding: 'longest', maxLength: QWEN_IMAGE_MAX_LENGTH + dropTokens, truncation: true },
    );
    // Each row's real tokens (leading: the encoder refuses left padding) past the template's first ones.
    const rows = batch.attentionMask.map((mask) => {
      const own = Math.max(mask.reduce((n, m) => n + m, 0) - dropTokens, 0);
      return { own, kept: Math.min(own, maxTokens) };
    });
    const tokens = Math.max(...rows.map((r) => r.kept));
    this.load();
    const encoder = this.encoder as DecoderLM;
    const device = this.opts.device ?? 'cpu';
    const width = batch.ids[0].length;
    const ids = tensor(Int32Array.from(batch.ids.flat()), [prompts.length, width], { device });
    const attentionMask = tensor(Int32Array.from(batch.attentionMask.flat()), [prompts.length, width], { device });
    const promptEmbeds = tidy(() => {
      const hidden = encoder.forward(ids, { attentionMask }).lastHiddenState;
      const size = encoder.config.hiddenSize;
      return stack(
        rows.map(({ kept }, i) => {
          const own = hidden.narrow(0, i, 1).squeeze(0).narrow(0, dropTokens, kept);
          return kept === tokens ? own : concat([own, zeros([tokens - kept, size], { device, dtype: hidden.dtype })], 0);
        }),
        0,
      );
    });
    ids.dispose();
    attentionMask.dispose();
    const padded = rows.some((r) => r.kept < tokens);
    const mask = rows.flatMap((r) => Array.from({ length: tokens }, (_, j) => (j < r.kept ? 1 : 0)));
    const truncatedTokensPerPrompt = rows.map((r, i) => batch.truncatedTokens[i] + r.own - r.kept);
    return {
      promptEmbeds,
      promptEmbedsMask: padded ? tensor(Int32Array.from(mask), [prompts.length, tokens], { device }) : null,
      truncatedTokens: Math.max(...truncatedTokensPerPrompt),
      truncatedTokensPerPrompt,
    };
  }

  dispose(): void {
    this.release();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
