// ChromaPipeline's prompt encoding (diffusers' encode_prompt): T5's last hidden state of the
// prompt padded to max_sequence_length, T5 attending to the prompt's tokens only, and the mask
// the transformer gets: the prompt's tokens and the first pad token (Chroma keeps one pad token
// visible; its model card explains why). Loading and
// releasing T5 is @ditcache/text-encoders' T5TextComponents.
import { tensor, tidy, zeros, type Tensor } from '@ditcache/cuda-runtime';
import { missingFolders, type LoadOptions } from '@ditcache/diffusion';
import { T5TextComponents, T5_TEXT_COMPONENTS } from '@ditcache/text-encoders';

/** The folders of a Chroma pipeline that prompt encoding needs. */
export const TEXT_COMPONENTS = T5_TEXT_COMPONENTS;

/** diffusers refuses longer T5 sequences for Chroma. */
export const MAX_SEQUENCE_LENGTH = 512;

export interface EncodePromptOptions {
  /** T5 tokens the prompt is padded or truncated to (default 512, at most 512). */
  maxSequenceLength?: number;
}

/** What encode returns; the caller owns (and disposes) every tensor. */
export interface ChromaPromptEmbeddings {
  /** T5's last hidden state (B, maxSequenceLength, d_model), in the encoder's dtype. */
  promptEmbeds: Tensor;
  /** (B, maxSequenceLength) float32: 1 for the prompt's tokens and one pad token, 0 for the rest (diffusers' prompt_attention_mask). */
  promptAttentionMask: Tensor;
  /** Zeros (maxSequenceLength, 3): the text tokens' position ids. */
  textIds: Tensor;
  /** The T5 token ids (B, maxSequenceLength), int32. */
  inputIds: Tensor;
  /** Tokens truncation dropped from the longest prompt (diffusers logs these). */
  truncatedTokens: number;
  /** Tokens truncation dropped from each prompt, in order. */
  truncatedTokensPerPrompt: number[];
}

/** The text folders a pipeline folder lacks (none when prompts can be encoded). */
export function missingTextComponents(dir: string): string[] {
  return missingFolders(dir, TEXT_COMPONENTS);
}

export class ChromaPromptEncoder extends T5TextComponents {
  /** Opens the text components of a Chroma folder; T5 loads on the first encode unless `preload` is set. */
  static fromPretrained(dir: string, opts: LoadOptions & { preload?: boolean } = {}): ChromaPromptEncoder {
    // T5 computes in the pipeline's dtype, as diffusers runs the text encoder of a pipeline loaded with that torch_dtype.
    const encoder = new ChromaPromptEncoder(dir, { device: opts.device, dtype: opts.dtype });
    if (opts.preload) encoder.load();
    return encoder;
  }

  /** diffusers' ChromaPipeline.encode_prompt (its _get_t5_prompt_embeds) for one prompt or a batch. */
  encode(prompt: string | readonly string[], opts: EncodePromptOptions = {}): ChromaPromptEmbeddings {
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new TypeError('encodePrompt: give at least one prompt');
    const length = opts.maxSequenceLength ?? MAX_SEQUENCE_LENGTH;
    if (!Number.isInteger(length) || length < 1 || length > MAX_SEQUENCE_LENGTH) {
      throw new RangeError(`encodePrompt: maxSequenceLength must be an integer from 1 to ${MAX_SEQUENCE_LENGTH}, got ${length}`);
    }
    const t5 = this.load();
    const encoded = prompts.map((p) => this.tokenizer.encodePadded(p, length));
    // The tokens the tokenizer keeps, plus one: position i is visible when i <= that count.
    const visible = encoded.flatMap((e) => {
      const kept = e.attentionMask.reduce((a, b) => a + b, 0);
      return e.attentionMask.map((_, i) => (i <= kept ? 1 : 0));
    });
    const device = this.opts.device ?? 'cpu';
    return tidy(() => {
      const shape = [prompts.length, length];
      const inputIds = tensor(Int32Array.from(encoded.flatMap((e) => e.ids)), shape, { device });
      const tokenizerMask = tensor(Int32Array.from(encoded.flatMap((e) => e.attentionMask)), shape, { device });
      return {
        promptEmbeds: t5.forward(inputIds, { attentionMask: tokenizerMask }),
        promptAttentionMask: tensor(Float32Array.from(visible), shape, { device }),
        textIds: zeros([length, 3], { device }),
        inputIds,
        truncatedTokens: Math.max(...encoded.map((e) => e.truncatedTokens)),
        truncatedTokensPerPrompt: encoded.map((e) => e.truncatedTokens),
      };
    });
  }
}
