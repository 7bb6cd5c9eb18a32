#include "vmath.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "features.h"

namespace dc::cpu {

// GCC 12 warns about its own AVX-512 intrinsic headers here ("__Y may be used uninitialized");
// the intrinsics' unused pass-through operand is the cause, not this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,fma")
namespace avx512 {
using V = __m512;
constexpr int64_t kLanes = 16;
static inline V vset(float v) { return _mm512_set1_ps(v); }
static inline V vload(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstore(float* p, V v) { _mm512_storeu_ps(p, v); }
static inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
static inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
static inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm512_div_ps(a, b); }
static inline V vneg(V a) { return _mm512_sub_ps(_mm512_setzero_ps(), a); }
static inline V vmin(V a, V b) { return _mm512_min_ps(a, b); }
static inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
static inline V vfmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static inline V vround(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// scalef rounds once into the subnormal range and overflows to infinity.
static inline V vscale_pow2(V p, V n) { return _mm512_scalef_ps(p, n); }
static inline V keep_nan(V v, V x) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), v, x); }
static inline float vsum(V v) { return _mm512_reduce_add_ps(v); }
#include "vmath_kernels.inc"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
using V = __m256;
constexpr int64_t kLanes = 8;
static inline V vset(float v) { return _mm256_set1_ps(v); }
static inline V vload(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstore(float* p, V v) { _mm256_storeu_ps(p, v); }
static inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
static inline V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
static inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm256_div_ps(a, b); }
static inline V vneg(V a) { return _mm256_sub_ps(_mm256_setzero_ps(), a); }
static inline V vmin(V a, V b) { return _mm256_min_ps(a, b); }
static inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
static inline V vfmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static inline V vround(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// 2^e for integer e in [-126, 127], built in the exponent field.
static inline V pow2(__m256i e) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23)); }
// 2^n in two factors keeps each biased exponent in range (n is in [-150, 129] after the clamp),
// so the product still rounds once into the subnormal range and overflows to infinity.
static inline V vscale_pow2(V p, V n) {
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256i rest = _mm256_sub_epi32(ni, half);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2(half)), pow2(rest));
}
static inline V keep_nan(V v, V x) { return _mm256_blendv_ps(v, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); }
static inline float vsum(V v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#include "vmath_kernels.inc"
}  // namespace avx2
#pragma GCC pop_options

// Each entry picks the widest instruction set in use; the portable path keeps libm's scalar calls.
void vector_exp(const float* x, float* y, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512Bf16:
    case Isa::Avx512: return avx512::exp_array(x, y, n);
    case Isa::Avx2: return avx2::exp_array(x, y, n);
    case Isa::Scalar:
      for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
  }
}

void vector_sigmoid(const float* x, float* y, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512Bf16:
    case Isa::Avx512: return avx512::sigmoid_array(x, y, n);
    case Isa::Avx2: return avx2::sigmoid_array(x, y, n);
    case Isa::Scalar:
      for (int64_t i = 0; i < n; ++i) y[i] = 1.f / (1.f + std::exp(-x[i]));
  }
}

void vector_silu(const float* x, float* y, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512Bf16:
    case Isa::Avx512: return avx512::silu_array(x, y, n);
    case Isa::Avx2: return avx2::silu_array(x, y, n);
    case Isa::Scalar:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.f + std::exp(-x[i]));
  }
}

void vector_gelu_tanh(const float* x, float* y, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512Bf16:
    case Isa::Avx512: return avx512::gelu_tanh_array(x, y, n);
    case Isa::Avx2: return avx2::gelu_tanh_array(x, y, n);
    case Isa::Scalar:
      for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = v / (1.f + std::exp(-2.f * 0.7978845608028654f * (v + 0.044715f * v * v * v)));
      }
  }
}

double vector_exp_shifted_sum(const float* x, float shift, float* y, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512Bf16:
    case Isa::Avx512: return avx512::exp_shifted_sum_array(x, shift, y, n);
    case Isa::Avx2: return avx2::exp_shifted_sum_array(x, shift, y, n);
    case Isa::Scalar: break;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = std::exp(x[i] - shift);
    sum += y[i];
  }
  return sum;
}

}  // namespace dc::cpu
