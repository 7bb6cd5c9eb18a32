// OpenBLAS, loaded at run time: a binary built (or downloaded) on one machine runs on another
// with or without it, falling back to the built-in GEMM kernel.
#pragma once
#include <string>

namespace dc::cpu {

// CBLAS's enum values, fixed by the standard interface.
enum CblasOrder { kCblasRowMajor = 101 };
enum CblasTranspose { kCblasNoTrans = 111, kCblasTrans = 112 };

struct Blas {
  void (*sgemm)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                const float* b, int ldb, float beta, float* c, int ldc);
  void (*sgemv)(int order, int trans, int m, int n, float alpha, const float* a, int lda, const float* x, int incx,
                float beta, float* y, int incy);
  /** OpenBLAS's build description and the file it was loaded from. */
  std::string description;
};

/** The loaded BLAS, or null when none was found (the reason is in blas_absence()). */
const Blas* blas();
const std::string& blas_absence();

}  // namespace dc::cpu
