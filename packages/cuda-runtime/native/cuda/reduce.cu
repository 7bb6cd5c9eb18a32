// Reductions along one dimension, top-k selection, and the fused L1 sums the cache engine decides on. Sums
// accumulate in float64 like the CPU backend; max / min propagate NaN.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../kernels.h"
#include "device_buffer.h"
#include "group_reduce.cuh"
#include "launch.cuh"

namespace dc::cuda {
namespace {

template <ReduceOp Op>
__device__ __forceinline__ double identity() {
  if constexpr (Op == ReduceOp::Max) return -INFINITY;
  if constexpr (Op == ReduceOp::Min) return INFINITY;
  return 0.0;
}

template <ReduceOp Op>
__device__ __forceinline__ double combine(double a, double b) {
  if constexpr (Op == ReduceOp::Max) return (a > b || isnan(a)) ? a : b;
  if constexpr (Op == ReduceOp::Min) return (a < b || isnan(a)) ? a : b;
  return a + b;
}

template <ReduceOp Op>
__device__ __forceinline__ float finish(double v, int64_t r) {
  if constexpr (Op == ReduceOp::Mean) return r ? float(v / double(r)) : NAN;
  return float(v);
}

// x is (outer, r, inner). A block's threads form a (slots, depth, lanes) grid, lanes fastest:
// `lanes` consecutive inner positions of one outer index form a tile, `depth` threads share
// each output's slice of r, and `slots` tiles share a block when r is short. Reading
// x[(o * r + k) * inner + i] with i varying fastest across threads keeps loads coalesced
// whatever the inner size. When there are too few tiles to fill the GPU, r is cut into
// `splits` slices reduced by separate blocks into float64 partials that a second kernel
// combines in a fixed order.
struct ReduceGeometry {
  int lanes, depth, slots;  // powers of two, lanes * depth * slots == kBlock
  int64_t outer, r, inner;
  int64_t inner_tiles;  // tiles per outer index: ceil(inner / lanes)
  int64_t tiles;        // outer * inner_tiles
  int64_t tile_groups;  // ceil(tiles / slots): the blocks one slice needs
  int64_t splits;       // slices of r
  int64_t split_len;    // ceil(r / splits)
};

template <ReduceOp Op>
__global__ void __launch_bounds__(kBlock)
    reduce_kernel(const float* x, ReduceGeometry g, float* out, double* partial) {
  __shared__ double acc_s[kBlock];
  const int tid = threadIdx.x;
  const int lane = tid % g.lanes, level = tid / g.lanes % g.depth, slot = tid / (g.lanes * g.depth);
  const int64_t outputs = g.outer * g.inner;
  for (int64_t task = blockIdx.x; task < g.tile_groups * g.splits; task += gridDim.x) {
    const int64_t split = task % g.splits;
    const int64_t tile = (task / g.splits) * g.slots + slot;
    const int64_t o = tile / g.inner_tiles;
    const int64_t i = (tile % g.inner_tiles) * g.lanes + lane;
    const bool active = tile < g.tiles && i < g.inner;
    const int64_t k0 = split * g.split_len, k1 = min(g.r, k0 + g.split_len);
    double acc = identity<Op>();
    if (active) {
      const float* p = x + o * g.r * g.inner + i;
#pragma unroll 4
      for (int64_t k = k0 + level; k < k1; k += g.depth) acc = combine<Op>(acc, double(p[k * g.inner]));
    }
    acc_s[tid] = acc;
    __syncthreads();
    for (int stride = g.depth / 2; stride > 0; stride /= 2) {
      if (level < stride) acc_s[tid] = combine<Op>(acc_s[tid], acc_s[tid + stride * g.lanes]);
      __syncthreads();
    }
    if (level == 0 && active) {
      const int64_t e = o * g.inner + i;
      if (g.splits == 1)
        out[e] = finish<Op>(acc_s[tid], g.r);
      else
        partial[split * outputs + e] = acc_s[tid];
    }
    __syncthreads();  // acc_s is rewritten by the next task
  }
}

template <ReduceOp Op>
__global__ void combine_splits_kernel(const double* partial, int64_t splits, int64_t outputs, int64_t r, float* out) {
  DC_GRID_STRIDE_LOOP(e, outputs) {
    double v = partial[e];
    for (int64_t s = 1; s < splits; ++s) v = combine<Op>(v, partial[s * outputs + e]);
    out[e] = finish<Op>(v, r);
  }
}

// Enough blocks to keep every SM of an H100 busy several times over, each with enough work
// to amortise its start-up.
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMinElementsPerBlock = 16 * kBlock;

template <ReduceOp Op>
void launch_reduce(const float* x, int64_t outer, int64_t r, int64_t inner, float* out) {
  const int64_t outputs = outer * inner;
  if (outputs == 0) return;
  int lanes = 1;
  while (lanes < 32 && lanes < inner) lanes *= 2;
  int depth = 1;
  while (depth < kBlock / lanes && depth < r) depth *= 2;
  const int slots = kBlock / (lanes * depth);

  ReduceGeometry g;
  g.lanes = lanes;
  g.depth = depth;
  g.slots = slots;
  g.outer = outer;
  g.r = r;
  g.inner = inner;
  g.inner_tiles = (inner + lanes - 1) / lanes;
  g.tiles = outer * g.inner_tiles;
  g.tile_groups = (g.tiles + slots - 1) / slots;
  g.splits = 1;
  if (g.tile_groups < kTargetBlocks) {
    const int64_t by_occupancy = (kTargetBlocks + g.tile_groups - 1) / g.tile_groups;
    const int64_t by_work = r * lanes * slots / kMinElementsPerBlock;
    g.splits = std::max<int64_t>(1, std::min(by_occupancy, by_work));
  }
  g.split_len = r ? (r + g.splits - 1) / g.splits : 0;
  const unsigned grid = unsigned(std::min(g.tile_groups * g.splits, kMaxBlocks));
  if (g.splits == 1) {
    reduce_kernel<Op><<<grid, kBlock>>>(x, g, out, nullptr);
    check_launch("reduce");
    return;
  }
  DeviceBuffer partial(size_t(g.splits * outputs) * sizeof(double));
  reduce_kernel<Op><<<grid, kBlock>>>(x, g, out, partial.as<double>());
  check_launch("reduce");
  combine_splits_kernel<Op><<<blocks_for(outputs), kBlock>>>(partial.as<double>(), g.splits, outputs, r, out);
  check_launch("reduce");
}

// Per-block float64 partials of sum |a - b| and sum |a|. The grid size depends only on n, so
// results do not depend on the GPU model.
constexpr int64_t kAbsSumBlocks = 1024;

__global__ void __launch_bounds__(kBlock)
    abs_sums_kernel(const float* a, const float* b, int64_t n, double* partial) {
  double diff = 0.0, mag = 0.0;
  DC_GRID_STRIDE_LOOP(i, n) {
    const double va = a[i];
    mag += fabs(va);
    if (b) diff += fabs(va - double(b[i]));
  }
  diff = group_reduce<kBlock>(diff, SumOp{});
  mag = group_reduce<kBlock>(mag, SumOp{});
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = diff;
    partial[2 * blockIdx.x + 1] = mag;
  }
}

// The order topk ranks elements in: by value (NaN above every number, as in PyTorch), equal
// values by index, so that every element has a distinct rank.
__device__ __forceinline__ bool ranks_before(float va, int32_t a, float vb, int32_t b, bool largest) {
  const bool na = isnan(va), nb = isnan(vb);
  if (na || nb) return na && !nb ? largest : (!na && nb ? !largest : a < b);
  if (va != vb) return largest ? va > vb : va < vb;
  return a < b;
}

// One thread per row selects k times, each time the best element ranked after the previous
// pick: O(k * cols) work, meant for the short rows of expert routing.
__global__ void topk_kernel(const float* x, int64_t rows, int64_t cols, int64_t k, bool largest, float* values,
                            int32_t* indices) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    const float* row = x + r * cols;
    float prev_v = 0.f;
    int32_t prev_i = -1;
    for (int64_t j = 0; j < k; ++j) {
      int32_t best = -1;
      for (int32_t c = 0; c < int32_t(cols); ++c) {
        if (prev_i >= 0 && !ranks_before(prev_v, prev_i, row[c], c, largest)) continue;
        if (best < 0 || ranks_before(row[c], c, row[best], best, largest)) best = c;
      }
      prev_v = row[best];
      prev_i = best;
      values[r * k + j] = prev_v;
      indices[r * k + j] = best;
    }
  }
}

}  // namespace

void topk(const Tensor& x, int64_t rows, int64_t cols, int64_t k, bool largest, Tensor& values, Tensor& indices) {
  if (rows == 0 || k == 0) return;
  topk_kernel<<<blocks_for(rows), kBlock>>>(x.f32(), rows, cols, k, largest, values.f32(), indices.ptr<int32_t>());
  check_launch("topk");
}

void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t r, int64_t inner, Tensor& out) {
  switch (op) {
    case ReduceOp::Sum: return launch_reduce<ReduceOp::Sum>(x.f32(), outer, r, inner, out.f32());
    case ReduceOp::Mean: return launch_reduce<ReduceOp::Mean>(x.f32(), outer, r, inner, out.f32());
    case ReduceOp::Max: return launch_reduce<ReduceOp::Max>(x.f32(), outer, r, inner, out.f32());
    case ReduceOp::Min: return launch_reduce<ReduceOp::Min>(x.f32(), outer, r, inner, out.f32());
  }
}

void abs_diff_sums(const Tensor& a, const Tensor* b, double* sum_abs_diff, double* sum_abs_a) {
  const int64_t n = a.numel();
  double diff = 0.0, mag = 0.0;
  if (n > 0) {
    const unsigned blocks = unsigned(std::min<int64_t>(kAbsSumBlocks, (n + 16 * kBlock - 1) / (16 * kBlock)));
    DeviceBuffer partial(size_t(blocks) * 2 * sizeof(double));
    abs_sums_kernel<<<blocks, kBlock>>>(a.f32(), b ? b->f32() : nullptr, n, partial.as<double>());
    check_launch("abs_diff_sums");
    std::vector<double> host(size_t(blocks) * 2);
    memcpy_d2h(host.data(), partial.as<double>(), host.size() * sizeof(double), partial.device());
    for (unsigned i = 0; i < blocks; ++i) {
      diff += host[2 * i];
      mag += host[2 * i + 1];
    }
  }
  if (sum_abs_diff) *sum_abs_diff = diff;
  if (sum_abs_a) *sum_abs_a = mag;
}

}  // namespace dc::cuda
