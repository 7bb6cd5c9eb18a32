// Element offsets of N operands that share one shape but have their own strides (at most
// kMaxDims dimensions), passed to kernels by value. Size-1 dimensions are dropped and
// neighbours that are contiguous for every operand merged, so that most layouts unravel with
// one or two divisions per element.
#pragma once
#include <array>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "../common.h"
#include "launch.cuh"

namespace dc::cuda {

template <int N>
struct StridedIndexer {
  int ndim = 0;  // after merging; at least 1
  int64_t shape[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};

  StridedIndexer(const Shape& s, const std::array<const int64_t*, N>& st) {
    for (size_t d = 0; d < s.size(); ++d) {
      if (s[d] == 1) continue;
      if (ndim > 0) {
        bool mergeable = true;
        for (int k = 0; k < N; ++k)
          if (strides[k][ndim - 1] != st[k][d] * s[d]) mergeable = false;
        if (mergeable) {
          shape[ndim - 1] *= s[d];
          for (int k = 0; k < N; ++k) strides[k][ndim - 1] = st[k][d];
          continue;
        }
      }
      shape[ndim] = s[d];
      for (int k = 0; k < N; ++k) strides[k][ndim] = st[k][d];
      ++ndim;
    }
    if (ndim == 0) {  // a scalar, or only size-1 dimensions: one element at offset 0
      shape[0] = 1;
      for (int k = 0; k < N; ++k) strides[k][0] = 0;
      ndim = 1;
    }
  }

  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= shape[d];
    return n;
  }

  // Whether every linear index and every partial offset fits in int32.
  bool fits_int32() const {
    if (numel() > kMaxIndex32) return false;
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
