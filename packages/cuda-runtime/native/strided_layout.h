// The one description of N operands that share a shape but have their own strides, for both
// backends: size-1 dimensions dropped and neighbours that are contiguous for every operand merged,
// so most layouts become one or two dimensions. The CPU walks it by rows (cpu/strided.h), CUDA
// unravels it per element (cuda/strided.cuh); a plain struct, so kernels take it by value.
#pragma once
#include <array>
#include <cstdint>

#include "common.h"

namespace dc {

template <int N>
struct StridedLayout {
  int ndim = 0;  // after merging; at least 1, the last dimension innermost
  int64_t shape[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};

  StridedLayout(const Shape& s, const std::array<const int64_t*, N>& st) {
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
};

}  // namespace dc
