// Row-wise softmax and the normalisations (layer, RMS, group). Statistics accumulate in
// float64 and the per-element arithmetic is rounded step by step as on the CPU (no fused
// multiply-add), so results match native/cpu/reduce.cc to float32 rounding.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../kernels.h"
#include "device_buffer.h"
#include "group_reduce.cuh"
#include "launch.cuh"

namespace dc::cuda {
namespace {

// A row is handled by a group of kGroup threads: a sub-warp for short rows (several rows per
// block, no barriers) or a whole block for long ones.
template <int kGroup>
constexpr int kGroupBlock = kGroup < kBlock ? kBlock : kGroup;
// Register budget: enough blocks for half of an SM's 2048 threads. Left to itself ptxas aims
// for full occupancy with 1024-thread blocks and spills.
template <int kGroup>
constexpr int kGroupMinBlocks = 1024 / kGroupBlock<kGroup>;

template <typename F>
void with_group_size(int64_t cols, F&& launch) {
  if (cols <= 1024)
    launch(std::integral_constant<int, 32>{});
  else if (cols <= 16384)
    launch(std::integral_constant<int, 256>{});
  else
    launch(std::integral_constant<int, 1024>{});
}

template <int kGroup>
unsigned row_blocks(int64_t rows) {
  return blocks_for(rows, kGroupBlock<kGroup> / kGroup);
}

// Calls body(row, in_range) for the rows of this thread's group. Rounds are uniform across
// the block, so groups whose row lies past the end still take part in every reduction (with
// no elements) instead of leaving early.
template <int kGroup, typename Body>
__device__ __forceinline__ void for_each_row(int64_t rows, Body&& body) {
  const int64_t per_block = blockDim.x / kGroup;
  for (int64_t first = blockIdx.x * per_block; first < rows; first += gridDim.x * per_block) {
    const int64_t row = first + threadIdx.x / kGroup;
    body(row, row < rows);
  }
}

// Mean and 1 / sqrt(variance + eps) of n values, by two float64 passes like the CPU.
template <int kGroup>
__device__ __forceinline__ void row_moments(const float* x, int64_t n_here, int64_t n, float eps, float* mean_out,
                                            float* rstd_out) {
  const int lane = threadIdx.x % kGroup;
  double sum = 0.0;
  for (int64_t j = lane; j < n_here; j += kGroup) sum += x[j];
  const double mean = group_reduce<kGroup>(sum, SumOp{}) / double(n);
  double sq = 0.0;
  for (int64_t j = lane; j < n_here; j += kGroup) {
    const double d = x[j] - mean;
    sq += d * d;
  }
  const double var = group_reduce<kGroup>(sq, SumOp{}) / double(n);
  *mean_out = float(mean);
  *rstd_out = float(1.0 / sqrt(var + double(eps)));
}

template <int kGroup>
__global__ void __launch_bounds__(kGroupBlock<kGroup>, kGroupMinBlocks<kGroup>)
    softmax_kernel(const float* x, float* out, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % kGroup;
  for_each_row<kGroup>(rows, [&](int64_t row, bool in_range) {
    const int64_t n = in_range ? cols : 0;
    const int64_t base = in_range ? row * cols : 0;
    const float* xr = x + base;
    float* o = out + base;
    float mx = -INFINITY;
    for (int64_t j = lane; j < n; j += kGroup) mx = fmaxf(mx, xr[j]);
    mx = group_reduce<kGroup>(mx, MaxOp{});
    double sum = 0.0;
    for (int64_t j = lane; j < n; j += kGroup) sum += expf(xr[j] - mx);
    const float inv = float(1.0 / group_reduce<kGroup>(sum, SumOp{}));
    for (int64_t j = lane; j < n; j += kGroup) o[j] = __fmul_rn(expf(xr[j] - mx), inv);
  });
}

template <int kGroup>
__global__ void __launch_bounds__(kGroupBlock<kGroup>, kGroupMinBlocks<kGroup>)
    layer_norm_kernel(const float* x, const float* weight, const float* bias, float* out, int64_t rows,
        int64_t cols, float eps) {
  const int lane = threadIdx.x % kGroup;
  for_each_row<kGroup>(rows, [&](int64_t row, bool in_range) {
    const int64_t n = in_range ? cols : 0;
    const int64_t base = in_range ? row * cols : 0;
    const float* xr = x + base;
    float* o = out + base;
    float mean, rstd;
    row_moments<kGroup>(xr, n, cols, eps, &mean, &rstd);
    for (int64_t j = lane; j < n; j += kGroup) {
      float v = __fmul_rn(xr[j] - mean, rstd);
      if (weight) v = __fmul_rn(v, weight[j]);
      if (bias) v = __fadd_rn(v, bias[j]);
      o[j] = v;
    }
  });
}

template <int kGroup>
__global__ void __launch_bounds__(kGroupBlock<kGroup>, kGroupMinBlocks<kGroup>)
    rms_norm_kernel(const float* x, const float* weight, float* out, int64_t rows, int64_t cols, float eps) {
  const int lane = threadIdx.x % kGroup;
  for_each_row<kGroup>(rows, [&](int64_t row, bool in_range) {
    const int64_t n = in_range ? cols : 0;
    const int64_t base = in_range ? row * cols : 0;
    const float* xr = x + base;
    float* o = out + base;
    double ss = 0.0;
    for (int64_t j = lane; j < n; j += kGroup) ss += double(xr[j]) * double(xr[j]);
    ss = group_reduce<kGroup>(ss, SumOp{});
    const float rstd = float(1.0 / sqrt(ss / double(cols) + double(eps)));
    for (int64_t j = lane; j < n; j += kGroup) {
      const float v = __fmul_rn(xr[j], rstd);
      o[j] = weight ? __fmul_rn(v, weight[j]) : v;
    }
  });
}

// Group norm in two steps: the statistics of each (sample, group), then a pass over chunks of
// (sample, channel) planes, which keeps the GPU busy even when there are few groups.
template <int kGroup>
__global__ void __launch_bounds__(kGroupBlock<kGroup>, kGroupMinBlocks<kGroup>)
    group_stats_kernel(const float* x, int64_t count, int64_t group_elems, float eps, float2* stats) {
  for_each_row<kGroup>(count, [&](int64_t g, bool in_range) {
    float mean, rstd;
    row_moments<kGroup>(x + (in_range ? g * group_elems : 0), in_range ? group_elems : 0, group_elems, eps, &mean,
                        &rstd);
    if (in_range && threadIdx.x % kGroup == 0) stats[g] = make_float2(mean, rstd);
  });
}

constexpr int64_t kPlaneChunk = 4 * kBlock;

__global__ void group_apply_kernel(const float* x, const float* weight, const float* bias, const float2* stats,
                                   float* out, int64_t planes, int64_t channels, int64_t channels_per_group,
                                   int64_t spatial, int64_t chunks_per_plane) {
  for (int64_t task = blockIdx.x; task < planes * chunks_per_plane; task += gridDim.x) {
    const int64_t plane = task / chunks_per_plane;
    const int64_t begin = (task % chunks_per_plane) * kPlaneChunk;
    const int64_t end = min(spatial, begin + kPlaneChunk);
    const int64_t c = plane % channels;
    const float2 st = stats[plane / channels_per_group];  // planes of one group are adjacent
    const float w = weight ? weight[c] : 1.f;
    const float b = bias ? bias[c] : 0.f;
    const float* xp = x + plane * spatial;
    float* op = out + plane * spatial;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
      op[i] = __fadd_rn(__fmul_rn(__fmul_rn(xp[i] - st.x, st.y), w), b);
  }
}

}  // namespace

void softmax(const Tensor& x, Tensor& out, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return;
  with_group_size(cols, [&](auto group) {
    constexpr int kGroup = decltype(group)::value, kThreads = kGroupBlock<kGroup>;
    softmax_kernel<kGroup><<<row_blocks<kGroup>(rows), kThreads>>>(x.f32(), out.f32(), rows, cols);
  });
  check_launch("softmax");
}

void layer_norm(const Tensor& x, const float* weight, const float* bias, Tensor& out, int64_t rows, int64_t cols,
                float eps) {
  if (rows == 0 || cols == 0) return;
  with_group_size(cols, [&](auto group) {
    constexpr int kGroup = decltype(group)::value, kThreads = kGroupBlock<kGroup>;
    layer_norm_kernel<kGroup><<<row_blocks<kGroup>(rows), kThreads>>>(x.f32(), weight, bias, out.f32(),
                                                                                rows, cols, eps);
  });
  check_launch("layer_norm");
}

void rms_norm(const Tensor& x, const float* weight, Tensor& out, int64_t rows, int64_t cols, float eps) {
  if (rows == 0 || cols == 0) return;
  with_group_size(cols, [&](auto group) {
    constexpr int kGroup = decltype(group)::value, kThreads = kGroupBlock<kGroup>;
    rms_norm_kernel<kGroup><<<row_blocks<kGroup>(rows), kThreads>>>(x.f32(), weight, out.f32(), rows,
                                                                              cols, eps);
  });
  check_launch("rms_norm");
}

void group_norm(const Tensor& x, const float* weight, const float* bias, Tensor& out, int64_t n, int64_t channels,
                int64_t spatial, int64_t groups, float eps) {
  const int64_t channels_per_group = channels / groups;
  const int64_t group_elems = channels_per_group * spatial;
  if (n == 0 || channels == 0 || spatial == 0) return;
  const int64_t count = n * groups;
  DeviceBuffer stats(size_t(count) * sizeof(float2));
  with_group_size(group_elems, [&](auto group) {
    constexpr int kGroup = decltype(group)::value, kThreads = kGroupBlock<kGroup>;
    group_stats_kernel<kGroup><<<row_blocks<kGroup>(count), kThreads>>>(x.f32(), count, group_elems, eps,
                                                                                  stats.as<float2>());
  });
  check_launch("group_norm");
  const int64_t planes = n * channels;
  const int64_t chunks = (spatial + kPlaneChunk - 1) / kPlaneChunk;
  group_apply_kernel<<<blocks_for(planes * chunks, 1), kBlock>>>(x.f32(), weight, bias, stats.as<float2>(), out.f32(),
                                                                 planes, channels, channels_per_group, spatial,
                                                                 chunks);
  check_launch("group_norm");
}

}  // namespace dc::cuda
