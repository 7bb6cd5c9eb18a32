// HunyuanVideo's attention (diffusers' Attention with HunyuanVideoAttnProcessor2_0): per-head
// RMS-normed queries and keys, rotary embeddings on the image tokens only, and one joint sequence
// of image tokens THEN text tokens (the reverse of FLUX's order), whose padded text keys an
// additive mask hides. The token refiner's plain self-attention (AttnProcessor2_0) is here too.
import { attention, concat, rope, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, RMSNorm, type WeightReader } from '@ditcache/diffusion';

import type { RotaryEmbedding } from './rotary.js';

/** Epsilon of the query / key RMS norms of every HunyuanVideo block. */
const QK_NORM_EPS = 1e-6;

/** The query / key / value projections (and, in the transformer blocks, query / key norms) of one stream. */
export interface Projection {
  q: Linear;
  k: Linear;
  v: Linear;
  normQ: RMSNorm | null;
  normK: RMSNorm | null;
}

function loadProjection(
  w: WeightReader,
  names: readonly [string, string, string, string, string] | readonly [string, string, string],
  dim: number,
  headDim: number,
): Projection {
  const [q, k, v, normQ, normK] = names;
  return {
    q: Linear.load(w.at(q), dim, dim),
    k: Linear.load(w.at(k), dim, dim),
    v: Linear.load(w.at(v), dim, dim),
    normQ: normQ ? RMSNorm.load(w.at(normQ), headDim, QK_NORM_EPS) : null,
    normK: normK ? RMSNorm.load(w.at(normK), headDim, QK_NORM_EPS) : null,
  };
}

/** (B, S, heads * headDim) -> (normed) (B, S, heads, headDim) queries, keys and values. */
function project(p: Projection, x: Tensor, heads: number): [Tensor, Tensor, Tensor] {
  const [batch, seq] = x.shape;
  const split = (t: Tensor): Tensor => t.reshape(batch, seq, heads, -1);
  const q = split(p.q.forward(x));
  const k = split(p.k.forward(x));
  return [p.normQ ? p.normQ.forward(q) : q, p.normK ? p.normK.forward(k) : k, split(p.v.forward(x))];
}

/** Rotates the first `rotary.cos.shape[0]` tokens of a (B, S, H, D) tensor, leaving the rest as they are. */
function rotateLeading(x: Tensor, rotary: RotaryEmbedding): Tensor {
  // The tables are (S, D); as (S, 1, D) they broadcast over batch and heads.
  const cos = rotary.cos.unsqueeze(1);
  const sin = rotary.sin.unsqueeze(1);
  const rotated = cos.shape[0];
  if (rotated === x.shape[1]) return rope(x, cos, sin);
  return concat([rope(x.narrow(1, 0, rotated).contiguous(), cos, sin), x.narrow(1, rotated, x.shape[1] - rotated)], 1);
}

/** Attends (B, S, H, D) x3 under an additive mask broadcastable to (B, H, S, S) and merges heads: -> (B, S, H * D). */
function attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor): Tensor {
  const [batch, seq, heads, headDim] = q.shape;
  const heads1st = (t: Tensor): Tensor => t.transpose(1, 2);
  const out = attention(heads1st(q), heads1st(k), heads1st(v), { mask, headsLast: true });
  return out.reshape(batch, seq, heads * headDim);
}

/**
 * The attention of a dual-stream block: image and text tokens are projected by their own
 * weights, attend jointly (image first), and are projected back by their own output layers.
 */
export class DualStreamAttention {
  constructor(
    readonly heads: number,
    readonly image: Projection,
    readonly text: Projection,
    readonly toOut: Linear,
    readonly toAddOut: Linear,
  ) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): DualStreamAttention {
    return new DualStreamAttention(
      heads,
      loadProjection(w, ['to_q', 'to_k', 'to_v', 'norm_q', 'norm_k'], dim, headDim),
      loadProjection(w, ['add_q_proj', 'add_k_proj', 'add_v_proj', 'norm_added_q', 'norm_added_k'], dim, headDim),
      Linear.load(w.at('to_out.0'), dim, dim),
      Linear.load(w.at('to_add_out'), dim, dim),
    );
  }

  /** Returns [image output, text output]; `mask` is additive, (B, 1, 1, image + text tokens). */
  forward(hidden: Tensor, encoder: Tensor, rotary: RotaryEmbedding, mask: Tensor): [Tensor, Tensor] {
    return tidy(() => {
      const [q, k, v] = project(this.image, hidden, this.heads);
      const [tq, tk, tv] = project(this.text, encoder, this.heads);
      const joint = attend(concat([rotateLeading(q, rotary), tq], 1), concat([rotateLeading(k, rotary), tk], 1), concat([v, tv], 1), mask);
      const imageLen = hidden.shape[1];
      const textLen = encoder.shape[1];
      return [this.toOut.forward(joint.narrow(1, 0, imageLen)), this.toAddOut.forward(joint.narrow(1, imageLen, textLen))];
    });
  }
}

/**
 * The attention of a single-stream block: one projection over the joint (image, text) sequence,
 * the image part rotated, no output layer (pre_only).
 */
export class SingleStreamAttention {
  constructor(
    readonly heads: number,
    readonly projection: Projection,
  ) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): SingleStreamAttention {
    return new SingleStreamAttention(heads, loadProjection(w, ['to_q', 'to_k', 'to_v', 'norm_q', 'norm_k'], dim, headDim));
  }

  /** x: (B, image + text tokens, dim), image tokens first; returns the same shape. */
  forward(x: Tensor, rotary: RotaryEmbedding, mask: Tensor): Tensor {
    return tidy(() => {
      const [q, k, v] = project(this.projection, x, this.heads);
      return attend(rotateLeading(q, rotary), rotateLeading(k, rotary), v, mask);
    });
  }
}

/** The token refiner's self-attention over the text tokens: biased projections, no norms, no rotation. */
export class RefinerAttention {
  constructor(
    readonly heads: number,
    readonly projection: Projection,
    readonly toOut: Linear,
  ) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): RefinerAttention {
    return new RefinerAttention(heads, loadProjection(w, ['to_q', 'to_k', 'to_v'], dim, headDim), Linear.load(w.at('to_out.0'), dim, dim));
  }

  /** `mask` is additive, (B, 1, tokens, tokens). */
  forward(x: Tensor, mask: Tensor): Tensor {
    return tidy(() => this.toOut.forward(attend(...project(this.projection, x, this.heads), mask)));
  }
}
