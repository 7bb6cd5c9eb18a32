// diffusers' adaptive layer norms (normalization.py): a weightless LayerNorm whose scale and
// shift come from a projection of the conditioning embedding. DiT blocks (SD3, FLUX, HiDream)
// modulate both streams this way; AdaLayerNormZero also yields the gates of the residuals.
import { add, layerNorm, mul, silu, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { Linear } from './layers.js';
import type { WeightReader } from '../io/weights.js';

/** Epsilon of the weightless layer norms of diffusers' adaptive norms in DiT blocks. */
const ADAPTIVE_NORM_EPS = 1e-6;

export interface ModulateOptions {
  /** Of the weightless layer norm (default 1e-6). */
  readonly eps?: number;
  /**
   * Compute in float32 (with float32 scale and shift) and round once to x's dtype, as diffusers'
   * FP32LayerNorm followed by `.float()` ... `.type_as(x)` does in Wan.
   */
  readonly inFloat32?: boolean;
}

/** (B, dim) -> (B, 1, dim), to broadcast over the tokens; (B, 1, dim) as it is. */
function perToken(t: Tensor): Tensor {
  return t.rank === 2 ? t.unsqueeze(1) : t;
}

/**
 * LayerNorm(x) * (1 + scale) + shift: x (B, tokens, dim) normalised without weights, scale and
 * shift (B, dim) or (B, 1, dim) broadcast over the tokens, in diffusers' order of operations.
 * Every DiT block modulates with this one function, always (scale, shift) in that order.
 */
export function modulate(x: Tensor, scale: Tensor, shift: Tensor, opts: ModulateOptions = {}): Tensor {
  return tidy(() => {
    const input = opts.inFloat32 ? x.cast('float32') : x;
    const out = add(mul(layerNorm(input, null, null, opts.eps ?? ADAPTIVE_NORM_EPS), add(perToken(scale), 1)), perToken(shift));
    return opts.inFloat32 ? out.cast(x.dtype) : out;
  });
}

/**
 * x + gate * update, the (B, dim) or (B, 1, dim) gate broadcast over the tokens: how DiT blocks
 * add their attention and MLP outputs. `inFloat32`: added in float32 (with a float32 gate) and
 * rounded once to x's dtype, diffusers' `(x.float() + update * gate).type_as(x)` in Wan.
 */
export function gatedResidual(x: Tensor, gate: Tensor, update: Tensor, opts: { readonly inFloat32?: boolean } = {}): Tensor {
  return tidy(() => {
    if (!opts.inFloat32) return add(x, mul(perToken(gate), update));
    return add(x.cast('float32'), mul(update.cast('float32'), perToken(gate))).cast(x.dtype);
  });
}

/** The modulation parameters (B, dim) each that `linear` makes from silu(emb), in order. */
export function modulationParameters(linear: Linear, emb: Tensor, parts: number): Tensor[] {
  return tidy(() => linear.forward(silu(emb)).split(parts, 1));
}

/** What AdaLayerNormZero returns: the modulated input and the parameters of the rest of the block. */
export interface AdaLayerNormZeroOutput {
  normed: Tensor;
  gateMsa: Tensor;
  shiftMlp: Tensor;
  scaleMlp: Tensor;
  gateMlp: Tensor;
}

/**
 * diffusers' AdaLayerNormZero (layer_norm, no class embedding): `linear` maps silu(emb) to six
 * (B, dim) parts, shift / scale / gate for attention, then for the MLP.
 */
export class AdaLayerNormZero {
  constructor(readonly linear: Linear) {}

  static load(w: WeightReader, dim: number, embeddingDim = dim): AdaLayerNormZero {
    return new AdaLayerNormZero(Linear.load(w.at('linear'), embeddingDim, 6 * dim));
  }

  forward(x: Tensor, emb: Tensor): AdaLayerNormZeroOutput {
    return tidy(() => {
      const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = modulationParameters(this.linear, emb, 6);
      return { normed: modulate(x, scaleMsa, shiftMsa), gateMsa, shiftMlp, scaleMlp, gateMlp };
    });
  }
}

/**
 * diffusers' AdaLayerNormContinuous with a weightless layer_norm (`elementwise_affine=False`, as
 * every DiT output norm has it): `linear` maps silu(emb) to scale, then shift.
 */
export class AdaLayerNormContinuous {
  constructor(
    readonly linear: Linear,
    readonly eps: number,
  ) {}

  static load(w: WeightReader, dim: number, eps: number, conditioningDim = dim): AdaLayerNormContinuous {
    return new AdaLayerNormContinuous(Linear.load(w.at('linear'), conditioningDim, 2 * dim), eps);
  }

  forward(x: Tensor, conditioning: Tensor): Tensor {
    return tidy(() => {
      const [scale, shift] = modulationParameters(this.linear, conditioning, 2);
      return modulate(x, scale, shift, { eps: this.eps });
    });
  }
}
