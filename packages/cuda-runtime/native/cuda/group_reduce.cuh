// Reductions across the kGroup threads that cooperate on one row. Groups of up to 32 threads
// are aligned sub-warps and combine with shuffles alone; larger groups are whole blocks
// (kGroup == blockDim.x) and add one shared-memory exchange between their warps. Every thread
// of the group receives the result, and the combining order is fixed, so sums are
// deterministic. All threads of the warp (or block) must call it together.
#pragma once
#include <cuda_runtime.h>

namespace dc::cuda {

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

// fmaxf drops NaN operands, like the CPU backend's running std::max(max, x) does.
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <int kGroup, typename T, typename Op>
__device__ __forceinline__ T group_reduce(T v, Op op) {
  static_assert(kGroup > 0 && (kGroup & (kGroup - 1)) == 0, "groups are powers of two");
  constexpr int kLanes = kGroup < 32 ? kGroup : 32;
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  if constexpr (kGroup > 32) {
    constexpr int kWarps = kGroup / 32;
    __shared__ T warp_results[kWarps];
    if (threadIdx.x % 32 == 0) warp_results[threadIdx.x / 32] = v;
    __syncthreads();
    v = warp_results[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) v = op(v, warp_results[w]);
    __syncthreads();  // the next reduction reuses warp_results
  }
  return v;
}

}  // namespace dc::cuda
