// Vectorised 16-bit conversions; the scalar forms in half.h define the results.
#include "convert.h"

#include <immintrin.h>

#include "../half.h"
#include "features.h"

namespace dc::cpu {
namespace {

__attribute__((target("avx512f,avx512bw,avx512vl"))) void widen_bf16_avx512(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
  }
  for (; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void widen_f16_avx512(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(d + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
  for (; i < n; ++i) d[i] = f16_to_f32(s[i]);
}

// Round to nearest even on the integer bits, quiet NaN for NaN: f32_to_bf16, 16 at a time.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void narrow_bf16_avx512(const float* s, uint16_t* d, int64_t n) {
  const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i u = _mm512_castps_si512(_mm512_loadu_ps(s + i));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, lsb)), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
    rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), quiet));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtepi32_epi16(rounded));
  }
  for (; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}

// F16C rounds to nearest even and keeps NaN NaN; its NaN payload may differ from half.h's
// canonical 0x7e00, so NaN goes through the scalar form to keep one answer.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void narrow_f16_avx512(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(s + i);
    if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) {
      for (int64_t j = i; j < i + 16; ++j) d[j] = f32_to_f16(s[j]);
      continue;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) d[i] = f32_to_f16(s[i]);
}

bool wide() { return int(active_isa()) >= int(Isa::Avx512); }

}  // namespace

void widen_run(const uint16_t* src, float* dst, int64_t n, DType dtype) {
  const bool bf16 = dtype == DType::BF16;
  if (wide()) return bf16 ? widen_bf16_avx512(src, dst, n) : widen_f16_avx512(src, dst, n);
  if (bf16)
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
  else
    for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

void narrow_run(const float* src, uint16_t* dst, int64_t n, DType dtype) {
  const bool bf16 = dtype == DType::BF16;
  if (wide()) return bf16 ? narrow_bf16_avx512(src, dst, n) : narrow_f16_avx512(src, dst, n);
  if (bf16)
    for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
  else
    for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

}  // namespace dc::cpu
