// Scaled dot-product attention: per (batch, head, block of queries), scores = Q K^T * scale
// (+ mask), a row softmax, then P V, using the single-threaded GEMM inside parallel tasks.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../kernels.h"
#include "gemm.h"
#include "parallel.h"
#include "vmath.h"

namespace dc::cpu {

void attention(const AttentionArgs& a, Device) {
  // Larger query blocks pack each head's keys and values fewer times.
  constexpr int64_t kQueryBlock = 128;
  const int64_t qblocks = (a.sq + kQueryBlock - 1) / kQueryBlock;
  const int64_t group = a.heads / a.heads_kv;
  parallel_for(a.batch * a.heads * qblocks, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scores;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t qb = t % qblocks, h = (t / qblocks) % a.heads, b = t / (qblocks * a.heads);
      const int64_t hk = h / group;
      const int64_t i0 = qb * kQueryBlock, rows = std::min(kQueryBlock, a.sq - i0);
      scores.resize(size_t(rows * a.sk));
      float* s = scores.data();

      GemmArgs qk;
      qk.trans_b = true;
      qk.m = rows;
      qk.n = a.sk;
      qk.k = a.d;
      qk.alpha = a.scale;
      qk.a = a.q + b * a.q_sb + h * a.q_sh + i0 * a.q_ss;
      qk.lda = a.q_ss;
      qk.b = a.k + b * a.k_sb + hk * a.k_sh;
      qk.ldb = a.k_ss;
      qk.beta = 0.f;
      qk.c = s;
      qk.ldc = a.sk;
      gemm_serial(qk);

      for (int64_t i = 0; i < rows; ++i) {
        float* row = s + i * a.sk;
        if (a.mask) {
          const float* m = a.mask + b * a.m_sb + h * a.m_sh + (i0 + i) * a.m_sq;
          if (a.m_sk == 1)
            for (int64_t j = 0; j < a.sk; ++j) row[j] += m[j];
          else
            for (int64_t j = 0; j < a.sk; ++j) row[j] += m[j * a.m_sk];
        }
        float mx = -INFINITY;
        for (int64_t j = 0; j < a.sk; ++j) mx = std::max(mx, row[j]);
        const float inv = float(1.0 / vector_exp_shifted_sum(row, mx, row, a.sk));
        for (int64_t j = 0; j < a.sk; ++j) row[j] *= inv;
      }

      GemmArgs pv;
      pv.m = rows;
      pv.n = a.dv;
      pv.k = a.sk;
      pv.a = s;
      pv.lda = a.sk;
      pv.b = a.v + b * a.v_sb + hk * a.v_sh;
      pv.ldb = a.v_ss;
      pv.beta = 0.f;
      pv.c = a.out + b * a.o_sb + h * a.o_sh + i0 * a.o_ss;
      pv.ldc = a.o_ss;
      gemm_serial(pv);
    }
  });
}

}  // namespace dc::cpu
