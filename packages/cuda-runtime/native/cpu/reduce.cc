// Reductions and the kernels built on them: sums and extrema along a dimension, the fused
// relative-L1 statistic the cache engine decides on, softmax and the normalisations.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../kernels.h"
#include "convert.h"
#include "parallel.h"
#include "vmath.h"

namespace dc::cpu {
namespace {

constexpr int64_t kGrainElems = 1 << 14;
// Fixed chunking makes float64 sums independent of the number of threads.
constexpr int64_t kSumChunk = 1 << 16;

inline int64_t rows_grain(int64_t cols) { return std::max<int64_t>(1, kGrainElems / std::max<int64_t>(cols, 1)); }

// Float64 sums that still vectorise: float lanes add short blocks, the blocks add in double.
constexpr int kLanes = 16, kBlock = 64;

// Sum of (x[i] - shift)^power for power 1 or 2.
template <int Power>
double blocked_sum(const float* x, int64_t n, float shift) {
  double total = 0.0;
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    float lanes[kLanes] = {};
    for (int k = 0; k < kBlock; k += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const float d = x[i + k + j] - shift;
        lanes[j] += Power == 1 ? d : d * d;
      }
    double block = 0.0;
    for (float v : lanes) block += v;
    total += block;
  }
  for (; i < n; ++i) {
    const double d = double(x[i]) - shift;
    total += Power == 1 ? d : d * d;
  }
  return total;
}

struct Moments {
  float mean, rstd;
};

// Mean and 1 / sqrt(variance + eps) of n values, two passes (the second around the mean).
Moments moments(const float* x, int64_t n, float eps) {
  const double mean = blocked_sum<1>(x, n, 0.f) / double(n);
  const double var = blocked_sum<2>(x, n, float(mean)) / double(n);
  return {float(mean), float(1.0 / std::sqrt(var + double(eps)))};
}

// fn(row of x as float32, row of out as float32) for each of the rows of contiguous x and out,
// in parallel. A bfloat16 / float16 row is widened into a per-thread buffer and a 16-bit result
// row rounded once from one, so 16-bit tensors go through in one pass; float32 rows are used in
// place.
template <typename F>
void for_float_rows(const Tensor& x, Tensor& out, int64_t rows, int64_t cols, F&& fn) {
  parallel_for(rows, rows_grain(cols), [&](int64_t r0, int64_t r1) {
    std::vector<float> xrow(x.dtype == DType::F32 ? 0 : size_t(cols)), orow(out.dtype == DType::F32 ? 0 : size_t(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* xi = x.dtype == DType::F32 ? x.f32() + r * cols : xrow.data();
      if (x.dtype != DType::F32) widen_run(x.ptr<uint16_t>() + r * cols, xrow.data(), cols, x.dtype);
      float* o = out.dtype == DType::F32 ? out.f32() + r * cols : orow.data();
      fn(xi, o);
      if (out.dtype != DType::F32) narrow_run(o, out.ptr<uint16_t>() + r * cols, cols, out.dtype);
    }
  });
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t r, int64_t inner, Tensor& out) {
  const float* px = x.f32();
  float* po = out.f32();
  const bool extremum = op == ReduceOp::Max || op == ReduceOp::Min;
  parallel_for(outer * inner, rows_grain(r), [&](int64_t t0, int64_t t1) {
    std::vector<double> acc;
    // Work on runs of consecutive inner positions of one outer index at a time.
    for (int64_t t = t0; t < t1;) {
      const int64_t o = t / inner, i0 = t % inner;
      const int64_t len = std::min(inner - i0, t1 - t);
      acc.assign(size_t(len), extremum ? (op == ReduceOp::Max ? -INFINITY : INFINITY) : 0.0);
      std::vector<char> has_nan(size_t(len), 0);
      for (int64_t k = 0; k < r; ++k) {
        const float* row = px + (o * r + k) * inner + i0;
        if (!extremum) {
          for (int64_t i = 0; i < len; ++i) acc[i] += row[i];
        } else {
          for (int64_t i = 0; i < len; ++i) {
            const double v = row[i];
            if (std::isnan(v)) has_nan[i] = 1;
            else if (op == ReduceOp::Max ? v > acc[i] : v < acc[i]) acc[i] = v;
          }
        }
      }
      for (int64_t i = 0; i < len; ++i) {
        double v = acc[i];
        if (op == ReduceOp::Mean) v = r ? v / double(r) : std::numeric_limits<double>::quiet_NaN();
        if (extremum && has_nan[i]) v = std::numeric_limits<double>::quiet_NaN();
        po[o * inner + i0 + i] = float(v);
      }
      t += len;
    }
  });
}

void abs_diff_sums(const Tensor& a, const Tensor* b, double* sum_abs_diff, double* sum_abs_a) {
  const int64_t n = a.numel();
  const float* pa = a.f32();
  const float* pb = b ? b->f32() : nullptr;
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> diff(size_t(chunks), 0.0), mag(size_t(chunks), 0.0);
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i0 = c * kSumChunk, i1 = std::min(n, i0 + kSumChunk);
      double d = 0.0, m = 0.0;
      for (int64_t i = i0; i < i1; ++i) {
        m += std::fabs(double(pa[i]));
        if (pb) d += std::fabs(double(pa[i]) - double(pb[i]));
      }
      diff[size_t(c)] = d;
      mag[size_t(c)] = m;
    }
  });
  double d = 0.0, m = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    d += diff[size_t(c)];
    m += mag[size_t(c)];
  }
  if (sum_abs_diff) *sum_abs_diff = d;
  if (sum_abs_a) *sum_abs_a = m;
}

void topk(const Tensor& x, int64_t rows, int64_t cols, int64_t k, bool largest, Tensor& values,
          Tensor& indices) {
  const float* px = x.f32();
  float* pv = values.f32();
  int32_t* pi = indices.ptr<int32_t>();
  parallel_for(rows, rows_grain(cols), [&](int64_t r0, int64_t r1) {
    std::vector<int32_t> order(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = px + r * cols;
      for (int64_t j = 0; j < cols; ++j) order[size_t(j)] = int32_t(j);
      // NaN ranks above every number (as in PyTorch); equal values keep index order.
      auto before = [&](int32_t a, int32_t b) {
        const float va = row[a], vb = row[b];
        const bool na = std::isnan(va), nb = std::isnan(vb);
        if (na || nb) return na && !nb ? largest : (!na && nb ? !largest : a < b);
        if (va != vb) return largest ? va > vb : va < vb;
        return a < b;
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
      for (int64_t j = 0; j < k; ++j) {
        pv[r * k + j] = row[order[size_t(j)]];
        pi[r * k + j] = order[size_t(j)];
      }
    }
  });
}

void softmax(const Tensor& x, Tensor& out, int64_t rows, int64_t cols) {
  for_float_rows(x, out, rows, cols, [&](const float* xi, float* o) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, xi[j]);
    const float inv = float(1.0 / vector_exp_shifted_sum(xi, mx, o, cols));
    for (int64_t j = 0; j < cols; ++j) o[j] *= inv;
  });
}

void layer_norm(const Tensor& x, const float* weight, const float* bias, Tensor& out, int64_t rows,
                int64_t cols, float eps) {
  for_float_rows(x, out, rows, cols, [&](const float* xi, float* o) {
    const auto [m, rstd] = moments(xi, cols, eps);
    for (int64_t j = 0; j < cols; ++j) {
      float v = (xi[j] - m) * rstd;
      if (weight) v *= weight[j];
      if (bias) v += bias[j];
      o[j] = v;
    }
  });
}

void rms_norm(const Tensor& x, const float* weight, Tensor& out, int64_t rows, int64_t cols,
              float eps) {
  for_float_rows(x, out, rows, cols, [&](const float* xi, float* o) {
    const float rstd = float(1.0 / std::sqrt(blocked_sum<2>(xi, cols, 0.f) / double(cols) + double(eps)));
    for (int64_t j = 0; j < cols; ++j) o[j] = weight ? (xi[j] * rstd) * weight[j] : xi[j] * rstd;
  });
}

void group_norm(const Tensor& x, const float* weight, const float* bias, Tensor& out, int64_t n,
                int64_t channels, int64_t spatial, int64_t groups, float eps) {
  const float* px = x.f32();
  float* po = out.f32();
  const int64_t cpg = channels / groups;
  const int64_t group_elems = cpg * spatial;
  parallel_for(n * groups, rows_grain(group_elems), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const float* xi = px + g * group_elems;
      float* o = po + g * group_elems;
      const auto [m, rstd] = moments(xi, group_elems, eps);
      const int64_t c0 = (g % groups) * cpg;
      for (int64_t c = 0; c < cpg; ++c) {
        const float w = weight ? weight[c0 + c] : 1.f;
        const float b = bias ? bias[c0 + c] : 0.f;
        const float* xc = xi + c * spatial;
        float* oc = o + c * spatial;
        for (int64_t s = 0; s < spatial; ++s) oc[s] = (xc[s] - m) * rstd * w + b;
      }
    }
  });
}

}  // namespace dc::cpu
