// Scaled dot-product attention: per (batch, head, block of queries), scores = Q K^T * scale
// (+ mask), a row softmax, then P V, using the single-threaded GEMM inside parallel tasks.
// 16-bit inputs follow PyTorch's CPU flash attention: scores and softmax statistics in float32,
// the unnormalised probabilities rounded to the 16-bit dtype for the product with V (float32
// accumulation), the division by the row sum after it, and one rounding of the output.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../kernels.h"
#include "convert.h"
#include "gemm.h"
#include "parallel.h"
#include "vmath.h"

namespace dc::cpu {
namespace {

constexpr int64_t kQueryBlock = 128;  // larger blocks pack each head's keys and values fewer times

// Adds the mask rows [i0, i0 + rows) of (b, h) to the scores.
void add_mask(const AttentionArgs& a, int64_t b, int64_t h, int64_t i0, int64_t rows, float* s) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = s + i * a.sk;
    const float* m = a.mask + b * a.m_sb + h * a.m_sh + (i0 + i) * a.m_sq;
    if (a.m_sk == 1)
      for (int64_t j = 0; j < a.sk; ++j) row[j] += m[j];
    else
      for (int64_t j = 0; j < a.sk; ++j) row[j] += m[j * a.m_sk];
  }
}

// scores (rows x sk, float32) = scale * Q K^T for query rows [i0, i0 + rows) of (b, h).
template <typename Args, typename T>
Args scores_product(const AttentionArgs& a, const T* q, const T* k, int64_t b, int64_t h, int64_t i0, int64_t rows, float* scores) {
  Args qk;
  if constexpr (std::is_same_v<Args, HalfGemmArgs>) qk.dtype = a.dtype;
  qk.trans_b = true;
  qk.m = rows;
  qk.n = a.sk;
  qk.k = a.d;
  qk.alpha = a.scale;
  qk.a = q + b * a.q_sb + h * a.q_sh + i0 * a.q_ss;
  qk.lda = a.q_ss;
  qk.b = k + b * a.k_sb + h / (a.heads / a.heads_kv) * a.k_sh;
  qk.ldb = a.k_ss;
  qk.beta = 0.f;
  qk.c = scores;
  qk.ldc = a.sk;
  return qk;
}

float row_max(const float* row, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
  return mx;
}

void attention_f32(const AttentionArgs& a, int64_t b, int64_t h, int64_t i0, int64_t rows, std::vector<float>& scores) {
  const float* q = static_cast<const float*>(a.q);
  const float* k = static_cast<const float*>(a.k);
  const float* v = static_cast<const float*>(a.v);
  float* out = static_cast<float*>(a.out);
  const int64_t hk = h / (a.heads / a.heads_kv);
  scores.resize(size_t(rows * a.sk));
  float* s = scores.data();

  gemm_serial(scores_product<GemmArgs>(a, q, k, b, h, i0, rows, s));

  if (a.mask) add_mask(a, b, h, i0, rows, s);
  for (int64_t i = 0; i < rows; ++i) {
    float* row = s + i * a.sk;
    const float inv = float(1.0 / vector_exp_shifted_sum(row, row_max(row, a.sk), row, a.sk));
    for (int64_t j = 0; j < a.sk; ++j) row[j] *= inv;
  }

  GemmArgs pv;
  pv.m = rows;
  pv.n = a.dv;
  pv.k = a.sk;
  pv.a = s;
  pv.lda = a.sk;
  pv.b = v + b * a.v_sb + hk * a.v_sh;
  pv.ldb = a.v_ss;
  pv.beta = 0.f;
  pv.c = out + b * a.o_sb + h * a.o_sh + i0 * a.o_ss;
  pv.ldc = a.o_ss;
  gemm_serial(pv);
}

struct HalfScratch {
  std::vector<float> scores, sums, out;
  std::vector<uint16_t> probs;
};

void attention_half(const AttentionArgs& a, int64_t b, int64_t h, int64_t i0, int64_t rows, HalfScratch& w) {
  const uint16_t* q = static_cast<const uint16_t*>(a.q);
  const uint16_t* k = static_cast<const uint16_t*>(a.k);
  const uint16_t* v = static_cast<const uint16_t*>(a.v);
  uint16_t* out = static_cast<uint16_t*>(a.out);
  const int64_t hk = h / (a.heads / a.heads_kv);
  w.scores.resize(size_t(rows * a.sk));
  w.probs.resize(size_t(rows * a.sk));
  w.sums.resize(size_t(rows));
  w.out.resize(size_t(rows * a.dv));
  float* s = w.scores.data();

  gemm_half_serial(scores_product<HalfGemmArgs>(a, q, k, b, h, i0, rows, s));

  if (a.mask) add_mask(a, b, h, i0, rows, s);
  for (int64_t i = 0; i < rows; ++i) {
    float* row = s + i * a.sk;
    w.sums[size_t(i)] = float(vector_exp_shifted_sum(row, row_max(row, a.sk), row, a.sk));
    narrow_run(row, w.probs.data() + i * a.sk, a.sk, a.dtype);
  }

  HalfGemmArgs pv;
  pv.dtype = a.dtype;
  pv.m = rows;
  pv.n = a.dv;
  pv.k = a.sk;
  pv.a = w.probs.data();
  pv.lda = a.sk;
  pv.b = v + b * a.v_sb + hk * a.v_sh;
  pv.ldb = a.v_ss;
  pv.beta = 0.f;
  pv.c = w.out.data();
  pv.ldc = a.dv;
  gemm_half_serial(pv);

  for (int64_t i = 0; i < rows; ++i) {
    float* row = w.out.data() + i * a.dv;
    const float inv = 1.f / w.sums[size_t(i)];
    for (int64_t j = 0; j < a.dv; ++j) row[j] *= inv;
    narrow_run(row, out + b * a.o_sb + h * a.o_sh + (i0 + i) * a.o_ss, a.dv, a.dtype);
  }
}

}  // namespace

void attention(const AttentionArgs& a, Device) {
  const int64_t qblocks = (a.sq + kQueryBlock - 1) / kQueryBlock;
  parallel_for(a.batch * a.heads * qblocks, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scores;
    thread_local HalfScratch scratch;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t qb = t % qblocks, h = (t / qblocks) % a.heads, b = t / (qblocks * a.heads);
      const int64_t i0 = qb * kQueryBlock, rows = std::min(kQueryBlock, a.sq - i0);
      if (a.dtype == DType::F32)
        attention_f32(a, b, h, i0, rows, scores);
      else
        attention_half(a, b, h, i0, rows, scratch);
    }
  });
}

}  // namespace dc::cpu
