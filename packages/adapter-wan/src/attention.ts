// Wan attention (diffusers' WanAttention with WanAttnProcessor): queries and keys are RMS-normed
// across all heads at once, self-attention rotates them by the 3-D rotary embedding, and the
// heads attend by scaled dot product before one output projection. In image-to-video models the
// cross-attention also attends to the image tokens through its added key / value projections,
// and the two results are summed before the output projection. In a 16-bit model the rotation
// computes in float32 with the float32 tables and rounds once to the model's dtype, as diffusers'
// apply_rotary_emb does.
import { add, attention, rope, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, RMSNorm, type WeightReader } from '@ditcache/diffusion';

import type { RotaryEmbedding } from './rotary.js';

/** The image branch of an image-to-video cross-attention: add_k_proj, add_v_proj and norm_added_k. */
export interface AddedKeyValue {
  toK: Linear;
  toV: Linear;
  normK: RMSNorm;
}

export class WanAttention {
  constructor(
    readonly heads: number,
    readonly toQ: Linear,
    readonly toK: Linear,
    readonly toV: Linear,
    readonly toOut: Linear,
    readonly normQ: RMSNorm,
    readonly normK: RMSNorm,
    readonly added: AddedKeyValue | null = null,
  ) {}

  /** `addedKvProjDim`: the width of the image tokens the added projections take (image-to-video cross-attention), or null. */
  static load(w: WeightReader, dim: number, heads: number, eps: number, addedKvProjDim: number | null = null): WanAttention {
    const proj = (name: string, inFeatures = dim): Linear => Linear.load(w.at(name), inFeatures, dim);
    const added =
      addedKvProjDim === null
        ? null
        : { toK: proj('add_k_proj', addedKvProjDim), toV: proj('add_v_proj', addedKvProjDim), normK: RMSNorm.load(w.at('norm_added_k'), dim, eps) };
    return new WanAttention(
      heads,
      proj('to_q'),
      proj('to_k'),
      proj('to_v'),
      proj('to_out.0'),
      RMSNorm.load(w.at('norm_q'), dim, eps),
      RMSNorm.load(w.at('norm_k'), dim, eps),
      added,
    );
  }

  /**
   * Tokens `x` (B, S, dim) attend to `context` (B, T, dim): to themselves with the rotary
   * embedding (self-attention, context = x), or to the text without it (cross-attention), and
   * then, given `image` tokens (B, I, added_kv_proj_dim), to those as well.
   */
  forward(x: Tensor, context: Tensor, rotary: RotaryEmbedding | null, image: Tensor | null = null): Tensor {
    return tidy(() => {
      const heads = (t: Tensor): Tensor => t.reshape(t.shape[0], t.shape[1], this.heads, -1);
      let q = heads(this.normQ.forward(this.toQ.forward(x)));
      let k = heads(this.normK.forward(this.toK.forward(context)));
      const v = heads(this.toV.forward(context));
      if (rotary) {
        q = rope(q, rotary.cos, rotary.sin).cast(q.dtype);
        k = rope(k, rotary.cos, rotary.sin).cast(k.dtype);
      }
      // (B, heads, tokens, head dim) in; the output comes back heads last, (B, S, heads, head dim).
      const attend = (keys: Tensor, values: Tensor): Tensor => attention(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2), { headsLast: true });
      let out = attend(k, v);
      if (image) {
        if (!this.added) throw new TypeError('WanAttention.forward: image tokens given to an attention without added key / value projections');
        out = add(out, attend(heads(this.added.normK.forward(this.added.toK.forward(image))), heads(this.added.toV.forward(image))));
      }
      return this.toOut.forward(out.reshape(x.shape[0], x.shape[1], -1));
    });
  }
}
