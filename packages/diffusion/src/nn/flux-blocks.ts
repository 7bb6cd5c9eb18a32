// The bodies of FLUX's two block kinds, shared by the FLUX-derived families: the double-stream
// block (image and text keep their own weights and meet in joint attention) and the single-stream
// block (one set of weights over the joint sequence, attention and MLP in parallel). The families
// differ in where the modulation comes from (FLUX.1 projects it from the conditioning in each
// block, Chroma slices it from one precomputed table), so it is an argument here. In float16 each
// body clips what diffusers clips and refuses to pass on values float16 cannot hold.
import { concat, gelu, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { FeedForward } from './feed-forward.js';
import { JointAttention, SelfAttention } from './flux-attention.js';
import { Linear } from './layers.js';
import { gatedResidual, modulate } from './normalization.js';
import type { RotaryTables } from './rotary.js';
import type { WeightReader } from '../io/weights.js';
import { checkFloat16Range, clipToFloat16Range } from '../pipeline/float16.js';

/**
 * One stream's modulation in a double-stream block, in diffusers' chunk order: shift, scale, gate
 * (attention), shift, scale, gate (MLP); (B, dim) each.
 */
export type DoubleStreamModulation = readonly Tensor[];

/** A single-stream block's modulation, in diffusers' chunk order: shift, scale, gate; (B, dim) each. */
export type SingleStreamModulation = readonly Tensor[];

/** The weights of a double-stream block besides its modulation, and its diffusers module name (for errors). */
export interface DoubleStreamLayers {
  readonly attn: JointAttention;
  readonly ff: FeedForward;
  readonly ffContext: FeedForward;
  readonly name: string;
}

/** The weights of a single-stream block besides its modulation, and its diffusers module name (for errors). */
export interface SingleStreamLayers {
  readonly attn: SelfAttention;
  readonly projMlp: Linear;
  readonly projOut: Linear;
  readonly name: string;
}

/** The block's module name in diffusers (e.g. 'transformer_blocks.3'), from its weights' prefix. */
export function moduleName(w: WeightReader): string {
  return w.prefix.replace(/\.$/, '');
}

/** Reads attn, ff and ff_context of a double-stream block (mlp_ratio 4). */
export function loadDoubleStreamLayers(w: WeightReader, dim: number, heads: number, headDim: number): DoubleStreamLayers {
  return {
    attn: JointAttention.load(w.at('attn'), dim, heads, headDim),
    ff: FeedForward.load(w.at('ff'), dim, 4 * dim, 'gelu-approximate'),
    ffContext: FeedForward.load(w.at('ff_context'), dim, 4 * dim, 'gelu-approximate'),
    name: moduleName(w),
  };
}

/** Reads attn, proj_mlp and proj_out of a single-stream block (mlp_ratio 4). */
export function loadSingleStreamLayers(w: WeightReader, dim: number, heads: number, headDim: number): SingleStreamLayers {
  return {
    attn: SelfAttention.load(w.at('attn'), dim, heads, headDim),
    projMlp: Linear.load(w.at('proj_mlp'), dim, 4 * dim),
    projOut: Linear.load(w.at('proj_out'), 5 * dim, dim),
    name: moduleName(w),
  };
}

/**
 * A double-stream block on (hidden, encoder), returning [encoder, hidden]. `keyMask`, when given,
 * is added to the joint attention's scores (see JointAttention).
 */
export function doubleStreamBlock(
  layers: DoubleStreamLayers,
  hidden: Tensor,
  encoder: Tensor,
  image: DoubleStreamModulation,
  text: DoubleStreamModulation,
  rotary: RotaryTables,
  keyMask?: Tensor,
): [encoder: Tensor, hidden: Tensor] {
  return tidy(() => {
    const [shift, scale, gate, shiftMlp, scaleMlp, gateMlp] = image;
    const [cShift, cScale, cGate, cShiftMlp, cScaleMlp, cGateMlp] = text;
    const [attnOut, contextAttnOut] = layers.attn.forward(modulate(hidden, scale, shift), modulate(encoder, cScale, cShift), rotary, keyMask);

    const h = gatedResidual(hidden, gate, attnOut);
    const hOut = gatedResidual(h, gateMlp, layers.ff.forward(modulate(h, scaleMlp, shiftMlp)));
    const e = gatedResidual(encoder, cGate, contextAttnOut);
    // diffusers clips the text stream (only) of a float16 double-stream block.
    const eOut = clipToFloat16Range(gatedResidual(e, cGateMlp, layers.ffContext.forward(modulate(e, cScaleMlp, cShiftMlp))));
    checkFloat16Range(layers.name, eOut, hOut);
    return [eOut, hOut];
  });
}

/** A single-stream block on the joint (text, image) tokens. `keyMask` as doubleStreamBlock takes it. */
export function singleStreamBlock(layers: SingleStreamLayers, x: Tensor, modulation: SingleStreamModulation, rotary: RotaryTables, keyMask?: Tensor): Tensor {
  return tidy(() => {
    const [shift, scale, gate] = modulation;
    const normed = modulate(x, scale, shift);
    const mlp = gelu(layers.projMlp.forward(normed), { approximate: 'tanh' });
    // diffusers clips the float16 output of a single-stream block.
    const out = clipToFloat16Range(gatedResidual(x, gate, layers.projOut.forward(concat([layers.attn.forward(normed, rotary, keyMask), mlp], 2))));
    checkFloat16Range(layers.name, out);
    return out;
  });
}
