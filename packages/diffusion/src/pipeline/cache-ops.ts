// The cache engine's tensor interface over the native runtime's tensors, shared by every
// model family's adapter.
import { add, mul, relL1, sqrt, square, sub, sum, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { ditcacheContainer, TENSOR_OPS, type TensorOps } from '@ditcache/core';

/** The magnitudes from which a float32 value rounds to infinity in each dtype (round to nearest even). */
const LARGEST_FINITE: Readonly<Record<string, number>> = {
  float32: Number.POSITIVE_INFINITY,
  // 65504 plus half an ulp (16): halfway rounds to the even neighbour, which is infinity.
  float16: 65520,
  // bfloat16's largest, (2 - 2^-7) 2^127 = 2^128 - 2^120, plus half an ulp (2^119).
  bfloat16: 2 ** 128 - 2 ** 119,
};

export const runtimeTensorOps: TensorOps<Tensor> = {
  sub,
  add,
  scale: (a, s) => mul(a, s),
  addScaled: (a, b, s) => tidy(() => add(a, mul(b, s))),
  relL1,
  shape: (a) => a.shape,
  clone: (a) => a.clone(),
  // The engine keeps these across transformer calls, whose scopes would otherwise free them.
  retain: (a) => a.keep(),
  release: (a) => a.dispose(),
  // The DMD calibrator's fit reads its snapshots to the host and brings its forecast back.
  toFloat64: (a) => Float64Array.from(a.toFloat32Array()),
  fromFloat64: (values, like) => {
    const rounded = Float32Array.from(values);
    const limit = LARGEST_FINITE[like.dtype] ?? Number.MAX_VALUE;
    for (const v of rounded) if (!(Math.abs(v) < limit)) return undefined;
    return tensor(rounded, like.shape, { dtype: like.dtype, device: like.device });
  },
  // MagCache's calibration: one norm per token, in float32 whatever the dtype, as it measures them.
  rowNorms: (a) => tidy(() => Float64Array.from(sqrt(sum(square(a.dtype === 'float32' ? a : a.cast('float32')), -1)).toFloat32Array())),
};

// enableCache on a runtime model that no adapter is registered for uses auto mode with these.
ditcacheContainer.register(TENSOR_OPS, { useValue: runtimeTensorOps as TensorOps<unknown> });
