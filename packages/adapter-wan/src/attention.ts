// Wan attention (diffusers' WanAttention with WanAttnProcessor): queries and keys are RMS-normed
// across all heads at once, self-attention rotates them by the 3-D rotary embedding, and the
// heads attend by scaled dot product before one output projection.
import { attention, rope, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, RMSNorm, type WeightReader } from '@ditcache/diffusion';

import type { RotaryEmbedding } from './rotary.js';

export class WanAttention {
  constructor(
    readonly heads: number,
    readonly toQ: Linear,
    readonly toK: Linear,
    readonly toV: Linear,
    readonly toOut: Linear,
    readonly normQ: RMSNorm,
    readonly normK: RMSNorm,
  ) {}

  static load(w: WeightReader, dim: number, heads: number, eps: number): WanAttention {
    const proj = (name: string): Linear => Linear.load(w.at(name), dim, dim);
    return new WanAttention(heads, proj('to_q'), proj('to_k'), proj('to_v'), proj('to_out.0'), RMSNorm.load(w.at('norm_q'), dim, eps), RMSNorm.load(w.at('norm_k'), dim, eps));
  }

  /**
   * Tokens `x` (B, S, dim) attend to `context` (B, T, dim): to themselves with the rotary
   * embedding (self-attention, context = x), or to the text without it (cross-attention).
   */
  forward(x: Tensor, context: Tensor, rotary: RotaryEmbedding | null): Tensor {
    return tidy(() => {
      const heads = (t: Tensor): Tensor => t.reshape(t.shape[0], t.shape[1], this.heads, -1);
      let q = heads(this.normQ.forward(this.toQ.forward(x)));
      let k = heads(this.normK.forward(this.toK.forward(context)));
      const v = heads(this.toV.forward(context));
      if (rotary) {
        q = rope(q, rotary.cos, rotary.sin);
        k = rope(k, rotary.cos, rotary.sin);
      }
      const out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), { headsLast: true });
      return this.toOut.forward(out.reshape(x.shape[0], x.shape[1], -1));
    });
  }
}
