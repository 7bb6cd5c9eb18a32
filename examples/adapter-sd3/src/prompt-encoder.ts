// StableDiffusion3Pipeline's prompt encoding (diffusers' encode_prompt): for each of the two CLIP
// text encoders, the penultimate layer's states of the prompt padded to 77 tokens and the
// projected pooled output; T5's last hidden state of the prompt padded to max_sequence_length
// (77 zero tokens when the folder has no text_encoder_3: SD3 runs without T5); the CLIP states
// joined along the features, zero-padded to T5's width and put in front of T5's tokens; the two
// pooled outputs joined. The tokenizers load with the encoder, the encoders' weights on first use.
import { join } from 'node:path';

import { concat, tensor, tidy, zeros, type Tensor } from '@ditcache/cuda-runtime';
import { ConfigError, missingFolders, type LoadOptions } from '@ditcache/diffusion';
import { ClipTextModel, T5Encoder, loadTokenizer, type Tokenizer } from '@ditcache/text-encoders';

/** The folders prompt encoding needs; T5's pair is optional. */
export const CLIP_COMPONENTS = ['tokenizer', 'tokenizer_2', 'text_encoder', 'text_encoder_2'] as const;
export const T5_COMPONENTS = ['tokenizer_3', 'text_encoder_3'] as const;

/** StableDiffusion3Pipeline's default max_sequence_length for T5. */
export const MAX_SEQUENCE_LENGTH = 256;

/** What encode returns; the caller owns (and disposes) both tensors. */
export interface SD3PromptEmbeddings {
  /** (B, 77 + T5 tokens, joint_attention_dim): the CLIP states, zero-padded to T5's width, then T5's. */
  promptEmbeds: Tensor;
  /** (B, CLIP-L projection + CLIP-G projection): the pooled, projected CLIP outputs. */
  pooledPromptEmbeds: Tensor;
}

export class SD3PromptEncoder implements Disposable {
  readonly clipTokenizers: [Tokenizer, Tokenizer];
  /** T5's tokenizer, or null for a folder without tokenizer_3/ and text_encoder_3/. */
  readonly t5Tokenizer: Tokenizer | null;
  private clips: [ClipTextModel, ClipTextModel] | null = null;
  private t5: T5Encoder | null = null;

  /** `jointAttentionDim`: the transformer's text width, which the embeddings are padded to. */
  constructor(
    readonly dir: string,
    readonly jointAttentionDim: number,
    private readonly opts: LoadOptions = {},
  ) {
    const missing = missingFolders(dir, CLIP_COMPONENTS);
    if (missing.length)
      throw new ConfigError(
        `${dir}: no ${missing.map((m) => `${m}/`).join(', ')} folder (prompt encoding needs ${CLIP_COMPONENTS.map((m) => `${m}/`).join(', ')})`,
      );
    this.clipTokenizers = [loadTokenizer(join(dir, 'tokenizer')), loadTokenizer(join(dir, 'tokenizer_2'))];
    const missingT5 = missingFolders(dir, T5_COMPONENTS);
    if (missingT5.length === 1)
      throw new ConfigError(`${dir}: has ${T5_COMPONENTS.find((c) => !missingT5.includes(c))}/ but no ${missingT5[0]}/; T5 needs both`);
    this.t5Tokenizer = missingT5.length ? null : loadTokenizer(join(dir, 'tokenizer_3'));
  }

  /** Whether the encoders' weights are loaded. */
  get loaded(): boolean {
    return this.clips !== null;
  }

  /** Loads the encoders' weights now (encode does it when needed). */
  load(): void {
    this.clips ??= [ClipTextModel.load(join(this.dir, 'text_encoder'), this.opts), ClipTextModel.load(join(this.dir, 'text_encoder_2'), this.opts)];
    if (this.t5Tokenizer) this.t5 ??= T5Encoder.load(join(this.dir, 'text_encoder_3'), this.opts);
    for (const [i, clip] of this.clips.entries()) {
      if (clip.config.projectionDim === null)
        throw new ConfigError(
          `${join(this.dir, i ? 'text_encoder_2' : 'text_encoder')}: SD3 needs a CLIPTextModelWithProjection (its pooled output is projected)`,
        );
    }
  }

  /** Frees the encoders' weights; the next encode loads them again. The tokenizers stay. */
  release(): void {
    for (const model of [...(this.clips ?? []), this.t5]) model?.dispose();
    this.clips = null;
    this.t5 = null;
  }

  /** diffusers' encode_prompt for one prompt or a batch, the same prompt for all three encoders. */
  encode(prompt: string | readonly string[], opts: { maxSequenceLength?: number } = {}): SD3PromptEmbeddings {
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new TypeError('SD3PromptEncoder.encode: give at least one prompt');
    const length = opts.maxSequenceLength ?? MAX_SEQUENCE_LENGTH;
    if (!Number.isInteger(length) || length < 1) throw new RangeError(`SD3PromptEncoder.encode: maxSequenceLength must be a positive integer, got ${length}`);
    this.load();
    const clips = this.clips as [ClipTextModel, ClipTextModel];
    const device = this.opts.device ?? 'cpu';
    const ids = (tokenizer: Tokenizer, tokens: number) =>
      tensor(Int32Array.from(prompts.flatMap((p) => tokenizer.encodePadded(p, tokens).ids)), [prompts.length, tokens], { device });
    return tidy(() => {
      const clipLength = this.clipTokenizers[0].modelMaxLength ?? clips[0].config.maxPositionEmbeddings;
      const outputs = clips.map((clip, i) => clip.forward(ids(this.clipTokenizers[i], clipLength), { outputHiddenStates: true }));
      const clipStates = concat(
        outputs.map((o) => (o.hiddenStates as Tensor[]).at(-2) as Tensor),
        2,
      );
      const width = clipStates.shape[2];
      if (width > this.jointAttentionDim)
        throw new ConfigError(
          `${this.dir}: the CLIP encoders' widths add up to ${width}, more than the transformer's joint_attention_dim ${this.jointAttentionDim}`,
        );
      const t5States =
        this.t5 && this.t5Tokenizer
          ? this.t5.forward(ids(this.t5Tokenizer, length))
          : zeros([prompts.length, clipLength, this.jointAttentionDim], { device, dtype: clipStates.dtype });
      const padded =
        width === this.jointAttentionDim
          ? clipStates
          : concat([clipStates, zeros([prompts.length, clipLength, this.jointAttentionDim - width], { device, dtype: clipStates.dtype })], 2);
      return {
        promptEmbeds: concat([padded, t5States], 1),
        pooledPromptEmbeds: concat(
          outputs.map((o) => o.textEmbeds as Tensor),
          1,
        ),
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
