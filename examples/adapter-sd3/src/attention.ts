// SD3's attention (diffusers' Attention with JointAttnProcessor2_0): the image and text streams
// are projected by their own weights, optionally RMS-normed per head (SD3.5's qk_norm), attend
// jointly (image tokens first), and are projected back by their own output layers. SD3.5's
// dual-attention blocks add a plain self-attention over the image stream (`attn2`). In bfloat16 /
// float16 every op takes and returns the dtype, and the q / k norms round twice, as diffusers' own
// RMSNorm does (see qkNorm).
import { attention, concat, mul, rmsNorm, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, RMSNorm, type WeightReader } from '@ditcache/diffusion';

/** Epsilon of the query / key RMS norms (diffusers builds SD3's attention with eps=1e-6). */
const QK_NORM_EPS = 1e-6;

/** The query / key / value projections of one stream and, with qk_norm, their per-head norms. */
export interface Projection {
  q: Linear;
  k: Linear;
  v: Linear;
  normQ: RMSNorm | null;
  normK: RMSNorm | null;
}

export interface AttentionShape {
  dim: number;
  heads: number;
  headDim: number;
  /** Queries and keys are RMS-normed per head (qk_norm: 'rms_norm'). */
  qkNorm: boolean;
}

function loadProjection(w: WeightReader, names: [q: string, k: string, v: string, normQ: string, normK: string], s: AttentionShape): Projection {
  const [q, k, v, normQ, normK] = names;
  return {
    q: Linear.load(w.at(q), s.dim, s.dim),
    k: Linear.load(w.at(k), s.dim, s.dim),
    v: Linear.load(w.at(v), s.dim, s.dim),
    normQ: s.qkNorm ? RMSNorm.load(w.at(normQ), s.headDim, QK_NORM_EPS) : null,
    normK: s.qkNorm ? RMSNorm.load(w.at(normK), s.headDim, QK_NORM_EPS) : null,
  };
}

/**
 * diffusers' RMSNorm (normalization.py, not torch.nn.RMSNorm): in 16-bit it rounds the normalised
 * values to the weight's dtype before multiplying by the weight, so they round twice; in float32
 * it is the one fused op.
 */
function qkNorm(norm: RMSNorm, t: Tensor): Tensor {
  if (t.dtype === 'float32' || norm.weight === null) return norm.forward(t);
  return tidy(() => mul(rmsNorm(t, null, norm.eps), norm.weight as Tensor));
}

/** (B, S, heads * headDim) -> (B, S, heads, headDim) queries, keys and values, q and k normed. */
function project(p: Projection, x: Tensor, heads: number): [Tensor, Tensor, Tensor] {
  const [batch, seq] = x.shape;
  const split = (t: Tensor): Tensor => t.reshape(batch, seq, heads, -1);
  const normed = (norm: RMSNorm | null, t: Tensor): Tensor => (norm ? qkNorm(norm, t) : t);
  return [normed(p.normQ, split(p.q.forward(x))), normed(p.normK, split(p.k.forward(x))), split(p.v.forward(x))];
}

/** Scaled dot-product attention and merged heads: (B, S, H, D) x3 -> (B, S, H * D). */
function attend(q: Tensor, k: Tensor, v: Tensor): Tensor {
  const [batch, seq, heads, headDim] = q.shape;
  const heads1st = (t: Tensor): Tensor => t.transpose(1, 2);
  return attention(heads1st(q), heads1st(k), heads1st(v), { headsLast: true }).reshape(batch, seq, heads * headDim);
}

/** `attn` of a JointTransformerBlock. */
export class JointAttention {
  constructor(
    readonly heads: number,
    readonly image: Projection,
    readonly text: Projection,
    readonly toOut: Linear,
    /** The text output layer; null in a `context_pre_only` block, whose text output is unused. */
    readonly toAddOut: Linear | null,
  ) {}

  static load(w: WeightReader, shape: AttentionShape, contextPreOnly: boolean): JointAttention {
    return new JointAttention(
      shape.heads,
      loadProjection(w, ['to_q', 'to_k', 'to_v', 'norm_q', 'norm_k'], shape),
      loadProjection(w, ['add_q_proj', 'add_k_proj', 'add_v_proj', 'norm_added_q', 'norm_added_k'], shape),
      Linear.load(w.at('to_out.0'), shape.dim, shape.dim),
      contextPreOnly ? null : Linear.load(w.at('to_add_out'), shape.dim, shape.dim),
    );
  }

  /** Returns [image output, text output (null without to_add_out)]. */
  forward(hidden: Tensor, encoder: Tensor): [Tensor, Tensor | null] {
    return tidy(() => {
      const [q, k, v] = project(this.image, hidden, this.heads);
      const [tq, tk, tv] = project(this.text, encoder, this.heads);
      const joint = attend(concat([q, tq], 1), concat([k, tk], 1), concat([v, tv], 1));
      const imageLen = hidden.shape[1];
      const image = this.toOut.forward(joint.narrow(1, 0, imageLen));
      return [image, this.toAddOut ? this.toAddOut.forward(joint.narrow(1, imageLen, encoder.shape[1])) : null];
    });
  }
}

/** `attn2` of an SD3.5 dual-attention block: self-attention over the image stream. */
export class SelfAttention {
  constructor(
    readonly heads: number,
    readonly projection: Projection,
    readonly toOut: Linear,
  ) {}

  static load(w: WeightReader, shape: AttentionShape): SelfAttention {
    return new SelfAttention(
      shape.heads,
      loadProjection(w, ['to_q', 'to_k', 'to_v', 'norm_q', 'norm_k'], shape),
      Linear.load(w.at('to_out.0'), shape.dim, shape.dim),
    );
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.toOut.forward(attend(...project(this.projection, x, this.heads))));
  }
}
