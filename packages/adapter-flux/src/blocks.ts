// FLUX's transformer blocks: the double-stream FluxTransformerBlock (image and text keep their
// own weights and meet in joint attention) and the single-stream FluxSingleTransformerBlock
// (one set of weights over the concatenated sequence, attention and MLP in parallel). Both take
// and return both streams, as diffusers >= 0.35 does. In float16 each block clips what diffusers
// clips and refuses to pass on values float16 cannot hold (see checkFloat16Range).
import { concat, gelu, tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  FeedForward,
  Linear,
  checkFloat16Range,
  clipToFloat16Range,
  gatedResidual,
  modulate,
  modulationParameters,
  type WeightReader,
} from '@ditcache/diffusion';

import { JointAttention, SelfAttention } from './attention.js';
import type { RotaryEmbedding } from './rotary.js';

/**
 * What the transformer's block loops call. `forward` returns [encoder, hidden], the next
 * block's inputs. A cache engine may put its own objects of this shape in the block arrays.
 */
export interface FluxBlock {
  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding): [encoder: Tensor, hidden: Tensor];
}

/** The block's module name in diffusers (e.g. 'transformer_blocks.3'), from its weights' prefix. */
function moduleName(w: WeightReader): string {
  return w.prefix.replace(/\.$/, '');
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
    return new FluxTransformerBlock(
      Linear.load(w.at('norm1.linear'), dim, 6 * dim),
      Linear.load(w.at('norm1_context.linear'), dim, 6 * dim),
      JointAttention.load(w.at('attn'), dim, heads, headDim),
      FeedForward.load(w.at('ff'), dim, 4 * dim, 'gelu-approximate'),
      FeedForward.load(w.at('ff_context'), dim, 4 * dim, 'gelu-approximate'),
      moduleName(w),
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding): [Tensor, Tensor] {
    return tidy(() => {
      // AdaLayerNormZero: shift, scale, gate for attention, then for the MLP.
      const [shift, scale, gate, shiftMlp, scaleMlp, gateMlp] = modulationParameters(this.norm1, temb, 6);
      const [cShift, cScale, cGate, cShiftMlp, cScaleMlp, cGateMlp] = modulationParameters(this.norm1Context, temb, 6);
      const [attnOut, contextAttnOut] = this.attn.forward(modulate(hidden, scale, shift), modulate(encoder, cScale, cShift), rotary);

      const h = gatedResidual(hidden, gate, attnOut);
      const hOut = gatedResidual(h, gateMlp, this.ff.forward(modulate(h, scaleMlp, shiftMlp)));
      const e = gatedResidual(encoder, cGate, contextAttnOut);
      // diffusers clips the text stream (only) of a float16 double-stream block.
      const eOut = clipToFloat16Range(gatedResidual(e, cGateMlp, this.ffContext.forward(modulate(e, cScaleMlp, cShiftMlp))));
      checkFloat16Range(this.name, eOut, hOut);
      return [eOut, hOut];
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
    return new FluxSingleTransformerBlock(
      Linear.load(w.at('norm.linear'), dim, 3 * dim),
      SelfAttention.load(w.at('attn'), dim, heads, headDim),
      Linear.load(w.at('proj_mlp'), dim, 4 * dim),
      Linear.load(w.at('proj_out'), 5 * dim, dim),
      moduleName(w),
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding): [Tensor, Tensor] {
    const textLen = encoder.shape[1];
    const imageLen = hidden.shape[1];
    return tidy(() => {
      const x = concat([encoder, hidden], 1);
      // AdaLayerNormZeroSingle: shift, scale, gate.
      const [shift, scale, gate] = modulationParameters(this.norm, temb, 3);
      const normed = modulate(x, scale, shift);
      const mlp = gelu(this.projMlp.forward(normed), { approximate: 'tanh' });
      // diffusers clips both streams of a float16 single-stream block.
      const out = clipToFloat16Range(gatedResidual(x, gate, this.projOut.forward(concat([this.attn.forward(normed, rotary), mlp], 2))));
      checkFloat16Range(this.name, out);
      return [out.narrow(1, 0, textLen), out.narrow(1, textLen, imageLen)];
    });
  }
}
