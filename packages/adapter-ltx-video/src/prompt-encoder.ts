// LtxPipeline's prompt encoding (diffusers' LTXPipeline._get_t5_prompt_embeds): the prompt
// tokenized with padding to max_sequence_length (default 128), truncation and T5's </s>; T5's last
// hidden state of every token, pads included (diffusers calls T5 without the mask); the
// tokenizer's mask is what the transformer gets. Loading and
// releasing T5 is @ditcache/text-encoders' T5TextComponents.
import { tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { missingFolders, type LoadOptions } from '@ditcache/diffusion';
import { T5TextComponents, T5_TEXT_COMPONENTS, maxSequenceLengthWarning } from '@ditcache/text-encoders';

/** The folders of an LTX-Video pipeline that prompt encoding needs. */
export const TEXT_COMPONENTS = T5_TEXT_COMPONENTS;

/** LTXPipeline's default max_sequence_length. */
export const DEFAULT_MAX_SEQUENCE_LENGTH = 128;

export interface EncodePromptOptions {
  /** T5 tokens the prompt is padded or truncated to (default 128). */
  maxSequenceLength?: number;
}

/** What encode returns; the caller owns (and disposes) every tensor. */
export interface LtxPromptEmbeddings {
  /** T5's last hidden state (B, maxSequenceLength, d_model), in the encoder's dtype. */
  promptEmbeds: Tensor;
  /** (B, maxSequenceLength) float32: 1 for the prompt's tokens and </s>, 0 for padding (diffusers' prompt_attention_mask). */
  promptAttentionMask: Tensor;
  /** The T5 token ids (B, maxSequenceLength), int32. */
  inputIds: Tensor;
  /** diffusers' truncation warning for these prompts, or null when nothing was cut. */
  warning: string | null;
}

/** The text folders a pipeline folder lacks (none when prompts can be encoded). */
export function missingTextComponents(dir: string): string[] {
  return missingFolders(dir, TEXT_COMPONENTS);
}

export class LtxPromptEncoder extends T5TextComponents {
  /** Opens the text components of an LTX-Video folder; T5 loads on the first encode unless `preload` is set. */
  static fromPretrained(dir: string, opts: LoadOptions & { preload?: boolean } = {}): LtxPromptEncoder {
    // T5 computes in the pipeline's dtype, as diffusers runs the text encoder of a pipeline loaded with that torch_dtype.
    const encoder = new LtxPromptEncoder(dir, { device: opts.device, dtype: opts.dtype });
    if (opts.preload) encoder.load();
    return encoder;
  }

  /** diffusers' LTXPipeline._get_t5_prompt_embeds for one prompt or a batch. */
  encode(prompt: string | readonly string[], opts: EncodePromptOptions = {}): LtxPromptEmbeddings {
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new TypeError('encodePrompt: give at least one prompt');
    const length = opts.maxSequenceLength ?? DEFAULT_MAX_SEQUENCE_LENGTH;
    if (!Number.isInteger(length) || length < 1) throw new RangeError(`encodePrompt: maxSequenceLength must be a positive integer, got ${length}`);
    const t5 = this.load();
    const encoded = prompts.map((p) => this.tokenizer.encodePadded(p, length));
    const device = this.opts.device ?? 'cpu';
    const warning = maxSequenceLengthWarning(this.tokenizer, prompts, length);
    return tidy(() => {
      const shape = [prompts.length, length];
      const inputIds = tensor(Int32Array.from(encoded.flatMap((e) => e.ids)), shape, { device });
      return {
        promptEmbeds: t5.forward(inputIds),
        promptAttentionMask: tensor(Float32Array.from(encoded.flatMap((e) => e.attentionMask)), shape, { device }),
        inputIds,
        warning,
      };
    });
  }
}
