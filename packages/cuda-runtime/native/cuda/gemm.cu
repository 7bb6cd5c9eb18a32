// Row-major batched GEMM: cuBLAS when it loaded (see cublas.cc), otherwise a built-in
// shared-memory tiled kernel. float32 products compute in plain float32 (TF32 only when asked
// for, in cuBLAS); bfloat16 / float16 products widen their operands to float32 and accumulate
// in float32, so the built-in kernel serves both with one body.
#include <algorithm>
#include <optional>
#include <cstdint>

#include "../half.h"
#include "../kernels.h"
#include "cublas.h"
#include "device_buffer.h"
#include "launch.cuh"

namespace dc::cuda {
namespace {

// Each block computes a 64 x 64 tile of C with 256 threads, each owning a 4 x 4 sub-grid of
// it strided by 16 rows and 16 columns: shared-memory reads are then conflict-free (a warp
// reads 16 consecutive columns) or broadcasts (2 distinct rows).
constexpr int kTileM = 64, kTileN = 64, kTileK = 16;
constexpr int kSub = 4, kStride = 16;
constexpr int kGemmThreads = (kTileM / kSub) * (kTileN / kSub);

// An operand element as float32: float32 as stored, 16-bit values widened (exactly).
template <DType T, typename Elem>
__device__ __forceinline__ float operand(const Elem* p, int64_t i) {
  if constexpr (T == DType::BF16) return bf16_to_f32(p[i]);
  else if constexpr (T == DType::F16) return f16_to_f32(p[i]);
  else return p[i];
}

// Args is GemmArgs (T = F32) or HalfGemmArgs (T = BF16 / F16); the float32 instantiation is the
// kernel as it was before 16-bit operands existed, so its results are unchanged.
template <DType T, typename Args>
__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(Args g, int64_t tiles_n, int64_t tiles) {
  // Both operands are stored depth-major so the inner loop reads rows of each; the extra
  // column staggers the transposed stores across banks.
  __shared__ float a_s[kTileK][kTileM + 1];  // a_s[p][i] = op(A)[i0 + i][p0 + p]
  __shared__ float b_s[kTileK][kTileN + 1];  // b_s[p][j] = op(B)[p0 + p][j0 + j]
  const int tx = threadIdx.x % kStride, ty = threadIdx.x / kStride;

  for (int64_t z = blockIdx.y; z < g.batch; z += gridDim.y) {
    const auto* a = g.a + z * g.stride_a;
    const auto* b = g.b + z * g.stride_b;
    float* c = g.c + z * g.stride_c;
    for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const int64_t i0 = (tile / tiles_n) * kTileM, j0 = (tile % tiles_n) * kTileN;
      float acc[kSub][kSub] = {};
      for (int64_t p0 = 0; p0 < g.k; p0 += kTileK) {
        // Consecutive threads walk the dimension that is contiguous in memory, so global
        // loads coalesce for either orientation.
        for (int e = threadIdx.x; e < kTileM * kTileK; e += kGemmThreads) {
          const int i = g.trans_a ? e % kTileM : e / kTileK;
          const int p = g.trans_a ? e / kTileM : e % kTileK;
          const int64_t gi = i0 + i, gp = p0 + p;
          float v = 0.f;
          if (gi < g.m && gp < g.k) v = operand<T>(a, g.trans_a ? gp * g.lda + gi : gi * g.lda + gp);
          a_s[p][i] = v;
        }
        for (int e = threadIdx.x; e < kTileK * kTileN; e += kGemmThreads) {
          const int j = g.trans_b ? e / kTileK : e % kTileN;
          const int p = g.trans_b ? e % kTileK : e / kTileN;
          const int64_t gj = j0 + j, gp = p0 + p;
          float v = 0.f;
          if (gj < g.n && gp < g.k) v = operand<T>(b, g.trans_b ? gj * g.ldb + gp : gp * g.ldb + gj);
          b_s[p][j] = v;
        }
        __syncthreads();
#pragma unroll
        for (int p = 0; p < kTileK; ++p) {
          float av[kSub], bv[kSub];
#pragma unroll
          for (int s = 0; s < kSub; ++s) {
            av[s] = a_s[p][ty + kStride * s];
            bv[s] = b_s[p][tx + kStride * s];
          }
#pragma unroll
          for (int r = 0; r < kSub; ++r)
#pragma unroll
            for (int s = 0; s < kSub; ++s) acc[r][s] = fmaf(av[r], bv[s], acc[r][s]);
        }
        __syncthreads();
      }
#pragma unroll
      for (int r = 0; r < kSub; ++r) {
        const int64_t gi = i0 + ty + kStride * r;
        if (gi >= g.m) continue;
#pragma unroll
        for (int s = 0; s < kSub; ++s) {
          const int64_t gj = j0 + tx + kStride * s;
          if (gj >= g.n) continue;
          float* dst = c + gi * g.ldc + gj;
          // beta == 0 overwrites: C may hold garbage, NaN included.
          *dst = g.beta == 0.f ? g.alpha * acc[r][s] : fmaf(g.alpha, acc[r][s], g.beta * *dst);
        }
      }
    }
  }
}

// C = beta * C, for products with nothing to accumulate (k == 0 or alpha == 0, where BLAS
// leaves A and B unread).
template <typename Args>
__global__ void scale_c_kernel(Args g, int64_t n) {
  DC_GRID_STRIDE_LOOP(e, n) {
    const int64_t j = e % g.n, i = e / g.n % g.m, z = e / (g.n * g.m);
    float* dst = g.c + z * g.stride_c + i * g.ldc + j;
    *dst = g.beta == 0.f ? 0.f : g.beta * *dst;
  }
}

constexpr int64_t kMaxGridY = 65535;

// The degenerate products (nothing to accumulate, or nothing to compute). Returns true when
// g was one of them and has been handled.
template <typename Args>
bool degenerate_product(const Args& g, const char* what) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return true;
  if (g.k != 0 && g.alpha != 0.f) return false;
  if (g.beta == 1.f) return true;
  const int64_t n = g.batch * g.m * g.n;
  scale_c_kernel<<<blocks_for(n), kBlock>>>(g, n);
  check_launch(what);
  return true;
}

template <DType T, typename Args>
void launch_builtin(const Args& g, const char* what) {
  const int64_t tiles_n = (g.n + kTileN - 1) / kTileN;
  const int64_t tiles = ((g.m + kTileM - 1) / kTileM) * tiles_n;
  const dim3 grid(unsigned(std::min(tiles, kMaxBlocks)), unsigned(std::min(g.batch, kMaxGridY)));
  gemm_kernel<T><<<grid, kGemmThreads>>>(g, tiles_n, tiles);
  check_launch(what);
}

// The 16-bit product's epilogue: the bias added to the float32 result and, when the product
// writes 16-bit, the one rounding into c16 (same ldc / stride_c layout as the sums).
template <DType T>
__global__ void bias_round_kernel(const float* sums, const float* bias, uint16_t* c16, float* c, int64_t m, int64_t n,
                                  int64_t ldc, int64_t stride_c, int64_t total) {
  DC_GRID_STRIDE_LOOP(i, total) {
    const int64_t j = i % n, row = (i / n) % m, b = i / (n * m);
    const int64_t at = b * stride_c + row * ldc + j;
    float v = sums[at];
    if (bias) v = __fadd_rn(v, bias[j]);
    if (c16)
      c16[at] = T == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
    else
      c[at] = v;
  }
}

void gemm_half_sums(const HalfGemmArgs& g, Device device) {
  if (degenerate_product(g, "gemm")) return;
  if (cublas_gemm_half(g, device.index)) return;
  if (g.dtype == DType::BF16)
    launch_builtin<DType::BF16>(g, "gemm");
  else if (g.dtype == DType::F16)
    launch_builtin<DType::F16>(g, "gemm");
  else
    fail_runtime("gemm", "16-bit product called with ", dtype_name(g.dtype), " operands (bfloat16 or float16 expected)");
}

}  // namespace

void gemm(const GemmArgs& g, Device device) {
  if (degenerate_product(g, "gemm")) return;
  if (cublas_gemm(g, device.index)) return;
  launch_builtin<DType::F32>(g, "gemm");
}

void gemm_half(const HalfGemmArgs& g, Device device) {
  if (!g.c16 && !g.bias) return gemm_half_sums(g, device);
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  // Float32 sums first (in C, or in scratch with C's layout when the output is 16-bit).
  const int64_t span = (g.batch - 1) * g.stride_c + (g.m - 1) * g.ldc + g.n;
  std::optional<DeviceBuffer> scratch;
  HalfGemmArgs sums = g;
  sums.c16 = nullptr;
  sums.bias = nullptr;
  if (g.c16) {
    scratch.emplace(size_t(span) * sizeof(float));
    sums.c = scratch->as<float>();
    sums.beta = 0.f;
  }
  gemm_half_sums(sums, device);
  const int64_t total = g.batch * g.m * g.n;
  if (g.dtype == DType::BF16)
    bias_round_kernel<DType::BF16><<<blocks_for(total), kBlock>>>(sums.c, g.bias, g.c16, g.c, g.m, g.n, g.ldc, g.stride_c, total);
  else
    bias_round_kernel<DType::F16><<<blocks_for(total), kBlock>>>(sums.c, g.bias, g.c16, g.c, g.m, g.n, g.ldc, g.stride_c, total);
  check_launch("gemm");
}

}  // namespace dc::cuda
