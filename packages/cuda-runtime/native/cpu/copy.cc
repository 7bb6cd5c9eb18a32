// Data movement kernels: strided copies with dtype conversion, fills, gathers and resampling.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../half.h"
#include "../kernels.h"
#include "convert.h"
#include "parallel.h"
#include "strided.h"

namespace dc::cpu {
namespace {

constexpr int64_t kGrainElems = 1 << 15;

inline float load_as_float(const char* base, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return reinterpret_cast<const float*>(base)[i];
    case DType::F16: return f16_to_f32(reinterpret_cast<const uint16_t*>(base)[i]);
    case DType::BF16: return bf16_to_f32(reinterpret_cast<const uint16_t*>(base)[i]);
    case DType::I32: return float(reinterpret_cast<const int32_t*>(base)[i]);
  }
  return 0.f;
}

inline int32_t float_to_i32(float v) {
  if (std::isnan(v)) return 0;
  if (v >= 2147483647.f) return 2147483647;
  if (v <= -2147483648.f) return int32_t(-2147483647 - 1);
  return int32_t(v);  // truncation toward zero, as a cast does
}

inline void store_float(char* base, DType t, int64_t i, float v) {
  switch (t) {
    case DType::F32: reinterpret_cast<float*>(base)[i] = v; break;
    case DType::F16: reinterpret_cast<uint16_t*>(base)[i] = f32_to_f16(v); break;
    case DType::BF16: reinterpret_cast<uint16_t*>(base)[i] = f32_to_bf16(v); break;
    case DType::I32: reinterpret_cast<int32_t*>(base)[i] = float_to_i32(v); break;
  }
}

template <typename T>
void copy_same(const char* src, char* dst, int64_t n, int64_t ss, int64_t ds) {
  const T* s = reinterpret_cast<const T*>(src);
  T* d = reinterpret_cast<T*>(dst);
  if (ss == 1 && ds == 1) {
    std::memcpy(d, s, size_t(n) * sizeof(T));
  } else {
    for (int64_t i = 0; i < n; ++i) d[i * ds] = s[i * ss];
  }
}

}  // namespace

void copy(const Tensor& src, Tensor& dst) {
  const DType st = src.dtype, dt = dst.dtype;
  const size_t ses = dtype_size(st), des = dtype_size(dt);
  StridedLoop<2> loop(dst.shape, {src.strides.data(), dst.strides.data()});
  const char* sbase = src.raw();
  char* dbase = dst.raw();
  const int64_t inner = loop.inner();
  const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(inner, 1));
  parallel_for(loop.rows(), grain, [&](int64_t r0, int64_t r1) {
    loop.for_rows(r0, r1, [&](const int64_t* off, int64_t n, const int64_t* is) {
      const char* s = sbase + off[0] * int64_t(ses);
      char* d = dbase + off[1] * int64_t(des);
      if (st == dt) {
        if (ses == 4)
          copy_same<uint32_t>(s, d, n, is[0], is[1]);
        else
          copy_same<uint16_t>(s, d, n, is[0], is[1]);
      } else if (is[0] == 1 && is[1] == 1 && st == DType::F32 && des == 2) {
        narrow_run(reinterpret_cast<const float*>(s), reinterpret_cast<uint16_t*>(d), n, dt);
      } else if (is[0] == 1 && is[1] == 1 && dt == DType::F32 && ses == 2) {
        widen_run(reinterpret_cast<const uint16_t*>(s), reinterpret_cast<float*>(d), n, st);
      } else {  // conversions go through float32, which holds every float16 / bfloat16 exactly
        for (int64_t i = 0; i < n; ++i) store_float(d, dt, i * is[1], load_as_float(s, st, i * is[0]));
      }
    });
  });
}

void fill(Tensor& dst, double value) {
  const int64_t n = dst.numel();
  char* base = dst.raw();
  const DType t = dst.dtype;
  parallel_for(n, kGrainElems, [&](int64_t i0, int64_t i1) {
    if (t == DType::I32) {
      int32_t v = float_to_i32(float(value));
      std::fill(reinterpret_cast<int32_t*>(base) + i0, reinterpret_cast<int32_t*>(base) + i1, v);
    } else {
      for (int64_t i = i0; i < i1; ++i) store_float(base, t, i, float(value));
    }
  });
}

void arange(Tensor& dst, double start, double step) {
  const int64_t n = dst.numel();
  char* base = dst.raw();
  for (int64_t i = 0; i < n; ++i) {
    double v = start + double(i) * step;
    if (dst.dtype == DType::I32)
      reinterpret_cast<int32_t*>(base)[i] = int32_t(std::llround(v));
    else
      store_float(base, dst.dtype, i, float(v));
  }
}

int64_t embedding(const Tensor& weight, const Tensor& idx, Tensor& out) {
  const int64_t vocab = weight.shape[0];
  const size_t row_bytes = size_t(weight.shape[1]) * dtype_size(weight.dtype);
  const int32_t* ids = idx.ptr<int32_t>();
  const int64_t n = idx.numel();
  const char* w = weight.raw();
  char* o = out.raw();
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t id = ids[i];
    if (id < 0 || id >= vocab) {
      ++bad;
      std::memset(o + i * row_bytes, 0, row_bytes);
    } else {
      std::memcpy(o + i * row_bytes, w + id * row_bytes, row_bytes);
    }
  }
  return bad;
}

void im2col(const float* x, float* col, const ConvGeometry& g, Device) {
  const int64_t rows = g.channels * g.kernel_d * g.kernel_h * g.kernel_w;
  const int64_t spatial = g.out_d * g.out_h * g.out_w;
  parallel_for(rows, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(spatial, 1)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t kw = r % g.kernel_w, kh = (r / g.kernel_w) % g.kernel_h;
      const int64_t kd = (r / (g.kernel_w * g.kernel_h)) % g.kernel_d;
      const int64_t c = r / (g.kernel_w * g.kernel_h * g.kernel_d);
      float* dst = col + r * spatial;
      for (int64_t oz = 0; oz < g.out_d; ++oz) {
        const int64_t iz = oz * g.stride_d - g.pad_d + kd * g.dilation_d;
        const float* volume = x + (c * g.depth + iz) * g.height * g.width;
        for (int64_t oy = 0; oy < g.out_h; ++oy) {
          const int64_t iy = oy * g.stride_h - g.pad_h + kh * g.dilation_h;
          float* d = dst + (oz * g.out_h + oy) * g.out_w;
          if (iz < 0 || iz >= g.depth || iy < 0 || iy >= g.height) {
            std::fill(d, d + g.out_w, 0.f);
            continue;
          }
          const float* srow = volume + iy * g.width;
          for (int64_t ox = 0; ox < g.out_w; ++ox) {
            const int64_t ix = ox * g.stride_w - g.pad_w + kw * g.dilation_w;
            d[ox] = (ix >= 0 && ix < g.width) ? srow[ix] : 0.f;
          }
        }
      }
    }
  });
}

void upsample_nearest(const Tensor& x, Tensor& out, int64_t planes, int64_t h, int64_t w,
                      int64_t oh, int64_t ow) {
  const float* src = x.f32();
  float* dst = out.f32();
  parallel_for(planes * oh, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(ow, 1)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t p = r / oh, oy = r % oh;
      // PyTorch's 'nearest': source index floor(dst * in / out), computed in float32.
      const int64_t iy = std::min<int64_t>(int64_t(float(oy) * (float(h) / float(oh))), h - 1);
      const float* srow = src + (p * h + iy) * w;
      float* drow = dst + r * ow;
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t ix = std::min<int64_t>(int64_t(float(ox) * (float(w) / float(ow))), w - 1);
        drow[ox] = srow[ix];
      }
    }
  });
}

void broadcast_rows(float* out, const float* bias, int64_t rows, int64_t cols, Device) {
  parallel_for(rows, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(cols, 1)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) std::memcpy(out + r * cols, bias, size_t(cols) * 4);
  });
}

void add_channel_bias(float* out, const float* bias, int64_t n, int64_t c, int64_t s, Device) {
  parallel_for(n * c, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(s, 1)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float b = bias[r % c];
      float* p = out + r * s;
      for (int64_t i = 0; i < s; ++i) p[i] += b;
    }
  });
}

}  // namespace dc::cpu
