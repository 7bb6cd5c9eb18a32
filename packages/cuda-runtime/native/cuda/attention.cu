// Scaled dot-product attention in one pass over the keys (online softmax, as in
// FlashAttention). float32 runs on the CUDA cores, with the same result as
// native/cpu/attention.cc up to float rounding, including NaN rows where every score is -inf.
// bfloat16 / float16 Q, K and V keep the scores, the softmax statistics and the accumulators in
// float32 and round the probabilities to the 16-bit type before the product with V, as
// PyTorch's flash attention does for 16-bit inputs; heads up to 128 wide run both products on
// the tensor cores (wmma), wider ones on the CUDA-core kernel with the same roundings.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../half.h"
#include "../kernels.h"
#include "group_reduce.cuh"
#include "launch.cuh"

namespace dc::cuda {
namespace {

// ---- elements of the three dtypes, as float32 ----

template <DType T>
using Elem = std::conditional_t<T == DType::F32, float, uint16_t>;

template <DType T>
__device__ __forceinline__ float load_elem(const Elem<T>* p, int64_t i) {
  if constexpr (T == DType::BF16) return bf16_to_f32(p[i]);
  else if constexpr (T == DType::F16) return f16_to_f32(p[i]);
  else return p[i];
}

// The 16-bit bits of v (round to nearest even); only for T = BF16 / F16.
template <DType T>
__device__ __forceinline__ uint16_t to_bits(float v) {
  if constexpr (T == DType::BF16) return f32_to_bf16(v);
  else return f32_to_f16(v);
}

template <DType T>
__device__ __forceinline__ void store_elem(Elem<T>* p, int64_t i, float v) {
  if constexpr (T == DType::F32) p[i] = v;
  else p[i] = to_bits<T>(v);
}

// v as the product with V sees it: rounded to the 16-bit type, unchanged in float32.
template <DType T>
__device__ __forceinline__ float rounded(float v) {
  if constexpr (T == DType::BF16) return bf16_to_f32(f32_to_bf16(v));
  else if constexpr (T == DType::F16) return f16_to_f32(f32_to_f16(v));
  else return v;
}

// ---- the CUDA-core kernel: float32, and 16-bit heads wider than the tensor-core kernel's ----

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
// T is the dtype of Q, K, V and the output; the float32 instantiation is the kernel as it was
// before 16-bit inputs existed, so its results are unchanged.
template <int kDvChunks, DType T>
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
  const Elem<T>* qb = static_cast<const Elem<T>*>(a.q) + b * a.q_sb + h * a.q_sh;
  const Elem<T>* kb = static_cast<const Elem<T>*>(a.k) + b * a.k_sb + hk * a.k_sh;
  const Elem<T>* vb = static_cast<const Elem<T>*>(a.v) + b * a.v_sb + hk * a.v_sh;
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
        q_s[dd * kPad + row] = (qi < a.sq && d < a.d) ? load_elem<T>(qb, qi * a.q_ss + d) : 0.f;
        k_s[dd * kPad + row] = (ki < a.sk && d < a.d) ? load_elem<T>(kb, ki * a.k_ss + d) : 0.f;
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
        // 16-bit inputs: P V multiplies the rounded probabilities, the sum takes them as computed.
        probs[(tx + kStride * j) * kPad + ty + kStride * i] = rounded<T>(p);
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
        v_s[row * kChunkDv + cc] = (ki < a.sk && col < a.dv) ? load_elem<T>(vb, ki * a.v_ss + col) : 0.f;
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
    Elem<T>* o = static_cast<Elem<T>*>(a.out) + b * a.o_sb + h * a.o_sh + qi * a.o_ss;
#pragma unroll
    for (int c = 0; c < kDvChunks; ++c)
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        const int64_t col = col0 + c * kChunkDv + tx + kStride * j;
        if (col < a.dv) store_elem<T>(o, col, out_acc[c][i][j] * inv);
      }
  }
}

// One block per task, launched in grids of at most 2^31 - 1 blocks.
template <int kDvChunks, DType T>
void launch_attention(const AttentionArgs& a, int64_t q_tiles, int64_t dv_groups) {
  const int64_t tasks = a.batch * a.heads * q_tiles * dv_groups;
  for (int64_t first = 0; first < tasks; first += INT32_MAX) {
    const unsigned blocks = unsigned(std::min<int64_t>(tasks - first, INT32_MAX));
    attention_kernel<kDvChunks, T><<<blocks, kThreads>>>(a, q_tiles, dv_groups, first);
    check_launch("attention");
  }
}

template <DType T>
void attention_cuda_cores(const AttentionArgs& a) {
  const int64_t q_tiles = (a.sq + kTileQ - 1) / kTileQ;
  const int64_t dv_chunks = (a.dv + kChunkDv - 1) / kChunkDv;
  const int64_t dv_groups = (dv_chunks + kMaxDvChunks - 1) / kMaxDvChunks;
  switch (std::min<int64_t>(dv_chunks, kMaxDvChunks)) {
    case 1: launch_attention<1, T>(a, q_tiles, dv_groups); break;
    case 2: launch_attention<2, T>(a, q_tiles, dv_groups); break;
    case 3: launch_attention<3, T>(a, q_tiles, dv_groups); break;
    default: launch_attention<4, T>(a, q_tiles, dv_groups); break;
  }
}

// ---- the tensor-core kernel: 16-bit Q, K, V with head dims up to 128 ----
//
// A block of 4 warps owns 64 queries of one (batch, head); warp w owns queries 16 w .. 16 w + 15
// and walks the keys in steps of 64. Per step: S = Q K^T on the tensor cores (float32
// accumulators) into shared memory; each lane then owns one query row (lane / 2) and half of its
// keys (every other one, from lane % 2), updates the row's online-softmax statistics with its
// partner lane and writes the probabilities, rounded to 16 bits, for P V on the tensor cores.
// The P V tile goes through shared memory too, where each lane adds its row's half of every
// 16-column block to float32 registers: wmma fragments have no documented element layout, so
// the running output, which the softmax rescales row by row, lives in registers whose layout is
// this kernel's own.

template <DType T>
struct WmmaElem;
template <>
struct WmmaElem<DType::BF16> {
  using type = __nv_bfloat16;
};
template <>
struct WmmaElem<DType::F16> {
  using type = __half;
};

constexpr int kTcRows = 64;                // queries per block, keys per step
constexpr int kTcWarps = kTcRows / 16;     // 16 queries per warp
constexpr int kTcThreads = kTcWarps * 32;
constexpr int kTcMaxD = 128;               // widest Q / K and V head the registers take
// Row lengths in shared memory. 16-bit rows get 8 extra elements (16 bytes): their length
// stays a multiple of 8 elements (wmma's requirement) and consecutive rows start 4 banks apart,
// so the 8-row phases of a fragment load hit distinct banks. Float rows get 4 extra (16 bytes).
constexpr int kTcPad16 = 8;
constexpr int kTcLdS = kTcRows + 4;        // scores and P V tiles, float32
constexpr int kTcLdP = kTcRows + kTcPad16; // probabilities, 16-bit

struct TcShape {
  int d_frags = 0;   // Q / K head width in 16-column fragments (zero-padded)
  int ldq = 0;       // row length of the Q tile in shared memory
  int ldkv = 0;      // row length of the K / V tile
  bool vec = false;  // Q, K and V rows can be read 16 bytes at a time
};

// Rows [r0, r0 + 64) of a (rows, cols) matrix of 16-bit values with row stride ld_g, into a
// shared tile with row stride ld_s and cols_pad columns; rows past `rows` and columns past
// `cols` become zeros, so that padding adds nothing to either product (and stays finite).
__device__ __forceinline__ void load_tile(uint16_t* dst, int ld_s, const uint16_t* src, int64_t ld_g, int64_t r0,
                                          int64_t rows, int64_t cols, int cols_pad, bool vec) {
  if (vec) {  // cols is a multiple of 8, and so are the row starts, from 16-byte aligned bases
    const int per_row = cols_pad / 8;
    for (int e = threadIdx.x; e < kTcRows * per_row; e += kTcThreads) {
      const int r = e / per_row, c = e % per_row * 8;
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (r0 + r < rows && c < cols) v = *reinterpret_cast<const uint4*>(src + (r0 + r) * ld_g + c);
      *reinterpret_cast<uint4*>(dst + r * ld_s + c) = v;
    }
  } else {
    for (int e = threadIdx.x; e < kTcRows * cols_pad; e += kTcThreads) {
      const int r = e / cols_pad, c = e % cols_pad;
      uint16_t v = 0;
      if (r0 + r < rows && c < cols) v = src[(r0 + r) * ld_g + c];
      dst[r * ld_s + c] = v;
    }
  }
}

template <DType T, int kDvFrags>
__global__ void __launch_bounds__(kTcThreads)
    attention_tc_kernel(AttentionArgs a, TcShape sh, int64_t q_tiles, int64_t first_task) {
  namespace wmma = nvcuda::wmma;
  using W = typename WmmaElem<T>::type;
  constexpr int kGroup = kDvFrags < 4 ? kDvFrags : 4;  // P V fragments per pass through s_s

  extern __shared__ __align__(128) unsigned char tc_smem[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(tc_smem);                    // [64][ldq]
  uint16_t* kv_s = q_s + kTcRows * sh.ldq;                                 // [64][ldkv], K then V
  float* s_s = reinterpret_cast<float*>(kv_s + kTcRows * sh.ldkv);         // [64][kTcLdS]
  uint16_t* p_s = reinterpret_cast<uint16_t*>(s_s + kTcRows * kTcLdS);     // [64][kTcLdP]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int half = lane % 2;                 // this lane's keys / columns: every other one from `half`
  const int row = warp * 16 + lane / 2;      // this lane's query, within the tile
  const int64_t task = first_task + blockIdx.x;
  const int64_t q_tile = task % q_tiles;
  const int64_t h = task / q_tiles % a.heads;
  const int64_t b = task / (q_tiles * a.heads);
  const int64_t hk = h / (a.heads / a.heads_kv);
  const int64_t q0 = q_tile * kTcRows, qi = q0 + row;
  const uint16_t* qb = static_cast<const uint16_t*>(a.q) + b * a.q_sb + h * a.q_sh;
  const uint16_t* kb = static_cast<const uint16_t*>(a.k) + b * a.k_sb + hk * a.k_sh;
  const uint16_t* vb = static_cast<const uint16_t*>(a.v) + b * a.v_sb + hk * a.v_sh;
  const float* mrow = a.mask && qi < a.sq ? a.mask + b * a.m_sb + h * a.m_sh + qi * a.m_sq : nullptr;
  float* s_row = s_s + row * kTcLdS;
  uint16_t* p_row = p_s + row * kTcLdP;
  float* s_warp = s_s + warp * 16 * kTcLdS;

  load_tile(q_s, sh.ldq, qb, a.q_ss, q0, a.sq, a.d, sh.d_frags * 16, sh.vec);

  // o[f][j]: this lane's row, column 16 f + 8 half + j.
  float o[kDvFrags][8] = {};
  float row_max = -INFINITY, row_sum = 0.f;

  for (int64_t k0 = 0; k0 < a.sk; k0 += kTcRows) {
    __syncthreads();  // the previous step's P V is done with kv_s
    load_tile(kv_s, sh.ldkv, kb, a.k_ss, k0, a.sk, a.d, sh.d_frags * 16, sh.vec);
    __syncthreads();  // K (and on the first step Q) in place

    // ---- S = Q K^T for this warp's 16 queries and the step's 64 keys ----
    {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4];
#pragma unroll
      for (int n = 0; n < 4; ++n) wmma::fill_fragment(acc[n], 0.f);
      for (int kk = 0; kk < sh.d_frags; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, W, wmma::row_major> qf;
        wmma::load_matrix_sync(qf, reinterpret_cast<const W*>(q_s + warp * 16 * sh.ldq + kk * 16), sh.ldq);
#pragma unroll
        for (int n = 0; n < 4; ++n) {
          // K^T as a column-major matrix is K row-major: element (p, j) at kv_s[j][p].
          wmma::fragment<wmma::matrix_b, 16, 16, 16, W, wmma::col_major> kf;
          wmma::load_matrix_sync(kf, reinterpret_cast<const W*>(kv_s + n * 16 * sh.ldkv + kk * 16), sh.ldkv);
          wmma::mma_sync(acc[n], qf, kf, acc[n]);
        }
      }
#pragma unroll
      for (int n = 0; n < 4; ++n) wmma::store_matrix_sync(s_warp + n * 16, acc[n], kTcLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // ---- scale, mask, online softmax update (as in the CUDA-core kernel) ----
    float tile_max = -INFINITY;
#pragma unroll 8
    for (int t = 0; t < kTcRows / 2; ++t) {
      const int j = 2 * t + half;
      const int64_t ki = k0 + j;
      float v = -INFINITY;  // keys past the end get probability 0
      if (ki < a.sk) {
        v = __fmul_rn(s_row[j], a.scale);  // rounded before the mask is added, as on the CPU
        if (mrow) v += mrow[ki * a.m_sk];
      }
      s_row[j] = v;
      tile_max = fmaxf(tile_max, v);
    }
    const float new_max = fmaxf(row_max, fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1)));
    // While every score so far is -inf, exponentiate relative to 0 (see the CUDA-core kernel).
    const float ref = new_max == -INFINITY ? 0.f : new_max;
    const float rescale = expf(row_max - ref);
    float tile_sum = 0.f;
#pragma unroll 8
    for (int t = 0; t < kTcRows / 2; ++t) {
      const int j = 2 * t + half;
      const float p = expf(s_row[j] - ref);
      p_row[j] = to_bits<T>(p);  // P V multiplies the rounded probabilities
      tile_sum += p;             // the sum takes them as computed
    }
    row_sum = row_sum * rescale + (tile_sum + __shfl_xor_sync(0xffffffffu, tile_sum, 1));
    row_max = new_max;
#pragma unroll
    for (int f = 0; f < kDvFrags; ++f)
#pragma unroll
      for (int j = 0; j < 8; ++j) o[f][j] *= rescale;

    __syncthreads();  // every warp is done with K
    load_tile(kv_s, sh.ldkv, vb, a.v_ss, k0, a.sk, a.dv, kDvFrags * 16, sh.vec);
    __syncthreads();  // V and every warp's probabilities in place

    // ---- o += P V, kGroup 16-column blocks at a time through this warp's rows of s_s ----
#pragma unroll
    for (int g0 = 0; g0 < kDvFrags; g0 += kGroup) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kGroup];
#pragma unroll
      for (int n = 0; n < kGroup; ++n) wmma::fill_fragment(acc[n], 0.f);
#pragma unroll
      for (int kk = 0; kk < kTcRows / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, W, wmma::row_major> pf;
        wmma::load_matrix_sync(pf, reinterpret_cast<const W*>(p_s + warp * 16 * kTcLdP + kk * 16), kTcLdP);
#pragma unroll
        for (int n = 0; n < kGroup; ++n) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, W, wmma::row_major> vf;
          wmma::load_matrix_sync(vf, reinterpret_cast<const W*>(kv_s + kk * 16 * sh.ldkv + (g0 + n) * 16), sh.ldkv);
          wmma::mma_sync(acc[n], pf, vf, acc[n]);
        }
      }
#pragma unroll
      for (int n = 0; n < kGroup; ++n) wmma::store_matrix_sync(s_warp + n * 16, acc[n], kTcLdS, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int n = 0; n < kGroup; ++n)
#pragma unroll
        for (int j = 0; j < 8; ++j) o[g0 + n][j] += s_row[n * 16 + half * 8 + j];
      __syncwarp();  // read before the next group's stores
    }
  }

  if (qi >= a.sq) return;
  const float inv = 1.f / row_sum;  // 0 keys, or all -inf: 0 * inf = NaN, as the CPU gives
  uint16_t* out = static_cast<uint16_t*>(a.out) + b * a.o_sb + h * a.o_sh + qi * a.o_ss;
#pragma unroll
  for (int f = 0; f < kDvFrags; ++f)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t col = f * 16 + half * 8 + j;
      if (col < a.dv) out[col] = to_bits<T>(o[f][j] * inv);
    }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Launches the tensor-core kernel; false (nothing launched) when the device cannot give it the
// shared memory it needs, so that the caller falls back to the CUDA-core kernel.
template <DType T, int kDvFrags>
bool launch_attention_tc(const AttentionArgs& a) {
  TcShape sh;
  sh.d_frags = int((a.d + 15) / 16);
  sh.ldq = sh.d_frags * 16 + kTcPad16;
  sh.ldkv = std::max(sh.d_frags, kDvFrags) * 16 + kTcPad16;
  bool vec = a.d % 8 == 0 && a.dv % 8 == 0 && aligned16(a.q) && aligned16(a.k) && aligned16(a.v);
  for (int64_t s : {a.q_sb, a.q_sh, a.q_ss, a.k_sb, a.k_sh, a.k_ss, a.v_sb, a.v_sh, a.v_ss}) vec = vec && s % 8 == 0;
  sh.vec = vec;
  const size_t bytes = size_t(kTcRows) * (size_t(sh.ldq + sh.ldkv + kTcLdP) * 2 + size_t(kTcLdS) * 4);
  // Above 48 KB a kernel must opt in to dynamic shared memory (every sm_80+ GPU has 99 KB+).
  if (cudaFuncSetAttribute(attention_tc_kernel<T, kDvFrags>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(bytes)) != cudaSuccess) {
    cudaGetLastError();  // clear it: the CUDA-core kernel runs instead
    return false;
  }
  const int64_t q_tiles = (a.sq + kTcRows - 1) / kTcRows;
  const int64_t tasks = a.batch * a.heads * q_tiles;
  for (int64_t first = 0; first < tasks; first += INT32_MAX) {
    const unsigned blocks = unsigned(std::min<int64_t>(tasks - first, INT32_MAX));
    attention_tc_kernel<T, kDvFrags><<<blocks, kTcThreads, bytes>>>(a, sh, q_tiles, first);
    check_launch("attention");
  }
  return true;
}

template <DType T>
void attention_16(const AttentionArgs& a) {
  if (a.d <= kTcMaxD && a.dv <= kTcMaxD) {
    // Output columns are computed in 16-column fragments, rounded up to 32, 64 or 128.
    const bool launched = a.dv <= 32   ? launch_attention_tc<T, 2>(a)
                          : a.dv <= 64 ? launch_attention_tc<T, 4>(a)
                                       : launch_attention_tc<T, 8>(a);
    if (launched) return;
  }
  attention_cuda_cores<T>(a);
}

}  // namespace

void attention(const AttentionArgs& a, Device) {
  if (a.batch == 0 || a.heads == 0 || a.sq == 0 || a.dv == 0) return;
  switch (a.dtype) {
    case DType::F32: attention_cuda_cores<DType::F32>(a); break;
    case DType::BF16: attention_16<DType::BF16>(a); break;
    case DType::F16: attention_16<DType::F16>(a); break;
    default: fail_runtime("attention", "called with ", dtype_name(a.dtype), " tensors (float32, bfloat16 or float16 expected)");
  }
}

}  // namespace dc::cuda
