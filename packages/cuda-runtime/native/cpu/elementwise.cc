// Elementwise kernels: broadcasting binary arithmetic, unary functions and rotary embeddings,
// on the formulas of elementwise_formulas.h.
#include <algorithm>
#include <cmath>

#include "../elementwise_formulas.h"
#include "../kernels.h"
#include "parallel.h"
#include "strided.h"
#include "vmath.h"

namespace dc::cpu {
namespace {

constexpr int64_t kGrainElems = 1 << 14;

template <BinaryOp Op>
void binary_run(const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t n) {
  // Separate loops for the common stride patterns let the compiler vectorise them.
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = apply_binary<Op>(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; ++i) o[i] = apply_binary<Op>(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const float av = *a;
    for (int64_t i = 0; i < n; ++i) o[i] = apply_binary<Op>(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = apply_binary<Op>(a[i * sa], b[i * sb]);
  }
}

template <BinaryOp Op>
void binary_typed(const Tensor& a, const Tensor& b, Tensor& out) {
  StridedLoop<3> loop(out.shape, {a.strides.data(), b.strides.data(), out.strides.data()});
  const float* pa = a.f32();
  const float* pb = b.f32();
  float* po = out.f32();
  const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(loop.inner(), 1));
  parallel_for(loop.rows(), grain, [&](int64_t r0, int64_t r1) {
    loop.for_rows(r0, r1, [&](const int64_t* off, int64_t n, const int64_t* is) {
      binary_run<Op>(pa + off[0], is[0], pb + off[1], is[1], po + off[2], n);
    });
  });
}

template <BinaryOp Op>
void binary_scalar_typed(const float* a, float s, bool scalar_first, float* o, int64_t n) {
  parallel_for(n, kGrainElems, [&](int64_t i0, int64_t i1) {
    if (scalar_first)
      for (int64_t i = i0; i < i1; ++i) o[i] = apply_binary<Op>(s, a[i]);
    else
      for (int64_t i = i0; i < i1; ++i) o[i] = apply_binary<Op>(a[i], s);
  });
}

template <UnaryOp Op>
void unary_typed(const float* x, float* o, int64_t n, float p0, float p1) {
  parallel_for(n, kGrainElems / 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) o[i] = apply_unary<Op>(x[i], p0, p1);
  });
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  switch (op) {
#define DC_CASE(name) \
  case BinaryOp::name: return binary_typed<BinaryOp::name>(a, b, out);
    DC_FOR_EACH_BINARY_OP(DC_CASE)
#undef DC_CASE
  }
}

void binary_scalar(BinaryOp op, const Tensor& a, float s, bool scalar_first, Tensor& out) {
  const float* x = a.f32();
  float* o = out.f32();
  const int64_t n = out.numel();
  switch (op) {
#define DC_CASE(name) \
  case BinaryOp::name: return binary_scalar_typed<BinaryOp::name>(x, s, scalar_first, o, n);
    DC_FOR_EACH_BINARY_OP(DC_CASE)
#undef DC_CASE
  }
}

namespace {
template <void (*Kernel)(const float*, float*, int64_t)>
void unary_vectorised(const float* x, float* o, int64_t n) {
  parallel_for(n, kGrainElems, [&](int64_t i0, int64_t i1) { Kernel(x + i0, o + i0, i1 - i0); });
}

// The activations transformers spend their time in run through the vectorised kernels; the
// others through the shared formula, one scalar loop each.
template <UnaryOp Op>
void unary_op(const float* x, float* o, int64_t n, float p0, float p1) {
  if constexpr (Op == UnaryOp::Exp) unary_vectorised<vector_exp>(x, o, n);
  else if constexpr (Op == UnaryOp::Sigmoid) unary_vectorised<vector_sigmoid>(x, o, n);
  else if constexpr (Op == UnaryOp::Silu) unary_vectorised<vector_silu>(x, o, n);
  else if constexpr (Op == UnaryOp::GeluTanh) unary_vectorised<vector_gelu_tanh>(x, o, n);
  else unary_typed<Op>(x, o, n, p0, p1);
}
}  // namespace

void unary(UnaryOp op, const Tensor& x, Tensor& out, float p0, float p1) {
  const float* i = x.f32();
  float* o = out.f32();
  const int64_t n = out.numel();
  switch (op) {
#define DC_CASE(name) \
  case UnaryOp::name: return unary_op<UnaryOp::name>(i, o, n, p0, p1);
    DC_FOR_EACH_UNARY_OP(DC_CASE)
#undef DC_CASE
  }
}

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out, bool interleaved) {
  const int nd = x.dim();
  const int64_t d = x.shape[nd - 1];
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  const float* px = x.f32();
  const float* pc = cos.f32();
  const float* ps = sin.f32();
  float* po = out.f32();
  parallel_for(rows, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(d, 1)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t rem = r, oc = 0, os = 0;
      for (int k = nd - 2; k >= 0; --k) {
        const int64_t i = rem % x.shape[k];
        rem /= x.shape[k];
        oc += i * cos.strides[k];
        os += i * sin.strides[k];
      }
      const float* xr = px + r * d;
      const float* c = pc + oc;
      const float* s = ps + os;
      float* o = po + r * d;
      if (interleaved) {
        // Pairs (x[2i], x[2i+1]) rotate as complex numbers: FLUX's and Wan's form.
        for (int64_t i = 0; i + 1 < d; i += 2) {
          const float re = xr[i], im = xr[i + 1];
          o[i] = re * c[i] - im * s[i];
          o[i + 1] = im * c[i + 1] + re * s[i + 1];
        }
      } else {
        // Halves (x[i], x[i + d/2]) rotate together: the rotate_half form.
        const int64_t h = d / 2;
        for (int64_t i = 0; i < h; ++i) {
          const float a = xr[i], b = xr[i + h];
          o[i] = a * c[i] - b * s[i];
          o[i + h] = b * c[i + h] + a * s[i + h];
        }
      }
    }
  });
}

}  // namespace dc::cpu
