// How a (batched) matrix product is shared among the pool's threads, for every operand type
// (GemmArgs, HalfGemmArgs): one product per task when there are many small ones, otherwise
// each product split by row blocks (B shared) or, when thin, by column blocks.
#pragma once
#include <algorithm>

#include "../kernels.h"
#include "parallel.h"

namespace dc::cpu {

// Moves the output of s by `offset` elements (of C, and of the 16-bit C and the bias columns
// where the product has them).
inline void shift_output(GemmArgs& s, int64_t offset, int64_t) { s.c += offset; }
inline void shift_output(HalfGemmArgs& s, int64_t offset, int64_t first_column) {
  if (s.c) s.c += offset;
  if (s.c16) s.c16 += offset;
  if (s.bias) s.bias += first_column;
}

// Sub-product of rows [i0, i1) of g.
template <typename Args>
Args gemm_rows(const Args& g, int64_t i0, int64_t i1) {
  Args s = g;
  s.m = i1 - i0;
  s.a = g.trans_a ? g.a + i0 : g.a + i0 * g.lda;
  shift_output(s, i0 * g.ldc, 0);
  return s;
}

// Sub-product of columns [j0, j1) of g.
template <typename Args>
Args gemm_cols(const Args& g, int64_t j0, int64_t j1) {
  Args s = g;
  s.n = j1 - j0;
  s.b = g.trans_b ? g.b + j0 * g.ldb : g.b + j0;
  shift_output(s, j0, j0);
  return s;
}

// Whether a large product is split by row blocks (each thread packs all of B) or by column
// blocks (each packs all of A). The float32 rule keeps the split its results were pinned with;
// the 16-bit kernel packs every operand, so it splits whichever operand is larger.
enum class GemmSplit { Float32, LessPacking };

// Runs serial(sub-product) over the threads; row blocks are multiples of row_align and column
// blocks multiples of col_align (the micro-kernel's tile).
template <typename Args, typename Serial>
void parallel_gemm(const Args& g, int64_t row_align, int64_t col_align, GemmSplit split, Serial serial) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  const int threads = num_threads();
  const double flops = 2.0 * double(g.m) * double(g.n) * double(g.k);
  auto product = [&](int64_t i) {
    Args s = g;
    s.a += i * g.stride_a;
    s.b += i * g.stride_b;
    shift_output(s, i * g.stride_c, 0);
    return s;
  };
  if (g.batch >= threads || flops < 4e5) {
    parallel_for(g.batch, flops < 4e5 ? std::max<int64_t>(1, int64_t(4e5 / (flops + 1))) : 1,
                 [&](int64_t b0, int64_t b1) {
                   for (int64_t i = b0; i < b1; ++i) serial(product(i));
                 });
    return;
  }
  for (int64_t i = 0; i < g.batch; ++i) {
    Args s = product(i);
    const bool by_rows = split == GemmSplit::LessPacking ? s.m >= s.n : s.m >= 48 * threads || s.m >= s.n;
    const int64_t extent = by_rows ? s.m : s.n;
    const int64_t align = by_rows ? row_align : col_align;
    int64_t blocks = (extent + align - 1) / align;
    int64_t per = std::max<int64_t>(1, (blocks + threads - 1) / threads);
    parallel_for(blocks, per, [&](int64_t b0, int64_t b1) {
      int64_t e0 = b0 * align, e1 = std::min(extent, b1 * align);
      serial(by_rows ? gemm_rows(s, e0, e1) : gemm_cols(s, e0, e1));
    });
  }
}

}  // namespace dc::cpu
