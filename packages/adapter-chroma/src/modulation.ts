// Chroma's modulation: where FLUX.1 projects each block's shift / scale / gate from the
// conditioning inside the block, Chroma computes them all at once. diffusers'
// ChromaCombinedTimestepTextProjEmbeddings gives every row of the table sinusoidal features of the
// timestep, of a guidance of 0 and of the row's index; ChromaApproximator (the distilled guidance
// layer, an MLP with RMS-normed residual layers) maps each row to one (dim) modulation vector.
import { add, tensor, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, MlpEmbedding, RMSNorm, sinusoidalTimestepEmbedding, type ComputeDtype, type WeightReader } from '@ditcache/diffusion';

/**
 * nn.RMSNorm without eps uses the machine epsilon of the type it computes in, which is float32
 * for 16-bit inputs too (PyTorch upcasts them): 2^-23 in every dtype (checked against torch 2.13).
 */
const APPROXIMATOR_NORM_EPS = 2 ** -23;

/** The sinusoidal features diffusers' Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0) makes. */
function features(values: readonly number[] | Float32Array, dim: number): Float32Array {
  using t = sinusoidalTimestepEmbedding(values, dim, { flipSinToCos: true, downscaleFreqShift: 0 });
  return t.toFloat32Array();
}

/**
 * The approximator's input (B, rows, channels): per row, the timestep's features (channels / 4),
 * a zero guidance's (channels / 4) and the row index x 1000's (channels / 2). Computed in float32
 * and rounded once to `dtype`, as diffusers rounds each part to the timestep's dtype.
 */
export function approximatorInput(timesteps: Float32Array, rows: number, channels: number, dtype: ComputeDtype, device: Device): Tensor {
  const quarter = channels / 4;
  const time = features(timesteps, quarter);
  const guidance = features([0], quarter);
  const index = features(
    Array.from({ length: rows }, (_, i) => i * 1000),
    channels / 2,
  );
  const batch = timesteps.length;
  const out = new Float32Array(batch * rows * channels);
  for (let b = 0; b < batch; ++b) {
    for (let r = 0; r < rows; ++r) {
      const at = (b * rows + r) * channels;
      out.set(time.subarray(b * quarter, (b + 1) * quarter), at);
      out.set(guidance, at + quarter);
      out.set(index.subarray(r * (channels / 2), (r + 1) * (channels / 2)), at + 2 * quarter);
    }
  }
  return tensor(out, [batch, rows, channels], { device, dtype });
}

/** diffusers' ChromaApproximator: in_proj, residual layers x + mlp(rms_norm(x)), out_proj. */
export class DistilledGuidanceLayer {
  constructor(
    readonly inProj: Linear,
    readonly layers: readonly MlpEmbedding[],
    readonly norms: readonly RMSNorm[],
    readonly outProj: Linear,
  ) {}

  static load(w: WeightReader, inDim: number, hiddenDim: number, outDim: number, layers: number): DistilledGuidanceLayer {
    return new DistilledGuidanceLayer(
      Linear.load(w.at('in_proj'), inDim, hiddenDim),
      Array.from({ length: layers }, (_, i) => MlpEmbedding.load(w.at('layers').at(i), hiddenDim, hiddenDim, 'silu')),
      Array.from({ length: layers }, (_, i) => RMSNorm.load(w.at('norms').at(i), hiddenDim, APPROXIMATOR_NORM_EPS)),
      Linear.load(w.at('out_proj'), hiddenDim, outDim),
    );
  }

  /** (B, rows, in) -> (B, rows, out): the modulation table. */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = this.inProj.forward(x);
      this.layers.forEach((layer, i) => {
        h = add(h, layer.forward(this.norms[i].forward(h)));
      });
      return this.outProj.forward(h);
    });
  }
}
