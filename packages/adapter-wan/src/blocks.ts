// diffusers' WanTransformerBlock: self-attention over the video tokens, cross-attention to the
// text (and to the image tokens of an image-to-video model), and a GELU-tanh feed-forward, each
// added back to the tokens. Self-attention and the
// feed-forward are modulated (shift, scale, gate) by the block's scale_shift_table plus the
// timestep projection the model computes once per call.
import { add, layerNorm, mul, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { FeedForward, LayerNorm, type WeightReader } from '@ditcache/diffusion';

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

/** Weightless LayerNorm(x) * (1 + scale) + shift, with (B, 1, dim) scale and shift. */
export function modulate(x: Tensor, scale: Tensor, shift: Tensor, eps: number): Tensor {
  return tidy(() => add(mul(layerNorm(x, null, null, eps), add(scale, 1)), shift));
}

export class WanTransformerBlock implements WanBlock {
  constructor(
    /** (1, 6, dim): added to the timestep projection, then split into the six modulations. */
    readonly scaleShiftTable: Tensor,
    readonly attn1: WanAttention,
    readonly attn2: WanAttention,
    /** The affine norm before cross-attention (cross_attn_norm), or none. */
    readonly norm2: LayerNorm | null,
    readonly ffn: FeedForward,
    readonly eps: number,
  ) {}

  static load(w: WeightReader, config: WanTransformerConfig): WanTransformerBlock {
    const heads = config.num_attention_heads;
    const dim = heads * config.attention_head_dim;
    return new WanTransformerBlock(
      w.tensor('scale_shift_table', [1, 6, dim]),
      WanAttention.load(w.at('attn1'), dim, heads, config.eps),
      WanAttention.load(w.at('attn2'), dim, heads, config.eps, config.added_kv_proj_dim),
      config.cross_attn_norm ? LayerNorm.load(w.at('norm2'), dim, config.eps) : null,
      FeedForward.load(w.at('ffn'), dim, config.ffn_dim, 'gelu-approximate'),
      config.eps,
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding, image: Tensor | null): Tensor {
    return tidy(() => {
      const [shift, scale, gate, ffnShift, ffnScale, ffnGate] = add(this.scaleShiftTable, temb).split(6, 1);
      const normed = modulate(hidden, scale, shift, this.eps);
      let h = add(hidden, mul(this.attn1.forward(normed, normed, rotary), gate));
      h = add(h, this.attn2.forward(this.norm2 ? this.norm2.forward(h) : h, encoder, null, image));
      return add(h, mul(this.ffn.forward(modulate(h, ffnScale, ffnShift, this.eps)), ffnGate));
    });
  }
}
