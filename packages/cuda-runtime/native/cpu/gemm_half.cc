// 16-bit matrix products: bfloat16 or float16 operands, float32 accumulation and result, the way
// PyTorch's 16-bit matmul computes (through oneDNN where it has AMX tiles: onednn.h). With AVX512-BF16, bfloat16 runs natively: operands are packed
// as (k, k+1) pairs, one 32-bit lane each, so that one VDPBF16PS does two multiply-adds per lane
// (twice the float32 FMA rate) and the weights are read at half the bytes. Elsewhere (float16,
// or a CPU without AVX512-BF16) operands are widened to float32 a block at a time and multiplied
// by the float32 GEMM; a float32 product of two 16-bit numbers is exact, so both give the
// 16-bit-input, float32-accumulation result.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../kernels.h"
#include "convert.h"
#include "features.h"
#include "gemm.h"
#include "gemm_split.h"
#include "scratch.h"
#include "onednn.h"

namespace dc::cpu {
namespace {

// Block sizes measured on Zen 5 (alternating variants in one process, the machine being too
// noisy between processes): deep blocks re-read the float32 sums fewer times, which outweighs
// the B sliver (64 KiB) streaming from L2 instead of sitting in L1; 3-5% over 256-deep blocks.
constexpr int64_t kKC = 1024;  // depth of one packed block (even: whole pairs)
constexpr int64_t kMC = 98;    // rows of A per packed block (multiple of kMR)
constexpr int64_t kNC = 3072;  // columns of B per packed block (multiple of kNR)
// Float32 sums held at once, in bytes: they live in a reused per-thread buffer (no fresh pages
// to fault in, no zero-fill), and as many rows as fit share one packing of each B block.
constexpr int64_t kSumsBytes = int64_t(8) << 20;
constexpr int kMR = 14, kNR = 32;

inline uint32_t load_pair(const uint16_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint32_t make_pair(uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); }

// Rows [i0, i0 + mc) x depth [p0, p0 + kc) of op(A) as kMR-row slivers of pairs: pair q of row
// r at dst[q * kMR + r]; rows past mc and the odd depth's missing half are zero.
void pack_a_pairs(const HalfGemmArgs& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2, full = kc / 2;
  for (int64_t ir = 0; ir < mc; ir += kMR) {
    const int64_t rows = std::min<int64_t>(kMR, mc - ir);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + ir + r;
      if (!g.trans_a) {
        const uint16_t* src = g.a + i * g.lda + p0;
        for (int64_t q = 0; q < full; ++q) dst[q * kMR + r] = load_pair(src + 2 * q);
        if (kp > full) dst[full * kMR + r] = src[2 * full];
      } else {
        const uint16_t* src = g.a + p0 * g.lda + i;
        for (int64_t q = 0; q < full; ++q) dst[q * kMR + r] = make_pair(src[2 * q * g.lda], src[(2 * q + 1) * g.lda]);
        if (kp > full) dst[full * kMR + r] = src[2 * full * g.lda];
      }
    }
    for (int64_t r = rows; r < kMR; ++r)
      for (int64_t q = 0; q < kp; ++q) dst[q * kMR + r] = 0;
    dst += kMR * kp;
  }
}

// Depth [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) as kNR-column slivers of pairs.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void pack_b_pairs(const HalfGemmArgs& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2, full = kc / 2;
  for (int64_t jr = 0; jr < nc; jr += kNR) {
    const int64_t cols = std::min<int64_t>(kNR, nc - jr);
    if (g.trans_b && cols == kNR) {  // B = W^T, W (n, k) row-major: gather pair q of 16 rows of W
      const __m512i lanes = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(int(g.ldb * 2)));
      const uint16_t* w0 = g.b + (j0 + jr) * g.ldb + p0;
      const uint16_t* w1 = w0 + 16 * g.ldb;
      for (int64_t q = 0; q < full; ++q) {
        _mm512_store_si512(dst + q * kNR, _mm512_i32gather_epi32(lanes, w0 + 2 * q, 1));
        _mm512_store_si512(dst + q * kNR + 16, _mm512_i32gather_epi32(lanes, w1 + 2 * q, 1));
      }
      for (int64_t c = 0; kp > full && c < cols; ++c) dst[full * kNR + c] = w0[c * g.ldb + 2 * full];
    } else if (g.trans_b) {
      for (int64_t c = 0; c < cols; ++c) {
        const uint16_t* src = g.b + (j0 + jr + c) * g.ldb + p0;
        for (int64_t q = 0; q < full; ++q) dst[q * kNR + c] = load_pair(src + 2 * q);
        if (kp > full) dst[full * kNR + c] = src[2 * full];
      }
    } else if (cols == kNR) {  // rows 2q and 2q + 1 interleaved, 32 columns at a time
      for (int64_t q = 0; q < kp; ++q) {
        const uint16_t* r0 = g.b + (p0 + 2 * q) * g.ldb + j0 + jr;
        __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0)));
        __m512i hi_lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + 16)));
        __m512i a = lo, b = hi_lo, ha = _mm512_setzero_si512(), hb = _mm512_setzero_si512();
        if (2 * q + 1 < kc) {
          const uint16_t* r1 = r0 + g.ldb;
          ha = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1))), 16);
          hb = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1 + 16))), 16);
        }
        _mm512_store_si512(dst + q * kNR, _mm512_or_si512(a, ha));
        _mm512_store_si512(dst + q * kNR + 16, _mm512_or_si512(b, hb));
      }
    } else {
      for (int64_t q = 0; q < kp; ++q) {
        const uint16_t* r0 = g.b + (p0 + 2 * q) * g.ldb + j0 + jr;
        const bool has_hi = 2 * q + 1 < kc;
        for (int64_t c = 0; c < cols; ++c) dst[q * kNR + c] = make_pair(r0[c], has_hi ? r0[g.ldb + c] : 0);
      }
    }
    if (cols < kNR)
      for (int64_t q = 0; q < kp; ++q)
        for (int64_t c = cols; c < kNR; ++c) dst[q * kNR + c] = 0;
    dst += kNR * kp;
  }
}

// c (kMR x kNR, row stride ldc) = (first ? 0 : c) + a_sliver * b_sliver over kp pairs.
__attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16"))) void ukernel_bf16(int64_t kp, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, bool first) {
  // The sums tile is read only after the depth loop; fetching it now hides its latency.
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }
  __m512 acc0[kMR], acc1[kMR];
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t q = 0; q < kp; ++q) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(int(a[i]));
      acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, b0);
      acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, b1);
    }
    a += kMR;
    b += kNR;
  }
  if (first) {
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i) {
      _mm512_storeu_ps(c + i * ldc, acc0[i]);
      _mm512_storeu_ps(c + i * ldc + 16, acc1[i]);
    }
    return;
  }
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i) {
    float* ci = c + i * ldc;
    _mm512_storeu_ps(ci, _mm512_add_ps(acc0[i], _mm512_loadu_ps(ci)));
    _mm512_storeu_ps(ci + 16, _mm512_add_ps(acc1[i], _mm512_loadu_ps(ci + 16)));
  }
}

// The block rows [i0, i0 + rows) x columns [j0, j0 + cols) of the result from its float32
// sums (row stride ld): alpha, beta * C and the bias applied, then stored to C or rounded into c16.
void epilogue(const HalfGemmArgs& g, const float* sums, int64_t ld, int64_t i0, int64_t rows, int64_t j0, int64_t cols) {
  thread_local std::vector<float> row;
  row.resize(size_t(cols));
  for (int64_t i = 0; i < rows; ++i) {
    const float* s = sums + i * ld;
    float* r = row.data();
    const float* c_in = g.beta != 0.f ? g.c + (i0 + i) * g.ldc + j0 : nullptr;
    const float* bias = g.bias ? g.bias + j0 : nullptr;
    for (int64_t j = 0; j < cols; ++j) {
      float v = g.alpha * s[j];
      if (c_in) v += g.beta * c_in[j];
      if (bias) v += bias[j];
      r[j] = v;
    }
    if (g.c16)
      narrow_run(r, g.c16 + (i0 + i) * g.ldc + j0, cols, g.dtype);
    else
      std::copy(r, r + cols, g.c + (i0 + i) * g.ldc + j0);
  }
}

// Float32 sums of rows [i0, i0 + rows) x columns [jc, jc + nc) of op(A) op(B) into sums
// (row stride nc).
void bf16_sums(const HalfGemmArgs& g, int64_t i0, int64_t rows, int64_t jc, int64_t nc, float* sums) {
  thread_local AlignedScratch<uint32_t> a_buf, b_buf;
  uint32_t* ap = a_buf.get(size_t(kMC) * kKC / 2);
  uint32_t* bp = b_buf.get(size_t(kKC) / 2 * kNC);
  alignas(64) float edge[kMR * kNR];
  const int64_t ld = nc;
  for (int64_t pc = 0; pc < g.k; pc += kKC) {
    const int64_t kc = std::min(kKC, g.k - pc), kp = (kc + 1) / 2;
    const bool first = pc == 0;
    pack_b_pairs(g, pc, kc, jc, nc, bp);
    for (int64_t ic = 0; ic < rows; ic += kMC) {
      const int64_t mc = std::min(kMC, rows - ic);
      pack_a_pairs(g, i0 + ic, mc, pc, kc, ap);
      for (int64_t jr = 0; jr < nc; jr += kNR) {
        const int64_t nr = std::min<int64_t>(kNR, nc - jr);
        const uint32_t* bs = bp + jr * kp;
        for (int64_t ir = 0; ir < mc; ir += kMR) {
          const int64_t mr = std::min<int64_t>(kMR, mc - ir);
          const uint32_t* as = ap + ir * kp;
          float* c = sums + (ic + ir) * ld + jr;
          if (mr == kMR && nr == kNR) {
            ukernel_bf16(kp, as, bs, c, ld, first);
          } else {
            ukernel_bf16(kp, as, bs, edge, kNR, true);
            for (int64_t i = 0; i < mr; ++i)
              for (int64_t j = 0; j < nr; ++j) c[i * ld + j] = (first ? 0.f : c[i * ld + j]) + edge[i * kNR + j];
          }
        }
      }
    }
  }
}

void gemm_bf16_blocked(const HalfGemmArgs& g) {
  thread_local AlignedScratch<float> sums_buf;
  for (int64_t jc = 0; jc < g.n; jc += kNC) {
    const int64_t nc = std::min(kNC, g.n - jc);
    const int64_t chunk = std::max<int64_t>(kMR, kSumsBytes / int64_t(sizeof(float)) / nc / kMR * kMR);
    for (int64_t i0 = 0; i0 < g.m; i0 += chunk) {
      const int64_t rows = std::min(chunk, g.m - i0);
      float* sums = sums_buf.get(size_t(rows * nc));
      bf16_sums(g, i0, rows, jc, nc, sums);
      epilogue(g, sums, nc, i0, rows, jc, nc);
    }
  }
}

// One row times W^T (W (n, k) row-major, the modulation and pooled projections): each output
// is a dot product of two contiguous bfloat16 runs, read once, so the product runs at memory speed.
__attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16"))) void gemv_bf16(const HalfGemmArgs& g) {
  thread_local std::vector<float> sums;
  sums.resize(size_t(g.n));
  const int64_t k = g.k;
  const __mmask32 tail = k % 32 ? __mmask32((1ull << (k % 32)) - 1) : 0;
  for (int64_t j = 0; j < g.n; ++j) {
    const uint16_t* w = g.b + j * g.ldb;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 64 <= k; p += 64) {
      acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512(g.a + p), (__m512bh)_mm512_loadu_si512(w + p));
      acc1 = _mm512_dpbf16_ps(acc1, (__m512bh)_mm512_loadu_si512(g.a + p + 32), (__m512bh)_mm512_loadu_si512(w + p + 32));
    }
    for (; p + 32 <= k; p += 32)
      acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512(g.a + p), (__m512bh)_mm512_loadu_si512(w + p));
    if (tail)
      acc1 = _mm512_dpbf16_ps(acc1, (__m512bh)_mm512_maskz_loadu_epi16(tail, g.a + p), (__m512bh)_mm512_maskz_loadu_epi16(tail, w + p));
    sums[size_t(j)] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
  epilogue(g, sums.data(), g.n, 0, 1, 0, g.n);
}

// The one-row product W x without AVX512-BF16 dot products: W's rows widened a chunk at a
// time into a buffer that stays in L1, so the weights are read once, at 16 bits.
void gemv_widened(const HalfGemmArgs& g) {
  constexpr int64_t kChunk = 1024;
  thread_local std::vector<float> x, w, sums;
  x.resize(size_t(g.k));
  w.resize(size_t(kChunk));
  sums.resize(size_t(g.n));
  widen_run(g.a, x.data(), g.k, g.dtype);
  for (int64_t j = 0; j < g.n; ++j) {
    const uint16_t* row = g.b + j * g.ldb;
    float lanes[16] = {};  // 16 independent sums, which the compiler keeps in vector registers
    float tail = 0.f;
    for (int64_t p0 = 0; p0 < g.k; p0 += kChunk) {
      const int64_t len = std::min(kChunk, g.k - p0);
      widen_run(row + p0, w.data(), len, g.dtype);
      const float* xs = x.data() + p0;
      int64_t p = 0;
      for (; p + 16 <= len; p += 16)
        for (int l = 0; l < 16; ++l) lanes[l] += xs[p + l] * w[size_t(p + l)];
      for (; p < len; ++p) tail += xs[p] * w[size_t(p)];
    }
    for (float v : lanes) tail += v;
    sums[size_t(j)] = tail;
  }
  epilogue(g, sums.data(), g.n, 0, 1, 0, g.n);
}

// Float16, or bfloat16 without AVX512-BF16: A widened once, B a column block at a time, the
// float32 GEMM (OpenBLAS or the built-in kernel) into float32 sums, then the same epilogue.
void gemm_widened(const HalfGemmArgs& g) {
  constexpr int64_t kColumns = 256;
  thread_local std::vector<float> fa, fb;
  thread_local AlignedScratch<float> sums_buf;
  const int64_t rows_a = g.trans_a ? g.k : g.m, cols_a = g.trans_a ? g.m : g.k;
  fa.resize(size_t(rows_a * cols_a));
  for (int64_t r = 0; r < rows_a; ++r) widen_run(g.a + r * g.lda, fa.data() + r * cols_a, cols_a, g.dtype);
  float* sums = sums_buf.get(size_t(g.m * g.n));
  for (int64_t j0 = 0; j0 < g.n; j0 += kColumns) {
    const int64_t nc = std::min(kColumns, g.n - j0);
    GemmArgs f;
    f.trans_a = g.trans_a;
    f.trans_b = g.trans_b;
    f.m = g.m;
    f.n = nc;
    f.k = g.k;
    f.a = fa.data();
    f.lda = cols_a;
    if (g.trans_b) {  // columns j0.. of W^T are rows j0.. of W
      fb.resize(size_t(nc * g.k));
      for (int64_t c = 0; c < nc; ++c) widen_run(g.b + (j0 + c) * g.ldb, fb.data() + c * g.k, g.k, g.dtype);
      f.ldb = g.k;
    } else {
      fb.resize(size_t(g.k * nc));
      for (int64_t p = 0; p < g.k; ++p) widen_run(g.b + p * g.ldb + j0, fb.data() + p * nc, nc, g.dtype);
      f.ldb = nc;
    }
    f.b = fb.data();
    f.beta = 0.f;
    f.c = sums + j0;
    f.ldc = g.n;
    gemm_serial(f);
  }
  epilogue(g, sums, g.n, 0, g.m, 0, g.n);
}

bool native_bf16(const HalfGemmArgs& g) { return g.dtype == DType::BF16 && active_isa() >= Isa::Avx512Bf16; }

}  // namespace

void gemm_half_serial(const HalfGemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {  // no products: the sums are zero
    thread_local std::vector<float> zeros;
    zeros.assign(size_t(g.m * g.n), 0.f);
    return epilogue(g, zeros.data(), g.n, 0, g.m, 0, g.n);
  }
  const bool gemv = g.m == 1 && g.trans_b && !g.trans_a;
  if (!native_bf16(g)) return gemv ? gemv_widened(g) : gemm_widened(g);
  if (gemv) return gemv_bf16(g);
  gemm_bf16_blocked(g);
}

void gemm_half(const HalfGemmArgs& g, Device) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (onednn_gemm_half(g)) return;
  parallel_gemm(g, kMR, kNR, GemmSplit::LessPacking, [](const HalfGemmArgs& s) { gemm_half_serial(s); });
}

}  // namespace dc::cpu
