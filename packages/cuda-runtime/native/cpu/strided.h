// Iteration over N operands that share one shape but have their own strides: dimensions that
// are contiguous for every operand are merged, and the callback receives whole innermost runs.
#pragma once
#include <array>
#include <cstdint>

#include "../common.h"

namespace dc::cpu {

template <int N>
struct StridedLoop {
  int ndim = 0;  // after merging; the last dimension is the innermost run
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];

  StridedLoop(const Shape& s, const std::array<const int64_t*, N>& st) {
    // Drop size-1 dims, then merge neighbours that are contiguous for all operands.
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
    if (ndim == 0) {  // a scalar: one run of one element
      shape[0] = 1;
      for (int k = 0; k < N; ++k) strides[k][0] = 0;
      ndim = 1;
    }
  }

  int64_t inner() const { return shape[ndim - 1]; }
  int64_t rows() const {
    int64_t r = 1;
    for (int d = 0; d < ndim - 1; ++d) r *= shape[d];
    return r;
  }

  // fn(offsets (elements, one per operand), run length, inner strides) for rows [r0, r1).
  template <typename F>
  void for_rows(int64_t r0, int64_t r1, F&& fn) const {
    if (r0 >= r1) return;
    int64_t idx[kMaxDims] = {0};
    int64_t off[N] = {0};
    int64_t rem = r0;
    for (int d = ndim - 2; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
      for (int k = 0; k < N; ++k) off[k] += idx[d] * strides[k][d];
    }
    int64_t inner_strides[N];
    for (int k = 0; k < N; ++k) inner_strides[k] = strides[k][ndim - 1];
    for (int64_t r = r0; r < r1; ++r) {
      fn(off, shape[ndim - 1], inner_strides);
      for (int d = ndim - 2; d >= 0; --d) {
        ++idx[d];
        for (int k = 0; k < N; ++k) off[k] += strides[k][d];
        if (idx[d] < shape[d]) break;
        for (int k = 0; k < N; ++k) off[k] -= idx[d] * strides[k][d];
        idx[d] = 0;
      }
    }
  }
};

}  // namespace dc::cpu
