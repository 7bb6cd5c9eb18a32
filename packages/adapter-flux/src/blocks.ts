// FLUX's transformer blocks: the double-stream FluxTransformerBlock (image and text keep their
// own weights and meet in joint attention) and the single-stream FluxSingleTransformerBlock
// (one set of weights over the concatenated sequence, attention and MLP in parallel). Both take
// and return both streams, as diffusers >= 0.35 does. In float16 each block clips what diffusers
// clips and refuses to pass on values float16 cannot hold (see checkFloat16Range).
import { add, concat, gelu, layerNorm, mul, silu, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, checkFloat16Range, clipToFloat16Range, type WeightReader } from '@ditcache/diffusion';

import { JointAttention, SelfAttention } from './attention.js';
import type { RotaryEmbedding } from './rotary.js';

/** Epsilon of the (weightless) layer norms in the blocks and the output norm. */
const NORM_EPS = 1e-6;

/**
 * What the transformer's block loops call. `forward` returns [encoder, hidden], the next
 * block's inputs. A cache engine may put its own objects of this shape in the block arrays.
 */
export interface FluxBlock {
  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding): [encoder: Tensor, hidden: Tensor];
}

/** LayerNorm(x) * (1 + scale) + shift, with (B, dim) scale and shift broadcast over tokens. */
export function modulate(x: Tensor, scale: Tensor, shift: Tensor): Tensor {
  return tidy(() => add(mul(layerNorm(x, null, null, NORM_EPS), add(scale, 1).unsqueeze(1)), shift.unsqueeze(1)));
}

/** gate (B, dim) broadcast over tokens, times x. */
function gated(gate: Tensor, x: Tensor): Tensor {
  return mul(gate.unsqueeze(1), x);
}

/** The modulation parameters (B, dim) each an AdaLayerNorm produces from silu(temb). */
function modulation(linear: Linear, temb: Tensor, parts: number): Tensor[] {
  return tidy(() => linear.forward(silu(temb)).split(parts, 1));
}

/** diffusers' FeedForward with activation "gelu-approximate": dim -> 4 dim -> dim. */
export class FeedForward {
  constructor(
    readonly proj: Linear,
    readonly out: Linear,
  ) {}

  static load(w: WeightReader, dim: number): FeedForward {
    return new FeedForward(Linear.load(w.at('net.0.proj'), dim, 4 * dim), Linear.load(w.at('net.2'), 4 * dim, dim));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.out.forward(gelu(this.proj.forward(x), { approximate: 'tanh' })));
  }
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
      FeedForward.load(w.at('ff'), dim),
      FeedForward.load(w.at('ff_context'), dim),
      moduleName(w),
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding): [Tensor, Tensor] {
    return tidy(() => {
      // AdaLayerNormZero: shift, scale, gate for attention, then for the MLP.
      const [shift, scale, gate, shiftMlp, scaleMlp, gateMlp] = modulation(this.norm1, temb, 6);
      const [cShift, cScale, cGate, cShiftMlp, cScaleMlp, cGateMlp] = modulation(this.norm1Context, temb, 6);
      const [attnOut, contextAttnOut] = this.attn.forward(modulate(hidden, scale, shift), modulate(encoder, cScale, cShift), rotary);

      const h = add(hidden, gated(gate, attnOut));
      const hOut = add(h, gated(gateMlp, this.ff.forward(modulate(h, scaleMlp, shiftMlp))));
      const e = add(encoder, gated(cGate, contextAttnOut));
      // diffusers clips the text stream (only) of a float16 double-stream block.
      const eOut = clipToFloat16Range(add(e, gated(cGateMlp, this.ffContext.forward(modulate(e, cScaleMlp, cShiftMlp)))));
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
      const [shift, scale, gate] = modulation(this.norm, temb, 3);
      const normed = modulate(x, scale, shift);
      const mlp = gelu(this.projMlp.forward(normed), { approximate: 'tanh' });
      // diffusers clips both streams of a float16 single-stream block.
      const out = clipToFloat16Range(add(x, gated(gate, this.projOut.forward(concat([this.attn.forward(normed, rotary), mlp], 2)))));
      checkFloat16Range(this.name, out);
      return [out.narrow(1, 0, textLen), out.narrow(1, textLen, imageLen)];
    });
  }
}
