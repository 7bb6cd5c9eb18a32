// Scaled dot-product attention in one pass over the keys (online softmax, as in
// FlashAttention), in float32 on the CUDA cores. Same result as native/cpu/attention.cc up to
// float rounding, including NaN rows where every score is -inf.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../kernels.h"
#include "group_reduce.cuh"
#include "launch.cuh"

namespace dc::cuda {
namespace {

// A block owns 64 queries of one (batch, head) and walks the keys in tiles of 64. Its 256
// threads form a 16 x 16 grid; thread (ty, tx) owns queries ty + 16 i and keys (or output
// columns) tx + 16 j, i, j < 4, so a row's 16 owners are one half-warp and shared-memory
// reads are broadcasts (queries) or 16 consecutive words (keys, columns).
constexpr int kTileQ = 64, kTileK = 64;
constexpr int kChunkD = 32;   // depth of the Q and K slices staged per step of Q K^T
constexpr int kChunkDv = 64;  // output columns per accumulator chunk
constexpr int kSub = 4, kStride = 16;
constexpr int kThreads = kStride * kStride;
constexpr int kPad = kTileQ + 1;  // odd row length: the transposed stores hit distinct banks
// Output columns one block accumulates in registers; wider values are split across blocks,
// each recomputing the scores.
constexpr int kMaxDvChunks = 4;

// Shared memory: Q and K slices during Q K^T, then V slices during P V (never both at once),
// and the tile's probabilities. 33 KB, under the 48 KB static limit.
constexpr int kQkFloats = 2 * kChunkD * kPad;
constexpr int kVFloats = kTileK * kChunkDv;
constexpr int kStageFloats = kQkFloats > kVFloats ? kQkFloats : kVFloats;

// Up to 128 output columns fit in registers with two blocks per SM; wider accumulators need
// one block per SM to avoid spilling.
template <int kDvChunks>
__global__ void __launch_bounds__(kThreads, kDvChunks <= 2 ? 2 : 1)
    attention_kernel(AttentionArgs a, int64_t q_tiles, int64_t dv_groups, int64_t first_task) {
  __shared__ float stage[kStageFloats];
  __shared__ float probs[kTileK * kPad];  // probs[key * kPad + query]
  float* q_s = stage;                     // q_s[d * kPad + query]
  float* k_s = stage + kChunkD * kPad;    // k_s[d * kPad + key]
  float* v_s = stage;                     // v_s[key * kChunkDv + column]
  const int tx = threadIdx.x % kStride, ty = threadIdx.x / kStride;
  const int64_t task = first_task + blockIdx.x;
  const int64_t dv_group = task % dv_groups;
  const int64_t q_tile = task / dv_groups % q_tiles;
  const int64_t h = task / (dv_groups * q_tiles) % a.heads;
  const int64_t b = task / (dv_groups * q_tiles * a.heads);
  const int64_t hk = h / (a.heads / a.heads_kv);
  const int64_t q0 = q_tile * kTileQ;
  const int64_t col0 = dv_group * (kDvChunks * kChunkDv);
  const float* qb = a.q + b * a.q_sb + h * a.q_sh;
  const float* kb = a.k + b * a.k_sb + hk * a.k_sh;
  const float* vb = a.v + b * a.v_sb + hk * a.v_sh;
  const float* mb = a.mask ? a.mask + b * a.m_sb + h * a.m_sh : nullptr;

  float out_acc[kDvChunks][kSub][kSub] = {};
  float row_max[kSub], row_sum[kSub];
#pragma unroll
  for (int i = 0; i < kSub; ++i) {
    row_max[i] = -INFINITY;
    row_sum[i] = 0.f;
  }

  for (int64_t k0 = 0; k0 < a.sk; k0 += kTileK) {
    // ---- scores = Q K^T for this tile, staged kChunkD features at a time ----
    float s[kSub][kSub] = {};
    for (int64_t d0 = 0; d0 < a.d; d0 += kChunkD) {
      __syncthreads();  // the previous step's readers are done with `stage`
      for (int e = threadIdx.x; e < kTileQ * kChunkD; e += kThreads) {
        const int row = e / kChunkD, dd = e % kChunkD;  // consecutive threads: consecutive features
        const int64_t d = d0 + dd, qi = q0 + row, ki = k0 + row;
        q_s[dd * kPad + row] = (qi < a.sq && d < a.d) ? qb[qi * a.q_ss + d] : 0.f;
        k_s[dd * kPad + row] = (ki < a.sk && d < a.d) ? kb[ki * a.k_ss + d] : 0.f;
      }
      __syncthreads();
#pragma unroll 8
      for (int dd = 0; dd < kChunkD; ++dd) {
        float qv[kSub], kv[kSub];
#pragma unroll
        for (int t = 0; t < kSub; ++t) {
          qv[t] = q_s[dd * kPad + ty + kStride * t];
          kv[t] = k_s[dd * kPad + tx + kStride * t];
        }
#pragma unroll
        for (int i = 0; i < kSub; ++i)
#pragma unroll
          for (int j = 0; j < kSub; ++j) s[i][j] = fmaf(qv[i], kv[j], s[i][j]);
      }
    }

    // ---- scale, mask, online softmax update ----
    __syncthreads();  // the previous tile's P V readers are done with `probs`
#pragma unroll
    for (int i = 0; i < kSub; ++i) {
      const int64_t qi = q0 + ty + kStride * i;
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        const int64_t ki = k0 + tx + kStride * j;
        float v = -INFINITY;  // keys past the end get probability 0
        if (ki < a.sk) {
          v = __fmul_rn(s[i][j], a.scale);  // rounded before the mask is added, as on the CPU
          if (mb && qi < a.sq) v += mb[qi * a.m_sq + ki * a.m_sk];
        }
        s[i][j] = v;
        tile_max = fmaxf(tile_max, v);
      }
      const float new_max = fmaxf(row_max[i], group_reduce<kStride>(tile_max, MaxOp{}));
      // While every score so far is -inf, exponentiate relative to 0 instead: exp(-inf - -inf)
      // would be NaN, whereas the CPU, which sees the whole row, only returns NaN when the
      // entire row is -inf (then row_sum stays 0 and the final 0 / 0 gives that NaN).
      const float ref = new_max == -INFINITY ? 0.f : new_max;
      const float rescale = expf(row_max[i] - ref);
      float tile_sum = 0.f;
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        const float p = expf(s[i][j] - ref);
        probs[(tx + kStride * j) * kPad + ty + kStride * i] = p;
        tile_sum += p;
      }
      row_sum[i] = row_sum[i] * rescale + group_reduce<kStride>(tile_sum, SumOp{});
      row_max[i] = new_max;
#pragma unroll
      for (int c = 0; c < kDvChunks; ++c)
#pragma unroll
        for (int j = 0; j < kSub; ++j) out_acc[c][i][j] *= rescale;
    }

    // ---- out += P V, one chunk of output columns at a time ----
#pragma unroll
    for (int c = 0; c < kDvChunks; ++c) {
      const int64_t chunk0 = col0 + c * kChunkDv;
      if (chunk0 >= a.dv) break;  // uniform across the block
      __syncthreads();            // `stage` is free, `probs` complete
      for (int e = threadIdx.x; e < kTileK * kChunkDv; e += kThreads) {
        const int row = e / kChunkDv, cc = e % kChunkDv;
        const int64_t ki = k0 + row, col = chunk0 + cc;
        v_s[row * kChunkDv + cc] = (ki < a.sk && col < a.dv) ? vb[ki * a.v_ss + col] : 0.f;
      }
      __syncthreads();
#pragma unroll 8
      for (int kk = 0; kk < kTileK; ++kk) {
        float pv[kSub], vv[kSub];
#pragma unroll
        for (int t = 0; t < kSub; ++t) {
          pv[t] = probs[kk * kPad + ty + kStride * t];
          vv[t] = v_s[kk * kChunkDv + tx + kStride * t];
        }
#pragma unroll
        for (int i = 0; i < kSub; ++i)
#pragma unroll
          for (int j = 0; j < kSub; ++j) out_acc[c][i][j] = fmaf(pv[i], vv[j], out_acc[c][i][j]);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < kSub; ++i) {
    const int64_t qi = q0 + ty + kStride * i;
    if (qi >= a.sq) continue;
    const float inv = 1.f / row_sum[i];
    float* o = a.out + b * a.o_sb + h * a.o_sh + qi * a.o_ss;
#pragma unroll
    for (int c = 0; c < kDvChunks; ++c)
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        const int64_t col = col0 + c * kChunkDv + tx + kStride * j;
        if (col < a.dv) o[col] = out_acc[c][i][j] * inv;
      }
  }
}

// One block per task, launched in grids of at most 2^31 - 1 blocks.
template <int kDvChunks>
void launch_attention(const AttentionArgs& a, int64_t q_tiles, int64_t dv_groups) {
  const int64_t tasks = a.batch * a.heads * q_tiles * dv_groups;
  for (int64_t first = 0; first < tasks; first += INT32_MAX) {
    const unsigned blocks = unsigned(std::min<int64_t>(tasks - first, INT32_MAX));
    attention_kernel<kDvChunks><<<blocks, kThreads>>>(a, q_tiles, dv_groups, first);
    check_launch("attention");
  }
}

}  // namespace

void attention(const AttentionArgs& a, Device) {
  if (a.batch == 0 || a.heads == 0 || a.sq == 0 || a.dv == 0) return;
  const int64_t q_tiles = (a.sq + kTileQ - 1) / kTileQ;
  const int64_t dv_chunks = (a.dv + kChunkDv - 1) / kChunkDv;
  const int64_t dv_groups = (dv_chunks + kMaxDvChunks - 1) / kMaxDvChunks;
  switch (std::min<int64_t>(dv_chunks, kMaxDvChunks)) {
    case 1: launch_attention<1>(a, q_tiles, dv_groups); break;
    case 2: launch_attention<2>(a, q_tiles, dv_groups); break;
    case 3: launch_attention<3>(a, q_tiles, dv_groups); break;
    default: launch_attention<4>(a, q_tiles, dv_groups); break;
  }
}

}  // namespace dc::cuda
