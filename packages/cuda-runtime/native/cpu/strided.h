// The CPU's walk over a StridedLayout: whole innermost runs, row by row, so that the inner loop
// over a run vectorises.
#pragma once
#include "../strided_layout.h"

namespace dc::cpu {

template <int N>
struct StridedLoop : StridedLayout<N> {
  using StridedLayout<N>::StridedLayout;
  using StridedLayout<N>::ndim;
  using StridedLayout<N>::shape;
  using StridedLayout<N>::strides;

  int64_t inner() const { return shape[ndim - 1]; }
  int64_t rows() const {
    int64_t r = 1;
    for (int d = 0; d < ndim - 1; ++d) r *= shape[d];
    return r;
  }

  // Offsets (elements, one per operand) of the first element of row r.
  void row_offsets(int64_t r, int64_t (&off)[N]) const {
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 2; d >= 0; --d) {
      const int64_t i = r % shape[d];
      r /= shape[d];
      for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
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
