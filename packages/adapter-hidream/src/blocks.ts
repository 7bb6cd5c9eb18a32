// HiDream's transformer blocks: the double-stream HiDreamImageTransformerBlock (image and text keep
// their own weights and meet in joint attention; the image MLP is a mixture of experts) and the
// single-stream HiDreamImageSingleTransformerBlock (one set of weights over the joint sequence).
// Both are modulated by the conditioning through adaLN (shift, scale, gate per sub-layer). In
// bfloat16 / float16 every op takes and returns the model's dtype, as in diffusers (HiDream keeps
// nothing in float32); in float16 a block whose output leaves float16's range stops the run with
// an error naming it (diffusers does not clip HiDream).
import { tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, checkFloat16Range, gatedResidual, modulate, modulationParameters, type WeightReader } from '@ditcache/diffusion';

import { JointAttention, SelfAttention } from './attention.js';
import type { HiDreamTransformerConfig } from './config.js';
import { MoEFeedForward, SwiGLUFeedForward, type HiDreamMlp } from './feed-forward.js';
import type { HiDreamRotary } from './rotary.js';

/** What every block of one transformer call shares. */
export interface HiDreamBlockContext {
  /** (B, dim) conditioning: timestep embedding plus pooled text embedding. */
  temb: Tensor;
  /** The rotary tables of the joint sequence: image tokens, then text tokens. */
  rotary: HiDreamRotary;
  /**
   * Key mask (B, tokens) when the image tokens are padded, else null: over the image tokens for
   * double-stream blocks, over the whole joint sequence for single-stream ones.
   */
  masks: Tensor | null;
  /** The projected Llama states, (B, Llama tokens, dim) per block, in block order (double, then single). */
  llamaStates: readonly Tensor[];
}

/** What the double-stream loop calls: (hidden, encoder, context) -> [hidden, encoder]. */
export interface DoubleStreamBlock {
  forward(hidden: Tensor, encoder: Tensor, context: HiDreamBlockContext): [hidden: Tensor, encoder: Tensor];
}

/** What the single-stream loop calls: (hidden, context) -> hidden. */
export interface SingleStreamBlock {
  forward(hidden: Tensor, context: HiDreamBlockContext): Tensor;
}

/** The block's module name in diffusers, from its weights' prefix ('double_stream_blocks.2.block.' -> 'double_stream_blocks.2'). */
function moduleName(w: WeightReader): string {
  return w.prefix.replace(/\.block\.$|\.$/, '');
}

/** The image stream's MLP: a mixture of experts, or one SwiGLU when the config has no routed experts. */
function loadImageFeedForward(w: WeightReader, config: HiDreamTransformerConfig, dim: number): HiDreamMlp {
  return config.num_routed_experts > 0
    ? MoEFeedForward.load(w, dim, 4 * dim, config.num_routed_experts, config.num_activated_experts)
    : SwiGLUFeedForward.load(w, dim, 4 * dim);
}

/** diffusers' HiDreamImageTransformerBlock. */
export class HiDreamDoubleStreamBlock implements DoubleStreamBlock {
  constructor(
    readonly adaLNModulation: Linear,
    readonly attn: JointAttention,
    readonly ffImage: HiDreamMlp,
    readonly ffText: SwiGLUFeedForward,
    /** diffusers' module name (e.g. 'double_stream_blocks.2'), for errors. */
    readonly name = 'double_stream_blocks',
  ) {}

  /** `w` is the block's `double_stream_blocks.{i}.block` prefix. */
  static load(w: WeightReader, config: HiDreamTransformerConfig): HiDreamDoubleStreamBlock {
    const dim = config.num_attention_heads * config.attention_head_dim;
    return new HiDreamDoubleStreamBlock(
      Linear.load(w.at('adaLN_modulation.1'), dim, 12 * dim),
      JointAttention.load(w.at('attn1'), dim, config.num_attention_heads),
      loadImageFeedForward(w.at('ff_i'), config, dim),
      SwiGLUFeedForward.load(w.at('ff_t'), dim, 4 * dim),
      moduleName(w),
    );
  }

  forward(hidden: Tensor, encoder: Tensor, context: HiDreamBlockContext): [Tensor, Tensor] {
    return tidy(() => {
      const [shift, scale, gate, shiftMlp, scaleMlp, gateMlp, tShift, tScale, tGate, tShiftMlp, tScaleMlp, tGateMlp] = modulationParameters(
        this.adaLNModulation,
        context.temb,
        12,
      );
      const [attnImage, attnText] = this.attn.forward(modulate(hidden, scale, shift), context.masks, modulate(encoder, tScale, tShift), context.rotary);
      const h = gatedResidual(hidden, gate, attnImage);
      const e = gatedResidual(encoder, tGate, attnText);
      const out: [Tensor, Tensor] = [
        gatedResidual(h, gateMlp, this.ffImage.forward(modulate(h, scaleMlp, shiftMlp))),
        gatedResidual(e, tGateMlp, this.ffText.forward(modulate(e, tScaleMlp, tShiftMlp))),
      ];
      checkFloat16Range(this.name, ...out);
      return out;
    });
  }
}

/** diffusers' HiDreamImageSingleTransformerBlock. */
export class HiDreamSingleStreamBlock implements SingleStreamBlock {
  constructor(
    readonly adaLNModulation: Linear,
    readonly attn: SelfAttention,
    readonly ff: HiDreamMlp,
    /** diffusers' module name (e.g. 'single_stream_blocks.0'), for errors. */
    readonly name = 'single_stream_blocks',
  ) {}

  /** `w` is the block's `single_stream_blocks.{i}.block` prefix. */
  static load(w: WeightReader, config: HiDreamTransformerConfig): HiDreamSingleStreamBlock {
    const dim = config.num_attention_heads * config.attention_head_dim;
    return new HiDreamSingleStreamBlock(
      Linear.load(w.at('adaLN_modulation.1'), dim, 6 * dim),
      SelfAttention.load(w.at('attn1'), dim, config.num_attention_heads),
      loadImageFeedForward(w.at('ff_i'), config, dim),
      moduleName(w),
    );
  }

  forward(hidden: Tensor, context: HiDreamBlockContext): Tensor {
    return tidy(() => {
      const [shift, scale, gate, shiftMlp, scaleMlp, gateMlp] = modulationParameters(this.adaLNModulation, context.temb, 6);
      const h = gatedResidual(hidden, gate, this.attn.forward(modulate(hidden, scale, shift), context.masks, context.rotary));
      const out = gatedResidual(h, gateMlp, this.ff.forward(modulate(h, scaleMlp, shiftMlp)));
      checkFloat16Range(this.name, out);
      return out;
    });
  }
}
