// FLUX attention (diffusers' FluxAttention with FluxAttnProcessor): per-head RMS-normed queries
// and keys, rotary embeddings over the joint (text, image) sequence, scaled dot-product attention.
// Shared by the FLUX-derived families (FLUX.1, Chroma); Chroma also masks padded text keys.
import { attention, concat, rope, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { Linear, RMSNorm } from './layers.js';
import type { RotaryTables } from './rotary.js';
import type { WeightReader } from '../io/weights.js';

/** Epsilon of the query / key RMS norms in every FLUX block. */
const QK_NORM_EPS = 1e-6;

/** The query / key / value projections and query / key norms of one stream. */
export interface Projection {
  q: Linear;
  k: Linear;
  v: Linear;
  normQ: RMSNorm;
  normK: RMSNorm;
}

function loadProjection(w: WeightReader, names: [q: string, k: string, v: string, normQ: string, normK: string], dim: number, headDim: number): Projection {
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

/**
 * Rotates q and k, attends, and merges heads: (B, S, H, D) x3 -> (B, S, H * D). `mask`, when
 * given, is added to the scores: (B, 1, 1, S) with -Infinity at the keys no query may see.
 */
function attend(q: Tensor, k: Tensor, v: Tensor, rotary: RotaryTables, mask: Tensor | undefined): Tensor {
  const [batch, seq, heads, headDim] = q.shape;
  // The tables are (S, D); as (S, 1, D) they broadcast over batch and heads.
  const cos = rotary.cos.unsqueeze(1);
  const sin = rotary.sin.unsqueeze(1);
  const heads1st = (t: Tensor): Tensor => t.transpose(1, 2);
  const out = attention(heads1st(rope(q, cos, sin)), heads1st(rope(k, cos, sin)), heads1st(v), { headsLast: true, mask });
  return out.reshape(batch, seq, heads * headDim);
}

/**
 * The attention of a double-stream block: image and text tokens are projected by their own
 * weights, attend jointly (text first), and are projected back by their own output layers.
 */
export class JointAttention {
  constructor(
    readonly heads: number,
    readonly image: Projection,
    readonly text: Projection,
    readonly toOut: Linear,
    readonly toAddOut: Linear,
  ) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): JointAttention {
    return new JointAttention(
      heads,
      loadProjection(w, ['to_q', 'to_k', 'to_v', 'norm_q', 'norm_k'], dim, headDim),
      loadProjection(w, ['add_q_proj', 'add_k_proj', 'add_v_proj', 'norm_added_q', 'norm_added_k'], dim, headDim),
      Linear.load(w.at('to_out.0'), dim, dim),
      Linear.load(w.at('to_add_out'), dim, dim),
    );
  }

  /** Returns [image output, text output]. `keyMask` as attend() takes it, over the joint (text, image) keys. */
  forward(hidden: Tensor, encoder: Tensor, rotary: RotaryTables, keyMask?: Tensor): [Tensor, Tensor] {
    return tidy(() => {
      const [q, k, v] = project(this.image, hidden, this.heads);
      const [tq, tk, tv] = project(this.text, encoder, this.heads);
      const joint = attend(concat([tq, q], 1), concat([tk, k], 1), concat([tv, v], 1), rotary, keyMask);
      const textLen = encoder.shape[1];
      const imageLen = hidden.shape[1];
      return [this.toOut.forward(joint.narrow(1, textLen, imageLen)), this.toAddOut.forward(joint.narrow(1, 0, textLen))];
    });
  }
}

/** The attention of a single-stream block: one projection over the joint sequence, no output layer. */
export class SelfAttention {
  constructor(
    readonly heads: number,
    readonly projection: Projection,
  ) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): SelfAttention {
    return new SelfAttention(heads, loadProjection(w, ['to_q', 'to_k', 'to_v', 'norm_q', 'norm_k'], dim, headDim));
  }

  /** `keyMask` as attend() takes it. */
  forward(x: Tensor, rotary: RotaryTables, keyMask?: Tensor): Tensor {
    return tidy(() => attend(...project(this.projection, x, this.heads), rotary, keyMask));
  }
}
