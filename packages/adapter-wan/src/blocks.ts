// diffusers' WanTransformerBlock: self-attention over the video tokens, cross-attention to the
// text (and to the image tokens of an image-to-video model), and a GELU-tanh feed-forward, each
// added back to the tokens. Self-attention and the
// feed-forward are modulated (shift, scale, gate) by the block's scale_shift_table plus the
// timestep projection the model computes once per call. In a 16-bit model the norms, their
// modulation and the gated residuals compute in float32 from float32 parameters and round once to
// the model's dtype, as diffusers' FP32LayerNorm and `.float()` ... `.type_as()` do. In float16
// a block whose output leaves float16's range stops the run with an error naming it.
import { add, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { FeedForward, LayerNorm, checkFloat16Range, gatedResidual, modulate, type WeightReader } from '@ditcache/diffusion';

import { WanAttention } from './attention.js';
import type { WanTransformerConfig } from './config.js';
import type { RotaryEmbedding } from './rotary.js';

/**
 * What the transformer's block loop calls (cache-dit's ForwardPattern 2: takes the tokens and
 * the text, returns the tokens). `temb` is the timestep projection (B, 6, dim); `image` holds the
 * embedded image tokens (B, image tokens, dim) of an image-to-video model, else null. diffusers
 * joins them to the front of the text and splits them off again in the attention by assuming
 * 512 text tokens; they travel apart here, so any text length works. A cache engine may put its
 * own objects of this shape in the block array.
 */
export interface WanBlock {
  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding, image: Tensor | null): Tensor;
}

/** diffusers' FP32LayerNorm: the norm of x in float32 with float32 weights, returned in x's dtype. */
export function fp32LayerNorm(norm: LayerNorm, x: Tensor): Tensor {
  return tidy(() => norm.forward(x.cast('float32')).cast(x.dtype));
}

export class WanTransformerBlock implements WanBlock {
  constructor(
    /** (1, 6, dim), float32: added to the timestep projection, then split into the six modulations. */
    readonly scaleShiftTable: Tensor,
    readonly attn1: WanAttention,
    readonly attn2: WanAttention,
    /** The affine norm before cross-attention (cross_attn_norm, float32 weights), or none. */
    readonly norm2: LayerNorm | null,
    readonly ffn: FeedForward,
    readonly eps: number,
    /** diffusers' module name (e.g. 'blocks.3'), for errors. */
    readonly name = 'blocks',
  ) {}

  /** scale_shift_table and norm2 load in float32 whatever the model's dtype (diffusers' `_keep_in_fp32_modules`). */
  static load(w: WeightReader, config: WanTransformerConfig): WanTransformerBlock {
    const heads = config.num_attention_heads;
    const dim = heads * config.attention_head_dim;
    return new WanTransformerBlock(
      w.float32().tensor('scale_shift_table', [1, 6, dim]),
      WanAttention.load(w.at('attn1'), dim, heads, config.eps),
      WanAttention.load(w.at('attn2'), dim, heads, config.eps, config.added_kv_proj_dim),
      config.cross_attn_norm ? LayerNorm.load(w.float32().at('norm2'), dim, config.eps) : null,
      FeedForward.load(w.at('ffn'), dim, config.ffn_dim, 'gelu-approximate'),
      config.eps,
      w.prefix.replace(/\.$/, ''),
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding, image: Tensor | null): Tensor {
    return tidy(() => {
      const [shift, scale, gate, ffnShift, ffnScale, ffnGate] = add(this.scaleShiftTable, temb.cast('float32')).split(6, 1);
      const normed = modulate(hidden, scale, shift, { eps: this.eps, inFloat32: true });
      let h = gatedResidual(hidden, gate, this.attn1.forward(normed, normed, rotary), { inFloat32: true });
      h = add(h, this.attn2.forward(this.norm2 ? fp32LayerNorm(this.norm2, h) : h, encoder, null, image));
      const out = gatedResidual(h, ffnGate, this.ffn.forward(modulate(h, ffnScale, ffnShift, { eps: this.eps, inFloat32: true })), { inFloat32: true });
      checkFloat16Range(this.name, out);
      return out;
    });
  }
}
