// transformers' RMS norms (T5LayerNorm, LlamaRMSNorm, Qwen2RMSNorm) all normalise in float32 and,
// in a 16-bit model, round the normalised values to the dtype before the weight multiplies them
// (rounded again). In float32 that is one fused RMS norm; in 16-bit the two roundings are kept,
// so an encoder's activations follow transformers' bit for bit where the ops allow.
import { mul, rmsNorm, type Tensor } from '@ditcache/cuda-runtime';
import { RMSNorm, type ComputeDtype, type WeightReader } from '@ditcache/diffusion';

/** `x` in `dtype`: itself when it already is, else a rounded copy. */
export function inDtype(x: Tensor, dtype: ComputeDtype): Tensor {
  return x.dtype === dtype ? x : x.cast(dtype);
}

export class TransformersRMSNorm {
  constructor(readonly norm: RMSNorm) {}

  static load(w: WeightReader, dim: number, eps: number): TransformersRMSNorm {
    return new TransformersRMSNorm(RMSNorm.load(w, dim, eps));
  }

  /** The norm of `x` in `dtype` (x may be float32 where a model widened its stream). */
  forward(x: Tensor, dtype: ComputeDtype): Tensor {
    if (dtype === 'float32') return this.norm.forward(x);
    return mul(inDtype(rmsNorm(x, null, this.norm.eps), dtype), this.norm.weight!);
  }
}
