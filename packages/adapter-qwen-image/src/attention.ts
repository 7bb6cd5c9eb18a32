// Qwen-Image's joint attention (diffusers' Attention with QwenDoubleStreamAttnProcessor2_0):
// image and text tokens are projected by their own weights with per-head RMS-normed queries and
// keys, rotated, and attend jointly (text first), padded text tokens masked out as keys; each
// stream is projected back by its own output layer.
import { attention, concat, rope, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, RMSNorm, type WeightReader } from '@ditcache/diffusion';

import type { RotaryEmbedding } from './rotary.js';

/** Epsilon of the query / key RMS norms. */
const QK_NORM_EPS = 1e-6;

/** The query / key / value projections and query / key norms of one stream. */
interface Projection {
  q: Linear;
  k: Linear;
  v: Linear;
  normQ: RMSNorm;
  normK: RMSNorm;
}

function loadProjection(w: WeightReader, names: readonly [string, string, string, string, string], dim: number, headDim: number): Projection {
  const [q, k, v, normQ, normK] = names;
  return {
    q: Linear.load(w.at(q), dim, dim),
    k: Linear.load(w.at(k), dim, dim),
    v: Linear.load(w.at(v), dim, dim),
    normQ: RMSNorm.load(w.at(normQ), headDim, QK_NORM_EPS),
    normK: RMSNorm.load(w.at(normK), headDim, QK_NORM_EPS),
  };
}

/** (B, S, heads * headDim) -> normed (B, S, heads, headDim) queries, keys and values. */
function project(p: Projection, x: Tensor, heads: number): [Tensor, Tensor, Tensor] {
  const [batch, seq] = x.shape;
  const split = (t: Tensor): Tensor => t.reshape(batch, seq, heads, -1);
  return [p.normQ.forward(split(p.q.forward(x))), p.normK.forward(split(p.k.forward(x))), split(p.v.forward(x))];
}

export class QwenImageJointAttention {
  constructor(
    readonly heads: number,
    readonly image: Projection,
    readonly text: Projection,
    readonly toOut: Linear,
    readonly toAddOut: Linear,
  ) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): QwenImageJointAttention {
    return new QwenImageJointAttention(
      heads,
      loadProjection(w, ['to_q', 'to_k', 'to_v', 'norm_q', 'norm_k'], dim, headDim),
      loadProjection(w, ['add_q_proj', 'add_k_proj', 'add_v_proj', 'norm_added_q', 'norm_added_k'], dim, headDim),
      Linear.load(w.at('to_out.0'), dim, dim),
      Linear.load(w.at('to_add_out'), dim, dim),
    );
  }

  /**
   * Returns [image output, text output]. `keyMask`, when given, is the additive (B, 1, 1, text +
   * image tokens) mask of the joint keys: 0 where a key is seen, -Infinity for padded text.
   */
  forward(hidden: Tensor, encoder: Tensor, rotary: RotaryEmbedding, keyMask: Tensor | null): [Tensor, Tensor] {
    return tidy(() => {
      const [q, k, v] = project(this.image, hidden, this.heads);
      const [tq, tk, tv] = project(this.text, encoder, this.heads);
      // The tables are (S, D); as (S, 1, D) they broadcast over batch and heads.
      const cos = rotary.cos.unsqueeze(1);
      const sin = rotary.sin.unsqueeze(1);
      const heads1st = (t: Tensor): Tensor => t.transpose(1, 2);
      const joint = attention(heads1st(rope(concat([tq, q], 1), cos, sin)), heads1st(rope(concat([tk, k], 1), cos, sin)), heads1st(concat([tv, v], 1)), {
        headsLast: true,
        mask: keyMask,
      });
      const [batch, seq] = joint.shape;
      const merged = joint.reshape(batch, seq, -1);
      const textLen = encoder.shape[1];
      return [this.toOut.forward(merged.narrow(1, textLen, hidden.shape[1])), this.toAddOut.forward(merged.narrow(1, 0, textLen))];
    });
  }
}
