// Helpers shared by the op implementations: validation, float32 staging and backend dispatch.
#pragma once
#include <initializer_list>

#include "kernels.h"
#include "ops.h"

#if DITCACHE_WITH_CUDA
#include "cuda/runtime.h"
// Runs the CUDA or CPU implementation of a kernel for tensors on `device`.
#define DC_DISPATCH(device, fn, ...)                                                          \
  ((device).is_cuda() ? (::dc::cuda::use_device((device).index), ::dc::cuda::fn(__VA_ARGS__)) \
                      : ::dc::cpu::fn(__VA_ARGS__))
#else
#define DC_DISPATCH(device, fn, ...) ::dc::cpu::fn(__VA_ARGS__)
#endif

namespace dc::ops {

// All tensors on one device; names the devices otherwise.
void check_same_device(const char* op, std::initializer_list<const Tensor*> ts);
// Float tensors only: int32 is for indices.
void check_float(const char* op, const Tensor& t, const char* what);
// The dtype of a result computed from these inputs: their common dtype, float32 if mixed.
DType result_dtype(std::initializer_list<const Tensor*> ts);
// Whether this device's element-wise and row kernels read and write every float dtype in one pass
// (the CPU's, which widen a chunk and round once); CUDA's take float32, so the op layer widens
// 16-bit operands for them and rounds their results.
inline bool reads_any_float(const Device& device) { return !device.is_cuda(); }
// t as float32; contiguous as well when asked. Returns t itself when it already qualifies.
Tensor staged_f32(const Tensor& t, bool contiguous);
// Converts a float32 result to the dtype the op promised.
Tensor finish(Tensor f32_result, DType dtype);
// Broadcast shape of a and b (NumPy rules), or an OpError naming both shapes.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
// A view of t expanded to `shape` (t must broadcast to it).
Tensor broadcast_to(const Tensor& t, const Shape& shape);

}  // namespace dc::ops
