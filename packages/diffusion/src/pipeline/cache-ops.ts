// The cache engine's tensor interface over the native runtime's tensors, shared by every
// model family's adapter.
import { add, mul, relL1, sqrt, square, sub, sum, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { ditcacheContainer, TENSOR_OPS, type TensorOps } from '@ditcache/core';

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
  // MagCache's calibration: one norm per token, in float32 whatever the dtype, as it measures them.
  rowNorms: (a) => tidy(() => Float64Array.from(sqrt(sum(square(a.dtype === 'float32' ? a : a.cast('float32')), -1)).toFloat32Array())),
};

// enableCache on a runtime model that no adapter is registered for uses auto mode with these.
ditcacheContainer.register(TENSOR_OPS, { useValue: runtimeTensorOps as TensorOps<unknown> });
