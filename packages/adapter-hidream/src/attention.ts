// HiDream attention (diffusers' HiDreamAttention with HiDreamAttnProcessor): queries and keys
// RMS-normed over the whole width before the heads split, keys of padding tokens zeroed by the
// mask (their values stay: padding is still attended to, as in diffusers), rotary embeddings
// over the joint sequence (image tokens first), scaled dot-product attention.
import { attention, concat, mul, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, RMSNorm, type WeightReader } from '@ditcache/diffusion';

import { applyRotary, type HiDreamRotary } from './rotary.js';

/** Epsilon of the query / key RMS norms (nn.RMSNorm(inner_dim, 1e-5)). */
const QK_NORM_EPS = 1e-5;

/** The query / key / value / output projections and query / key norms of one stream. */
export interface Projection {
  q: Linear;
  k: Linear;
  v: Linear;
  out: Linear;
  normQ: RMSNorm;
  normK: RMSNorm;
}

/** Loads `to_q{suffix}` ... `k_rms_norm{suffix}`: the image stream has no suffix, the text stream `_t`. */
function loadProjection(w: WeightReader, suffix: '' | '_t', dim: number): Projection {
  return {
    q: Linear.load(w.at(`to_q${suffix}`), dim, dim),
    k: Linear.load(w.at(`to_k${suffix}`), dim, dim),
    v: Linear.load(w.at(`to_v${suffix}`), dim, dim),
    out: Linear.load(w.at(`to_out${suffix}`), dim, dim),
    normQ: RMSNorm.load(w.at(`q_rms_norm${suffix}`), dim, QK_NORM_EPS),
    normK: RMSNorm.load(w.at(`k_rms_norm${suffix}`), dim, QK_NORM_EPS),
  };
}

/** (B, S, dim) -> (B, S, heads, head dim) queries, keys (times `masks` (B, S) when given) and values. */
function project(p: Projection, x: Tensor, heads: number, masks: Tensor | null): [Tensor, Tensor, Tensor] {
  const [batch, seq] = x.shape;
  const split = (t: Tensor): Tensor => t.reshape(batch, seq, heads, -1);
  const keys = split(p.normK.forward(p.k.forward(x)));
  return [split(p.normQ.forward(p.q.forward(x))), masks ? mul(keys, masks.reshape(batch, seq, 1, 1)) : keys, split(p.v.forward(x))];
}

/** Rotates q and k, attends, and merges heads: (B, S, H, D) x3 -> (B, S, H * D). */
function attend(q: Tensor, k: Tensor, v: Tensor, rotary: HiDreamRotary): Tensor {
  const [batch, seq, heads, headDim] = q.shape;
  const heads1st = (t: Tensor): Tensor => t.transpose(1, 2);
  const out = attention(heads1st(applyRotary(q, rotary)), heads1st(applyRotary(k, rotary)), heads1st(v), { headsLast: true });
  return out.reshape(batch, seq, heads * headDim);
}

/** A double-stream block's attention: both streams projected by their own weights, attending jointly. */
export class JointAttention {
  constructor(
    readonly heads: number,
    readonly image: Projection,
    readonly text: Projection,
  ) {}

  static load(w: WeightReader, dim: number, heads: number): JointAttention {
    return new JointAttention(heads, loadProjection(w, '', dim), loadProjection(w, '_t', dim));
  }

  /** Returns [image output, text output]; `masks` (B, image tokens) or null. */
  forward(hidden: Tensor, masks: Tensor | null, encoder: Tensor, rotary: HiDreamRotary): [Tensor, Tensor] {
    return tidy(() => {
      const [q, k, v] = project(this.image, hidden, this.heads, masks);
      const [tq, tk, tv] = project(this.text, encoder, this.heads, null);
      const joint = attend(concat([q, tq], 1), concat([k, tk], 1), concat([v, tv], 1), rotary);
      const imageLen = hidden.shape[1];
      return [this.image.out.forward(joint.narrow(1, 0, imageLen)), this.text.out.forward(joint.narrow(1, imageLen, encoder.shape[1]))];
    });
  }
}

/** A single-stream block's attention over the joint sequence. */
export class SelfAttention {
  constructor(
    readonly heads: number,
    readonly projection: Projection,
  ) {}

  static load(w: WeightReader, dim: number, heads: number): SelfAttention {
    return new SelfAttention(heads, loadProjection(w, '', dim));
  }

  /** `masks` (B, tokens) or null. */
  forward(x: Tensor, masks: Tensor | null, rotary: HiDreamRotary): Tensor {
    return tidy(() => this.projection.out.forward(attend(...project(this.projection, x, this.heads, masks), rotary)));
  }
}
