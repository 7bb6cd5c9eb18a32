// HunyuanVideo's transformer blocks: the dual-stream HunyuanVideoTransformerBlock (image and text
// keep their own weights and meet in joint attention) and the single-stream
// HunyuanVideoSingleTransformerBlock (one set of weights over the joint sequence, attention and
// MLP in parallel). Both take and return (hidden, encoder), in that order (cache-dit's
// ForwardPattern 0), with the conditioning, the key mask and the image tokens' rotary tables.
import { concat, gelu, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { AdaLayerNormZero, FeedForward, Linear, gatedResidual, modulate, modulationParameters, type WeightReader } from '@ditcache/diffusion';

import { DualStreamAttention, SingleStreamAttention } from './attention.js';
import type { RotaryEmbedding } from './rotary.js';

/**
 * What the transformer's block loops call. `forward` returns [hidden, encoder], the next block's
 * inputs. A cache engine may put its own objects of this shape in the block arrays.
 */
export interface HunyuanVideoBlock {
  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, mask: Tensor, rotary: RotaryEmbedding): [hidden: Tensor, encoder: Tensor];
}

/** diffusers' HunyuanVideoTransformerBlock. */
export class HunyuanVideoTransformerBlock implements HunyuanVideoBlock {
  constructor(
    readonly norm1: AdaLayerNormZero,
    readonly norm1Context: AdaLayerNormZero,
    readonly attn: DualStreamAttention,
    readonly ff: FeedForward,
    readonly ffContext: FeedForward,
  ) {}

  static load(w: WeightReader, heads: number, headDim: number, mlpRatio: number): HunyuanVideoTransformerBlock {
    const dim = heads * headDim;
    const mlp = Math.trunc(dim * mlpRatio);
    return new HunyuanVideoTransformerBlock(
      AdaLayerNormZero.load(w.at('norm1'), dim),
      AdaLayerNormZero.load(w.at('norm1_context'), dim),
      DualStreamAttention.load(w.at('attn'), dim, heads, headDim),
      FeedForward.load(w.at('ff'), dim, mlp, 'gelu-approximate'),
      FeedForward.load(w.at('ff_context'), dim, mlp, 'gelu-approximate'),
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, mask: Tensor, rotary: RotaryEmbedding): [Tensor, Tensor] {
    return tidy(() => {
      const x = this.norm1.forward(hidden, temb);
      const c = this.norm1Context.forward(encoder, temb);
      const [attnOut, contextAttnOut] = this.attn.forward(x.normed, c.normed, rotary, mask);
      const h = gatedResidual(hidden, x.gateMsa, attnOut);
      const e = gatedResidual(encoder, c.gateMsa, contextAttnOut);
      const hOut = gatedResidual(h, x.gateMlp, this.ff.forward(modulate(h, x.scaleMlp, x.shiftMlp)));
      const eOut = gatedResidual(e, c.gateMlp, this.ffContext.forward(modulate(e, c.scaleMlp, c.shiftMlp)));
      return [hOut, eOut];
    });
  }
}

/** diffusers' HunyuanVideoSingleTransformerBlock. */
export class HunyuanVideoSingleTransformerBlock implements HunyuanVideoBlock {
  constructor(
    readonly norm: Linear,
    readonly attn: SingleStreamAttention,
    readonly projMlp: Linear,
    readonly projOut: Linear,
  ) {}

  static load(w: WeightReader, heads: number, headDim: number, mlpRatio: number): HunyuanVideoSingleTransformerBlock {
    const dim = heads * headDim;
    const mlp = Math.trunc(dim * mlpRatio);
    return new HunyuanVideoSingleTransformerBlock(
      Linear.load(w.at('norm.linear'), dim, 3 * dim),
      SingleStreamAttention.load(w.at('attn'), dim, heads, headDim),
      Linear.load(w.at('proj_mlp'), dim, mlp),
      Linear.load(w.at('proj_out'), dim + mlp, dim),
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, mask: Tensor, rotary: RotaryEmbedding): [Tensor, Tensor] {
    const imageLen = hidden.shape[1];
    const textLen = encoder.shape[1];
    return tidy(() => {
      const x = concat([hidden, encoder], 1);
      // AdaLayerNormZeroSingle: shift, scale, gate.
      const [shift, scale, gate] = modulationParameters(this.norm, temb, 3);
      const normed = modulate(x, scale, shift);
      const mlp = gelu(this.projMlp.forward(normed), { approximate: 'tanh' });
      const out = gatedResidual(x, gate, this.projOut.forward(concat([this.attn.forward(normed, rotary, mask), mlp], 2)));
      return [out.narrow(1, 0, imageLen), out.narrow(1, imageLen, textLen)];
    });
  }
}
