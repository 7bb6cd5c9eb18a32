// diffusers' LTXVideoTransformerBlock: self-attention over the video tokens (rotary), masked
// cross-attention to the text (on the un-normed tokens, ungated), and a GELU-tanh feed-forward.
// Self-attention and the feed-forward are modulated (shift, scale, gate) by the block's
// scale_shift_table plus the timestep projection, after weightless RMS norms. The block returns
// the tokens only: cache-dit's ForwardPattern 2.
import { add, mul, rmsNorm, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { FeedForward, checkFloat16Range, gatedResidual, type WeightReader } from '@ditcache/diffusion';
import { ForwardPattern } from '@ditcache/core';

import { LtxAttention } from './attention.js';
import type { LtxTransformerConfig } from './config.js';
import type { RotaryEmbedding } from './rotary.js';

/**
 * What the transformer's block loop calls: the tokens (B, S, dim), the projected text (B, T,
 * dim), the timestep projection `temb` (B, 1, 6 * dim), the rotary tables and the text's mask
 * bias (B, 1, 1, T) or null; returns the tokens. A cache engine may put its own objects of this
 * shape in the block array.
 */
export interface LtxBlock {
  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding, maskBias: Tensor | null): Tensor;
}

/** diffusers' RMSNorm without weights, then x * (1 + scale) + shift, in that order. */
export function rmsModulate(x: Tensor, scale: Tensor, shift: Tensor, eps: number): Tensor {
  return tidy(() => add(mul(rmsNorm(x, null, eps), add(scale, 1)), shift));
}

export class LtxTransformerBlock implements LtxBlock {
  /** Stated for the cache engine: (hidden, encoder, ...) in, hidden out. */
  static readonly forwardPattern = ForwardPattern.Pattern_2;

  constructor(
    /** (6, dim): added to the timestep projection, then split into the six modulations. */
    readonly scaleShiftTable: Tensor,
    readonly attn1: LtxAttention,
    readonly attn2: LtxAttention,
    readonly ff: FeedForward,
    readonly eps: number,
    /** diffusers' module name (e.g. 'transformer_blocks.3'), for errors. */
    readonly name = 'transformer_blocks',
  ) {}

  static load(w: WeightReader, config: LtxTransformerConfig): LtxTransformerBlock {
    const heads = config.num_attention_heads;
    const dim = heads * config.attention_head_dim;
    return new LtxTransformerBlock(
      w.tensor('scale_shift_table', [6, dim]),
      LtxAttention.load(w.at('attn1'), dim, heads),
      LtxAttention.load(w.at('attn2'), dim, heads),
      FeedForward.load(w.at('ff'), dim, 4 * dim, 'gelu-approximate'),
      config.norm_eps,
      w.prefix.replace(/\.$/, ''),
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding, maskBias: Tensor | null): Tensor {
    return tidy(() => {
      const [batch, , dim] = hidden.shape;
      // (B, 1, 6, dim): the table plus the projection, then six (B, 1, dim) parts.
      const ada = add(this.scaleShiftTable, temb.reshape(batch, 1, 6, dim));
      const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = ada.split(6, 2).map((t) => t.reshape(batch, 1, dim));
      const normed = rmsModulate(hidden, scaleMsa, shiftMsa, this.eps);
      let h = gatedResidual(hidden, gateMsa, this.attn1.forward(normed, normed, rotary));
      h = add(h, this.attn2.forward(h, encoder, null, maskBias));
      const out = gatedResidual(h, gateMlp, this.ff.forward(rmsModulate(h, scaleMlp, shiftMlp, this.eps)));
      checkFloat16Range(this.name, out);
      return out;
    });
  }
}
