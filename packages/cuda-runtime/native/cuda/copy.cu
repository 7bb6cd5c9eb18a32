// Data movement kernels: strided copies with dtype conversion, fills, gathers, patch
// extraction, resampling and bias broadcasts. Same semantics as native/cpu/copy.cc.
#include <cstdint>

#include "../half.h"
#include "../kernels.h"
#include "device_buffer.h"
#include "launch.cuh"
#include "strided.cuh"

namespace dc::cuda {
namespace {

// ---- dtype conversion, as in the CPU backend ----

template <DType T>
struct RawType {
  using type = uint32_t;
};
template <>
struct RawType<DType::F16> {
  using type = uint16_t;
};
template <>
struct RawType<DType::BF16> {
  using type = uint16_t;
};

// float -> int32 truncates toward zero, saturates, and maps NaN to 0.
DC_HD int32_t float_to_i32(float v) {
  if (v != v) return 0;
  if (v >= 2147483647.f) return INT32_MAX;
  if (v <= -2147483648.f) return INT32_MIN;
  return int32_t(v);
}

template <DType T>
__device__ __forceinline__ float load_as_float(const void* base, int64_t i) {
  if constexpr (T == DType::F32) return static_cast<const float*>(base)[i];
  if constexpr (T == DType::F16) return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
  if constexpr (T == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
  if constexpr (T == DType::I32) return float(static_cast<const int32_t*>(base)[i]);
}

template <DType T>
__device__ __forceinline__ void store_float(void* base, int64_t i, float v) {
  if constexpr (T == DType::F32) static_cast<float*>(base)[i] = v;
  if constexpr (T == DType::F16) static_cast<uint16_t*>(base)[i] = f32_to_f16(v);
  if constexpr (T == DType::BF16) static_cast<uint16_t*>(base)[i] = f32_to_bf16(v);
  if constexpr (T == DType::I32) static_cast<int32_t*>(base)[i] = float_to_i32(v);
}

// ---- copy ----

// Same-dtype copies move the stored bits, so int32 stays exact and NaN payloads survive;
// conversions go through float32, which holds every float16 / bfloat16 value exactly.
template <DType S, DType D, typename Index>
__global__ void copy_kernel(const void* src, void* dst, StridedIndexer<2> idx, int64_t n) {
  DC_GRID_STRIDE_LOOP(i, n) {
    int64_t off[2];
    idx.offsets<Index>(i, off);
    if constexpr (S == D) {
      using Raw = typename RawType<S>::type;
      static_cast<Raw*>(dst)[off[1]] = static_cast<const Raw*>(src)[off[0]];
    } else {
      store_float<D>(dst, off[1], load_as_float<S>(src, off[0]));
    }
  }
}

template <DType S, DType D>
void launch_copy(const Tensor& src, Tensor& dst, const StridedIndexer<2>& idx, int64_t n) {
  if (idx.fits_int32())
    copy_kernel<S, D, int32_t><<<blocks_for(n), kBlock>>>(src.raw(), dst.raw(), idx, n);
  else
    copy_kernel<S, D, int64_t><<<blocks_for(n), kBlock>>>(src.raw(), dst.raw(), idx, n);
}

template <DType S>
void launch_copy_from(const Tensor& src, Tensor& dst, const StridedIndexer<2>& idx, int64_t n) {
  switch (dst.dtype) {
    case DType::F32: return launch_copy<S, DType::F32>(src, dst, idx, n);
    case DType::F16: return launch_copy<S, DType::F16>(src, dst, idx, n);
    case DType::BF16: return launch_copy<S, DType::BF16>(src, dst, idx, n);
    case DType::I32: return launch_copy<S, DType::I32>(src, dst, idx, n);
  }
}

// ---- fill / arange ----

template <typename T>
__global__ void fill_kernel(T* dst, T value, int64_t n) {
  DC_GRID_STRIDE_LOOP(i, n) dst[i] = value;
}

template <DType T>
__global__ void arange_kernel(void* dst, double start, double step, int64_t n) {
  DC_GRID_STRIDE_LOOP(i, n) {
    const double v = start + double(i) * step;
    if constexpr (T == DType::I32)
      static_cast<int32_t*>(dst)[i] = int32_t(llround(v));
    else
      store_float<T>(dst, i, float(v));
  }
}

// ---- embedding ----

// One warp per output row; `Unit` is the widest word that divides the row and both base
// addresses, so most rows move in 16-byte loads.
template <typename Unit>
__global__ void embedding_kernel(const Unit* weight, const int32_t* ids, Unit* out, int64_t n,
                                 int64_t units_per_row, int64_t vocab,
                                 unsigned long long* out_of_range) {
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int64_t row = int64_t(blockIdx.x) * warps + threadIdx.x / 32; row < n;
       row += int64_t(gridDim.x) * warps) {
    const int64_t id = ids[row];
    const bool valid = id >= 0 && id < vocab;
    if (!valid && lane == 0) atomicAdd(out_of_range, 1ull);
    Unit* dst = out + row * units_per_row;
    if (valid) {
      const Unit* src = weight + id * units_per_row;
      for (int64_t u = lane; u < units_per_row; u += 32) dst[u] = src[u];
    } else {
      for (int64_t u = lane; u < units_per_row; u += 32) dst[u] = Unit{};
    }
  }
}

template <typename Unit>
void launch_embedding(const Tensor& weight, const Tensor& idx, Tensor& out, int64_t n, size_t row_bytes,
                      unsigned long long* counter) {
  embedding_kernel<Unit><<<blocks_for(n, kBlock / 32), kBlock>>>(
      weight.ptr<Unit>(), idx.ptr<int32_t>(), out.ptr<Unit>(), n, int64_t(row_bytes / sizeof(Unit)),
      weight.shape[0], counter);
}

// ---- im2col ----

template <typename Index>
__global__ void im2col_kernel(const float* x, float* col, ConvGeometry g, int64_t n) {
  const Index spatial = Index(g.out_d * g.out_h * g.out_w);
  DC_GRID_STRIDE_LOOP(e, n) {
    const Index r = Index(e) / spatial, s = Index(e) % spatial;
    const Index ox = s % Index(g.out_w), oy = (s / Index(g.out_w)) % Index(g.out_h);
    const Index oz = s / (Index(g.out_w) * Index(g.out_h));
    const Index kw = r % Index(g.kernel_w), kh = (r / Index(g.kernel_w)) % Index(g.kernel_h);
    const Index kd = (r / (Index(g.kernel_w) * Index(g.kernel_h))) % Index(g.kernel_d);
    const Index c = r / (Index(g.kernel_w) * Index(g.kernel_h) * Index(g.kernel_d));
    const Index iz = oz * Index(g.stride_d) - Index(g.pad_d) + kd * Index(g.dilation_d);
    const Index iy = oy * Index(g.stride_h) - Index(g.pad_h) + kh * Index(g.dilation_h);
    const Index ix = ox * Index(g.stride_w) - Index(g.pad_w) + kw * Index(g.dilation_w);
    const bool inside = iz >= 0 && iz < Index(g.depth) && iy >= 0 && iy < Index(g.height) && ix >= 0 &&
                        ix < Index(g.width);
    col[e] = inside ? x[((c * Index(g.depth) + iz) * Index(g.height) + iy) * Index(g.width) + ix] : 0.f;
  }
}

// ---- upsample ----

template <typename Index>
__global__ void upsample_nearest_kernel(const float* x, float* out, Index h, Index w, Index oh, Index ow,
                                        int64_t n) {
  // PyTorch's 'nearest': source index floor(dst * (in / out)), the ratio and product rounded
  // to float32 separately (no fused multiply-add), then clamped.
  const float scale_y = __fdiv_rn(float(h), float(oh)), scale_x = __fdiv_rn(float(w), float(ow));
  DC_GRID_STRIDE_LOOP(e, n) {
    const Index ox = Index(e) % ow, t = Index(e) / ow;
    const Index oy = t % oh, plane = t / oh;
    const Index iy = min(Index(__fmul_rn(float(oy), scale_y)), h - 1);
    const Index ix = min(Index(__fmul_rn(float(ox), scale_x)), w - 1);
    out[e] = x[(plane * h + iy) * w + ix];
  }
}

// ---- bias broadcasts ----

// One warp per row: no per-element division.
__global__ void broadcast_rows_kernel(float* out, const float* bias, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int64_t r = int64_t(blockIdx.x) * warps + threadIdx.x / 32; r < rows; r += int64_t(gridDim.x) * warps) {
    float* dst = out + r * cols;
    for (int64_t c = lane; c < cols; c += 32) dst[c] = bias[c];
  }
}

// Work items are chunks of one (sample, channel) plane, so the channel is known per chunk.
constexpr int64_t kPlaneChunk = 4 * kBlock;

__global__ void add_channel_bias_kernel(float* out, const float* bias, int64_t planes, int64_t c, int64_t s,
                                        int64_t chunks_per_plane) {
  for (int64_t task = blockIdx.x; task < planes * chunks_per_plane; task += gridDim.x) {
    const int64_t plane = task / chunks_per_plane;
    const int64_t begin = (task % chunks_per_plane) * kPlaneChunk;
    const int64_t end = min(s, begin + kPlaneChunk);
    const float b = bias[plane % c];
    float* p = out + plane * s;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) p[i] += b;
  }
}

}  // namespace

void copy(const Tensor& src, Tensor& dst) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (src.dtype == dst.dtype && src.is_contiguous() && dst.is_contiguous()) {
    const cudaError_t e = cudaMemcpyAsync(dst.raw(), src.raw(), dst.nbytes(), cudaMemcpyDeviceToDevice, 0);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail_runtime("copy", "cudaMemcpyAsync of ", dst.nbytes(), " bytes failed: ", cudaGetErrorString(e));
    }
    return;
  }
  const StridedIndexer<2> idx(dst.shape, {src.strides.data(), dst.strides.data()});
  switch (src.dtype) {
    case DType::F32: launch_copy_from<DType::F32>(src, dst, idx, n); break;
    case DType::F16: launch_copy_from<DType::F16>(src, dst, idx, n); break;
    case DType::BF16: launch_copy_from<DType::BF16>(src, dst, idx, n); break;
    case DType::I32: launch_copy_from<DType::I32>(src, dst, idx, n); break;
  }
  check_launch("copy");
}

void fill(Tensor& dst, double value) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  const float v = float(value);
  switch (dst.dtype) {
    case DType::F32: fill_kernel<float><<<blocks_for(n), kBlock>>>(dst.f32(), v, n); break;
    case DType::I32: fill_kernel<int32_t><<<blocks_for(n), kBlock>>>(dst.ptr<int32_t>(), float_to_i32(v), n); break;
    case DType::F16: fill_kernel<uint16_t><<<blocks_for(n), kBlock>>>(dst.ptr<uint16_t>(), f32_to_f16(v), n); break;
    case DType::BF16: fill_kernel<uint16_t><<<blocks_for(n), kBlock>>>(dst.ptr<uint16_t>(), f32_to_bf16(v), n); break;
  }
  check_launch("fill");
}

void arange(Tensor& dst, double start, double step) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  switch (dst.dtype) {
    case DType::F32: arange_kernel<DType::F32><<<blocks_for(n), kBlock>>>(dst.raw(), start, step, n); break;
    case DType::F16: arange_kernel<DType::F16><<<blocks_for(n), kBlock>>>(dst.raw(), start, step, n); break;
    case DType::BF16: arange_kernel<DType::BF16><<<blocks_for(n), kBlock>>>(dst.raw(), start, step, n); break;
    case DType::I32: arange_kernel<DType::I32><<<blocks_for(n), kBlock>>>(dst.raw(), start, step, n); break;
  }
  check_launch("arange");
}

int64_t embedding(const Tensor& weight, const Tensor& idx, Tensor& out) {
  const int64_t n = idx.numel();
  if (n == 0) return 0;
  const size_t row_bytes = size_t(weight.shape[1]) * dtype_size(weight.dtype);
  const auto base_w = reinterpret_cast<uintptr_t>(weight.raw()), base_o = reinterpret_cast<uintptr_t>(out.raw());
  auto divides = [&](size_t unit) { return row_bytes % unit == 0 && base_w % unit == 0 && base_o % unit == 0; };

  DeviceBuffer counter(sizeof(unsigned long long));
  const cudaError_t e = cudaMemsetAsync(counter.as<void>(), 0, sizeof(unsigned long long), 0);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail_runtime("embedding", "cudaMemsetAsync failed: ", cudaGetErrorString(e));
  }
  unsigned long long* c = counter.as<unsigned long long>();
  if (divides(16))
    launch_embedding<uint4>(weight, idx, out, n, row_bytes, c);
  else if (divides(8))
    launch_embedding<uint2>(weight, idx, out, n, row_bytes, c);
  else if (divides(4))
    launch_embedding<uint32_t>(weight, idx, out, n, row_bytes, c);
  else
    launch_embedding<uint16_t>(weight, idx, out, n, row_bytes, c);
  check_launch("embedding");
  unsigned long long bad = 0;
  memcpy_d2h(&bad, c, sizeof bad, counter.device());
  return int64_t(bad);
}

void im2col(const float* x, float* col, const ConvGeometry& g, Device) {
  const int64_t rows = g.channels * g.kernel_d * g.kernel_h * g.kernel_w;
  const int64_t n = rows * g.out_d * g.out_h * g.out_w;
  if (n == 0) return;
  // Taps in the padding compute coordinates from -pad up to out * stride + kernel * dilation.
  const bool fits32 = n <= kMaxIndex32 && g.channels * g.depth * g.height * g.width <= kMaxIndex32 &&
                      g.out_d * g.stride_d + g.kernel_d * g.dilation_d <= kMaxIndex32 &&
                      g.out_h * g.stride_h + g.kernel_h * g.dilation_h <= kMaxIndex32 &&
                      g.out_w * g.stride_w + g.kernel_w * g.dilation_w <= kMaxIndex32;
  if (fits32)
    im2col_kernel<int32_t><<<blocks_for(n), kBlock>>>(x, col, g, n);
  else
    im2col_kernel<int64_t><<<blocks_for(n), kBlock>>>(x, col, g, n);
  check_launch("im2col");
}

void upsample_nearest(const Tensor& x, Tensor& out, int64_t planes, int64_t h, int64_t w, int64_t oh,
                      int64_t ow) {
  const int64_t n = planes * oh * ow;
  if (n == 0) return;
  if (n <= kMaxIndex32 && planes * h * w <= kMaxIndex32)
    upsample_nearest_kernel<int32_t><<<blocks_for(n), kBlock>>>(x.f32(), out.f32(), int32_t(h), int32_t(w),
                                                               int32_t(oh), int32_t(ow), n);
  else
    upsample_nearest_kernel<int64_t><<<blocks_for(n), kBlock>>>(x.f32(), out.f32(), h, w, oh, ow, n);
  check_launch("upsample_nearest");
}

void broadcast_rows(float* out, const float* bias, int64_t rows, int64_t cols, Device) {
  if (rows == 0 || cols == 0) return;
  broadcast_rows_kernel<<<blocks_for(rows, kBlock / 32), kBlock>>>(out, bias, rows, cols);
  check_launch("broadcast_rows");
}

void add_channel_bias(float* out, const float* bias, int64_t n, int64_t c, int64_t s, Device) {
  if (n == 0 || c == 0 || s == 0) return;
  const int64_t chunks = (s + kPlaneChunk - 1) / kPlaneChunk;
  add_channel_bias_kernel<<<blocks_for(n * c * chunks, 1), kBlock>>>(out, bias, n * c, c, s, chunks);
  check_launch("add_channel_bias");
}

}  // namespace dc::cuda
