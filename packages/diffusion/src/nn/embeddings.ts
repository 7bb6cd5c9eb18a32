// Conditioning embeddings every family shares: the sinusoidal timestep features and the
// two-layer MLP that projects them (and pooled text) to the model width.
import { gelu, mul, silu, tensor, tidy, type Device, type DType, type Tensor } from '@ditcache/cuda-runtime';

import { Linear } from './layers.js';
import type { ComputeDtype, WeightReader } from '../io/weights.js';

export interface SinusoidalOptions {
  /** Put the cosine half first (diffusers' `flip_sin_to_cos`). */
  flipSinToCos?: boolean;
  /** diffusers' `downscale_freq_shift`: frequencies are spaced over (dim / 2 - shift). */
  downscaleFreqShift?: number;
  scale?: number;
  maxPeriod?: number;
  device?: Device;
  /**
   * The dtype of the returned features (default float32). They are always computed in float32
   * and rounded to this once, as diffusers' embedders do with `.to(dtype=...)` before their MLP.
   */
  dtype?: DType;
}

const f32 = Math.fround;

/**
 * The x1000 rule of FLUX-style models (FLUX.1, Chroma): the model takes the timestep (and
 * guidance) as the scheduler's value / 1000 and embeds it times 1000, rounded to the model's
 * dtype before and after (diffusers' `timestep.to(dtype) * 1000`). Reads `t` from the device:
 * the sinusoidal features are computed on the host.
 */
export function timesThousandInDtype(t: Tensor, dtype: ComputeDtype): Float32Array {
  if (dtype === 'float32') return t.toFloat32Array().map((v) => v * 1000);
  return tidy(() => mul(t.cast(dtype), 1000).toFloat32Array());
}

/**
 * diffusers' get_timestep_embedding: (N, dim) sin / cos features of fractional timesteps. Every
 * step rounds to float32 as torch does on float32 tensors, so the features match diffusers' to
 * the last bit or one; `dtype` rounds the float32 features once more at the end.
 */
export function sinusoidalTimestepEmbedding(timesteps: ArrayLike<number>, dim: number, opts: SinusoidalOptions = {}): Tensor {
  const { flipSinToCos = false, downscaleFreqShift = 1, scale = 1, maxPeriod = 10000 } = opts;
  const half = Math.floor(dim / 2);
  const logPeriod = f32(-Math.log(maxPeriod));
  const freqs = new Float64Array(half);
  for (let i = 0; i < half; ++i) freqs[i] = f32(Math.exp(f32(f32(logPeriod * i) / (half - downscaleFreqShift))));
  const out = new Float32Array(timesteps.length * dim);
  for (let n = 0; n < timesteps.length; ++n) {
    const t = f32(timesteps[n]);
    const row = n * dim;
    const [sinAt, cosAt] = flipSinToCos ? [half, 0] : [0, half];
    for (let i = 0; i < half; ++i) {
      const arg = f32(scale * f32(t * freqs[i]));
      out[row + sinAt + i] = Math.sin(arg);
      out[row + cosAt + i] = Math.cos(arg);
    }
    // An odd width leaves the last feature zero, as diffusers pads it.
  }
  return tensor(out, [timesteps.length, dim], { device: opts.device, dtype: opts.dtype });
}

/**
 * linear_1 -> activation -> linear_2: diffusers' TimestepEmbedding and PixArtAlphaTextProjection
 * have this shape and these weight names.
 */
export class MlpEmbedding {
  constructor(
    readonly linear1: Linear,
    readonly linear2: Linear,
    readonly activation: 'silu' | 'gelu_tanh',
  ) {}

  static load(w: WeightReader, inFeatures: number, hidden: number, activation: 'silu' | 'gelu_tanh', outFeatures = hidden): MlpEmbedding {
    return new MlpEmbedding(Linear.load(w.at('linear_1'), inFeatures, hidden), Linear.load(w.at('linear_2'), hidden, outFeatures), activation);
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const h = this.linear1.forward(x);
      return this.linear2.forward(this.activation === 'silu' ? silu(h) : gelu(h, { approximate: 'tanh' }));
    });
  }
}
