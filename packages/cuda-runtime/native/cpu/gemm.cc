#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "blas.h"
#include "features.h"
#include "gemm_split.h"
#include "scratch.h"

namespace dc::cpu {
namespace {

// ---- Built-in kernel: Goto/BLIS-style packing around a register-blocked micro-kernel. ----
// Both operands are packed into slivers, which also makes transposed inputs free.

constexpr int64_t kKC = 256;   // depth of one packed block
constexpr int64_t kMC = 192;   // rows of A per packed block (multiple of every MR below)
constexpr int64_t kNC = 3072;  // columns of B per packed block (multiple of every NR below)

inline float at_a(const GemmArgs& g, int64_t i, int64_t p) {
  return g.trans_a ? g.a[p * g.lda + i] : g.a[i * g.lda + p];
}

// Packs rows [i0, i0 + mc) x depth [p0, p0 + kc) of op(A) into MR-row slivers, zero-padded.
template <int MR>
void pack_a(const GemmArgs& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR) {
    int64_t rows = std::min<int64_t>(MR, mc - ir);
    if (!g.trans_a) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* src = g.a + (i0 + ir + r) * g.lda + p0;
        for (int64_t p = 0; p < kc; ++p) dst[p * MR + r] = src[p];
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = g.a + (p0 + p) * g.lda + i0 + ir;
        for (int64_t r = 0; r < rows; ++r) dst[p * MR + r] = src[r];
      }
    }
    for (int64_t r = rows; r < MR; ++r)
      for (int64_t p = 0; p < kc; ++p) dst[p * MR + r] = 0.f;
    dst += MR * kc;
  }
}

// Packs depth [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into NR-column slivers.
template <int NR>
void pack_b(const GemmArgs& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t jr = 0; jr < nc; jr += NR) {
    int64_t cols = std::min<int64_t>(NR, nc - jr);
    if (!g.trans_b) {
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = g.b + (p0 + p) * g.ldb + j0 + jr;
        float* d = dst + p * NR;
        int64_t c = 0;
        for (; c < cols; ++c) d[c] = src[c];
        for (; c < NR; ++c) d[c] = 0.f;
      }
    } else {
      for (int64_t c = 0; c < cols; ++c) {
        const float* src = g.b + (j0 + jr + c) * g.ldb + p0;
        for (int64_t p = 0; p < kc; ++p) dst[p * NR + c] = src[p];
      }
      for (int64_t c = cols; c < NR; ++c)
        for (int64_t p = 0; p < kc; ++p) dst[p * NR + c] = 0.f;
    }
    dst += NR * kc;
  }
}

// Micro-kernels: c (MR x NR, row stride ldc) += alpha * a_sliver * b_sliver over kc.

__attribute__((target("avx512f,avx512vl,fma"))) void ukernel_avx512(int64_t kc, const float* a,
                                                                    const float* b, float* c,
                                                                    int64_t ldc, float alpha) {
  constexpr int MR = 12;
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m512 b0 = _mm512_load_ps(b);
    __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      __m512 ai = _mm512_set1_ps(a[i]);
      acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
    }
    a += MR;
    b += 32;
  }
  __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    _mm512_storeu_ps(ci, _mm512_fmadd_ps(acc0[i], va, _mm512_loadu_ps(ci)));
    _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(acc1[i], va, _mm512_loadu_ps(ci + 16)));
  }
}

__attribute__((target("avx2,fma"))) void ukernel_avx2(int64_t kc, const float* a, const float* b,
                                                       float* c, int64_t ldc, float alpha) {
  constexpr int MR = 6;
  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m256 b0 = _mm256_load_ps(b);
    __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
    }
    a += MR;
    b += 16;
  }
  __m256 va = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    _mm256_storeu_ps(ci, _mm256_fmadd_ps(acc0[i], va, _mm256_loadu_ps(ci)));
    _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(acc1[i], va, _mm256_loadu_ps(ci + 8)));
  }
}

void ukernel_scalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                    float alpha) {
  constexpr int MR = 4, NR = 8;
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
    a += MR;
    b += NR;
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] += alpha * acc[i][j];
}

using Ukernel = void (*)(int64_t, const float*, const float*, float*, int64_t, float);

template <int MR, int NR, Ukernel K>
void gemm_blocked(const GemmArgs& g) {
  thread_local AlignedScratch<float> a_buf, b_buf;
  float* ap = a_buf.get(size_t(kMC) * kKC);
  float* bp = b_buf.get(size_t(kKC) * kNC);
  alignas(64) float edge[MR * NR];
  for (int64_t jc = 0; jc < g.n; jc += kNC) {
    int64_t nc = std::min(kNC, g.n - jc);
    for (int64_t pc = 0; pc < g.k; pc += kKC) {
      int64_t kc = std::min(kKC, g.k - pc);
      pack_b<NR>(g, pc, kc, jc, nc, bp);
      for (int64_t ic = 0; ic < g.m; ic += kMC) {
        int64_t mc = std::min(kMC, g.m - ic);
        pack_a<MR>(g, ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          int64_t nr = std::min<int64_t>(NR, nc - jr);
          const float* bs = bp + jr * kc;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            int64_t mr = std::min<int64_t>(MR, mc - ir);
            const float* as = ap + ir * kc;
            float* c = g.c + (ic + ir) * g.ldc + jc + jr;
            if (mr == MR && nr == NR) {
              K(kc, as, bs, c, g.ldc, g.alpha);
            } else {
              std::fill(edge, edge + MR * NR, 0.f);
              K(kc, as, bs, edge, NR, g.alpha);
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t j = 0; j < nr; ++j) c[i * g.ldc + j] += edge[i * NR + j];
            }
          }
        }
      }
    }
  }
}

// C = beta * C before accumulation; beta == 0 overwrites (C may hold NaN garbage).
void scale_c(const GemmArgs& g) {
  if (g.beta == 1.f) return;
  for (int64_t i = 0; i < g.m; ++i) {
    float* row = g.c + i * g.ldc;
    if (g.beta == 0.f)
      std::fill(row, row + g.n, 0.f);
    else
      for (int64_t j = 0; j < g.n; ++j) row[j] *= g.beta;
  }
}

void gemm_builtin(const GemmArgs& g) {
  scale_c(g);
  if (g.k == 0 || g.alpha == 0.f) return;
  switch (active_isa()) {
    case Isa::Avx512Bf16:
    case Isa::Avx512: gemm_blocked<12, 32, ukernel_avx512>(g); break;
    case Isa::Avx2: gemm_blocked<6, 16, ukernel_avx2>(g); break;
    case Isa::Scalar: gemm_blocked<4, 8, ukernel_scalar>(g); break;
  }
}

void gemm_blas(const Blas& blas, const GemmArgs& g) {
  if (g.k == 0) {
    scale_c(g);
    return;
  }
  if (g.m == 1) {
    // One row (a modulation or pooled projection): a matrix-vector product, which BLAS runs
    // far faster as gemv than as a one-row gemm.
    const int inc_a = g.trans_a ? int(g.lda) : 1;
    if (g.trans_b)
      blas.sgemv(kCblasRowMajor, kCblasNoTrans, int(g.n), int(g.k), g.alpha, g.b, int(g.ldb), g.a, inc_a, g.beta, g.c, 1);
    else
      blas.sgemv(kCblasRowMajor, kCblasTrans, int(g.k), int(g.n), g.alpha, g.b, int(g.ldb), g.a, inc_a, g.beta, g.c, 1);
    return;
  }
  blas.sgemm(kCblasRowMajor, g.trans_a ? kCblasTrans : kCblasNoTrans, g.trans_b ? kCblasTrans : kCblasNoTrans,
             int(g.m), int(g.n), int(g.k), g.alpha, g.a, int(g.lda), g.b, int(g.ldb), g.beta, g.c, int(g.ldc));
}

GemmBackend initial_backend() {
  const char* env = std::getenv("DITCACHE_GEMM");
  if (env && std::string(env) == "builtin") return GemmBackend::Builtin;
  return blas() ? GemmBackend::Blas : GemmBackend::Builtin;
}

GemmBackend g_backend = initial_backend();

}  // namespace

bool blas_available() { return blas() != nullptr; }

std::string blas_name() { return blas() ? blas()->description : "none: " + blas_absence(); }

GemmBackend gemm_backend() { return g_backend; }

void set_gemm_backend(GemmBackend b) {
  if (b == GemmBackend::Blas && !blas_available())
    throw OpError("setGemmBackend: no BLAS is loaded (" + blas_absence() + "); use 'builtin'");
  g_backend = b;
}

void gemm_serial(const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  if (g_backend == GemmBackend::Blas) return gemm_blas(*blas(), g);
  gemm_builtin(g);
}

void gemm(const GemmArgs& g, Device) {
  parallel_gemm(g, 12, 32, GemmSplit::Float32, [](const GemmArgs& s) { gemm_serial(s); });
}

}  // namespace dc::cpu
