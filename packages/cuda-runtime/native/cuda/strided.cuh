// CUDA's walk over a StridedLayout: each thread unravels its element's row-major index into the
// operands' offsets, in 32-bit arithmetic where every offset fits.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "../strided_layout.h"
#include "launch.cuh"

namespace dc::cuda {

template <int N>
struct StridedIndexer : StridedLayout<N> {
  using StridedLayout<N>::StridedLayout;
  using StridedLayout<N>::ndim;
  using StridedLayout<N>::shape;
  using StridedLayout<N>::strides;

  // Whether every linear index and every partial offset fits in int32.
  bool fits_int32() const {
    if (this->numel() > kMaxIndex32) return false;
    for (int k = 0; k < N; ++k) {
      int64_t reach = 0;
      for (int d = 0; d < ndim; ++d) reach += (shape[d] - 1) * std::llabs(strides[k][d]);
      if (reach > kMaxIndex32) return false;
    }
    return true;
  }

  // Offsets (in elements) of the element with row-major index `linear`. The loop runs over
  // compile-time dimension numbers so that the arrays stay in the kernel parameter bank
  // instead of being copied to local memory for dynamic indexing.
  template <typename Index>
  __device__ __forceinline__ void offsets(int64_t linear, int64_t (&off)[N]) const {
    using Unsigned = std::make_unsigned_t<Index>;
    Unsigned rem = Unsigned(linear);
    Index acc[N];
#pragma unroll
    for (int k = 0; k < N; ++k) acc[k] = 0;
#pragma unroll
    for (int d = kMaxDims - 1; d > 0; --d) {
      if (d < ndim) {
        const Unsigned size = Unsigned(shape[d]);
        const Unsigned coord = rem % size;
        rem /= size;
#pragma unroll
        for (int k = 0; k < N; ++k) acc[k] += Index(coord) * Index(strides[k][d]);
      }
    }
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = int64_t(acc[k] + Index(rem) * Index(strides[k][0]));
  }
};

}  // namespace dc::cuda
