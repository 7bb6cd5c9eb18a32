// LTX-Video attention (diffusers' LTXAttention with LTXVideoAttnProcessor): queries and keys are
// RMS-normed across all heads at once, self-attention rotates them by the rotary embedding over
// the whole model width (before the heads are split), and cross-attention to the text takes an
// additive mask bias that keeps the padding tokens out. In a 16-bit model the rotation computes
// in float32 and rounds once to the model's dtype, as diffusers' apply_rotary_emb does.
import { attention, rope, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, RMSNorm, type WeightReader } from '@ditcache/diffusion';

import type { RotaryEmbedding } from './rotary.js';

/** torch.nn.RMSNorm's eps in LTXAttention's norm_q / norm_k. */
const QK_NORM_EPS = 1e-5;

export class LtxAttention {
  constructor(
    readonly heads: number,
    readonly toQ: Linear,
    readonly toK: Linear,
    readonly toV: Linear,
    readonly toOut: Linear,
    readonly normQ: RMSNorm,
    readonly normK: RMSNorm,
  ) {}

  /** `dim`: the model width (query, key and value are all that wide in LTX-Video). */
  static load(w: WeightReader, dim: number, heads: number): LtxAttention {
    const proj = (name: string): Linear => Linear.load(w.at(name), dim, dim);
    return new LtxAttention(
      heads,
      proj('to_q'),
      proj('to_k'),
      proj('to_v'),
      proj('to_out.0'),
      RMSNorm.load(w.at('norm_q'), dim, QK_NORM_EPS),
      RMSNorm.load(w.at('norm_k'), dim, QK_NORM_EPS),
    );
  }

  /**
   * Tokens `x` (B, S, dim) attend to `context` (B, T, dim): to themselves with the rotary
   * embedding (self-attention, context = x), or to the text with `maskBias` (B, 1, 1, T), the
   * additive bias of the padding tokens (cross-attention).
   */
  forward(x: Tensor, context: Tensor, rotary: RotaryEmbedding | null, maskBias: Tensor | null = null): Tensor {
    return tidy(() => {
      let q = this.normQ.forward(this.toQ.forward(x));
      let k = this.normK.forward(this.toK.forward(context));
      const v = this.toV.forward(context);
      if (rotary) {
        q = rope(q.cast('float32'), rotary.cos, rotary.sin).cast(q.dtype);
        k = rope(k.cast('float32'), rotary.cos, rotary.sin).cast(k.dtype);
      }
      // (B, tokens, dim) -> (B, heads, tokens, head dim); the output comes back heads last.
      const heads = (t: Tensor): Tensor => t.reshape(t.shape[0], t.shape[1], this.heads, -1).transpose(1, 2);
      const mask = maskBias?.cast(q.dtype) ?? null;
      const out = attention(heads(q), heads(k), heads(v), { headsLast: true, mask });
      return this.toOut.forward(out.reshape(x.shape[0], x.shape[1], -1));
    });
  }
}
