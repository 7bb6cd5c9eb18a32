// FluxPipeline's prompt encoding (diffusers' encode_prompt): CLIP's pooled output of the prompt
// padded to 77 tokens, T5's last hidden state of the prompt padded to max_sequence_length, and
// zero text ids. The tokenizers load with the encoder; the encoders' weights load on first use
// and can be released after it, since FLUX.1's T5-XXL alone is 9.5 GB.
import { join } from 'node:path';

import { tensor, tidy, zeros, type Tensor } from '@ditcache/cuda-runtime';
import { missingFolders, requireFolders, type LoadOptions } from '@ditcache/diffusion';
import { ClipTextModel, T5Encoder, loadTokenizer, type Tokenizer } from '@ditcache/text-encoders';

/** The folders of a FLUX pipeline that prompt encoding needs. */
export const TEXT_COMPONENTS = ['tokenizer', 'tokenizer_2', 'text_encoder', 'text_encoder_2'] as const;

/** diffusers refuses longer T5 sequences for FLUX. */
export const MAX_SEQUENCE_LENGTH = 512;

export interface EncodePromptOptions {
  /** T5 tokens the prompt is padded or truncated to (default 512, at most 512). */
  maxSequenceLength?: number;
}

/** What encodePrompt returns; the caller owns (and disposes) every tensor. */
export interface FluxPromptEmbeddings {
  /** T5's last hidden state (B, maxSequenceLength, d_model), float32. */
  promptEmbeds: Tensor;
  /** CLIP's pooled output (B, hidden), float32. */
  pooledPromptEmbeds: Tensor;
  /** Zeros (maxSequenceLength, 3): the text tokens' position ids. */
  textIds: Tensor;
  /** The CLIP token ids (B, 77), int32. */
  clipInputIds: Tensor;
  /** The T5 token ids (B, maxSequenceLength), int32. */
  t5InputIds: Tensor;
  /** Tokens truncation dropped from the longest prompt, per tokenizer (diffusers logs these). */
  truncatedTokens: { clip: number; t5: number };
}

/** The text folders a pipeline folder lacks (none when prompts can be encoded). */
export function missingTextComponents(dir: string): string[] {
  return missingFolders(dir, TEXT_COMPONENTS);
}

export class FluxPromptEncoder implements Disposable {
  readonly clipTokenizer: Tokenizer;
  readonly t5Tokenizer: Tokenizer;
  private clip: ClipTextModel | null = null;
  private t5: T5Encoder | null = null;

  constructor(
    readonly dir: string,
    private readonly opts: LoadOptions = {},
  ) {
    requireFolders(dir, TEXT_COMPONENTS, 'prompt encoding');
    this.clipTokenizer = loadTokenizer(join(dir, 'tokenizer'));
    this.t5Tokenizer = loadTokenizer(join(dir, 'tokenizer_2'));
  }

  /** Opens the text components of a FLUX folder; the encoders load on the first encode unless `preload` is set. */
  static fromPretrained(dir: string, opts: LoadOptions & { preload?: boolean } = {}): FluxPromptEncoder {
    const encoder = new FluxPromptEncoder(dir, { device: opts.device, dtype: opts.dtype });
    if (opts.preload) encoder.load();
    return encoder;
  }

  /** Whether the encoders' weights are loaded. */
  get loaded(): boolean {
    return this.clip !== null && this.t5 !== null;
  }

  /** Loads the encoders' weights now (encode does it when needed). */
  load(): void {
    this.clip ??= ClipTextModel.load(join(this.dir, 'text_encoder'), this.opts);
    this.t5 ??= T5Encoder.load(join(this.dir, 'text_encoder_2'), this.opts);
  }

  /** Frees the encoders' weights; the next encode loads them again. The tokenizers stay. */
  release(): void {
    this.clip?.dispose();
    this.t5?.dispose();
    this.clip = null;
    this.t5 = null;
  }

  /** diffusers' FluxPipeline.encode_prompt for one prompt or a batch. */
  encode(prompt: string | readonly string[], opts: EncodePromptOptions = {}): FluxPromptEmbeddings {
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new TypeError('encodePrompt: give at least one prompt');
    const length = opts.maxSequenceLength ?? MAX_SEQUENCE_LENGTH;
    if (!Number.isInteger(length) || length < 1 || length > MAX_SEQUENCE_LENGTH) {
      throw new RangeError(`encodePrompt: maxSequenceLength must be an integer from 1 to ${MAX_SEQUENCE_LENGTH}, got ${length}`);
    }
    this.load();
    const clip = this.clip as ClipTextModel;
    const t5 = this.t5 as T5Encoder;
    // diffusers pads CLIP to the tokenizer's model_max_length.
    const clipLength = this.clipTokenizer.modelMaxLength ?? clip.config.maxPositionEmbeddings;
    const clipEncoded = prompts.map((p) => this.clipTokenizer.encodePadded(p, clipLength));
    const t5Encoded = prompts.map((p) => this.t5Tokenizer.encodePadded(p, length));
    const device = this.opts.device ?? 'cpu';
    return tidy(() => {
      const clipInputIds = tensor(Int32Array.from(clipEncoded.flatMap((e) => e.ids)), [prompts.length, clipLength], { device });
      const t5InputIds = tensor(Int32Array.from(t5Encoded.flatMap((e) => e.ids)), [prompts.length, length], { device });
      return {
        promptEmbeds: t5.forward(t5InputIds),
        pooledPromptEmbeds: clip.forward(clipInputIds).pooledOutput,
        textIds: zeros([length, 3], { device }),
        clipInputIds,
        t5InputIds,
        truncatedTokens: {
          clip: Math.max(...clipEncoded.map((e) => e.truncatedTokens)),
          t5: Math.max(...t5Encoded.map((e) => e.truncatedTokens)),
        },
      };
    });
  }

  dispose(): void {
    this.release();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
