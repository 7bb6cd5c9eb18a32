// FLUX's transformer blocks: the double-stream FluxTransformerBlock (image and text keep their
// own weights and meet in joint attention) and the single-stream FluxSingleTransformerBlock
// (one set of weights over the concatenated sequence, attention and MLP in parallel). Both take
// and return both streams, as diffusers >= 0.35 does. Their bodies, shared with Chroma, are
// @ditcache/diffusion's doubleStreamBlock / singleStreamBlock; what is FLUX.1's own here is the
// modulation, projected from the conditioning by each block's norm linear.
import { concat, tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  Linear,
  doubleStreamBlock,
  loadDoubleStreamLayers,
  loadSingleStreamLayers,
  modulationParameters,
  singleStreamBlock,
  type FeedForward,
  type JointAttention,
  type SelfAttention,
  type WeightReader,
} from '@ditcache/diffusion';

import type { RotaryEmbedding } from './rotary.js';

/**
 * What the transformer's block loops call. `forward` returns [encoder, hidden], the next
 * block's inputs. A cache engine may put its own objects of this shape in the block arrays.
 */
export interface FluxBlock {
  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding): [encoder: Tensor, hidden: Tensor];
}

/** diffusers' FluxTransformerBlock. */
export class FluxTransformerBlock implements FluxBlock {
  constructor(
    readonly norm1: Linear,
    readonly norm1Context: Linear,
    readonly attn: JointAttention,
    readonly ff: FeedForward,
    readonly ffContext: FeedForward,
    /** diffusers' module name, for errors. */
    readonly name = 'transformer_blocks',
  ) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): FluxTransformerBlock {
    const { attn, ff, ffContext, name } = loadDoubleStreamLayers(w, dim, heads, headDim);
    return new FluxTransformerBlock(
      Linear.load(w.at('norm1.linear'), dim, 6 * dim),
      Linear.load(w.at('norm1_context.linear'), dim, 6 * dim),
      attn,
      ff,
      ffContext,
      name,
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding): [Tensor, Tensor] {
    return tidy(() => {
      // AdaLayerNormZero: shift, scale, gate for attention, then for the MLP.
      const image = modulationParameters(this.norm1, temb, 6);
      const text = modulationParameters(this.norm1Context, temb, 6);
      return doubleStreamBlock(this, hidden, encoder, image, text, rotary);
    });
  }
}

/** diffusers' FluxSingleTransformerBlock (mlp_ratio 4). */
export class FluxSingleTransformerBlock implements FluxBlock {
  constructor(
    readonly norm: Linear,
    readonly attn: SelfAttention,
    readonly projMlp: Linear,
    readonly projOut: Linear,
    /** diffusers' module name, for errors. */
    readonly name = 'single_transformer_blocks',
  ) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): FluxSingleTransformerBlock {
    const { attn, projMlp, projOut, name } = loadSingleStreamLayers(w, dim, heads, headDim);
    return new FluxSingleTransformerBlock(Linear.load(w.at('norm.linear'), dim, 3 * dim), attn, projMlp, projOut, name);
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding): [Tensor, Tensor] {
    const textLen = encoder.shape[1];
    const imageLen = hidden.shape[1];
    return tidy(() => {
      // AdaLayerNormZeroSingle: shift, scale, gate.
      const modulation = modulationParameters(this.norm, temb, 3);
      const out = singleStreamBlock(this, concat([encoder, hidden], 1), modulation, rotary);
      return [out.narrow(1, 0, textLen), out.narrow(1, textLen, imageLen)];
    });
  }
}
