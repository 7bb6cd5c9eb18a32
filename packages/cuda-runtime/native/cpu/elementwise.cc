// Elementwise kernels: broadcasting binary arithmetic, unary functions and rotary embeddings,
// on the formulas of elementwise_formulas.h.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../elementwise_formulas.h"
#include "../half.h"
#include "../kernels.h"
#include "convert.h"
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

// Operands and results of any float dtype go through in one pass: a chunk of each 16-bit
// operand is widened into a buffer, the float32 formula runs, and the chunk of a 16-bit result is
// rounded once, as the op would in float32 followed by a cast (PyTorch's bf16 / f16 arithmetic),
// without float32 copies of whole tensors. float32 operands and results are used in place.
constexpr int64_t kChunk = 1024;

// Elements [off, off + m * stride) of t as float32: in place for float32, else widened into buf.
struct FloatRun {
  const float* p;
  int64_t stride;
};
FloatRun read_floats(const Tensor& t, int64_t off, int64_t stride, int64_t m, float* buf) {
  if (t.dtype == DType::F32) return {t.f32() + off, stride};
  const uint16_t* src = t.ptr<uint16_t>() + off;
  if (stride == 0) {
    widen_run(src, buf, 1, t.dtype);
    return {buf, 0};
  }
  if (stride == 1) {
    widen_run(src, buf, m, t.dtype);
  } else {
    const bool bf16 = t.dtype == DType::BF16;
    for (int64_t i = 0; i < m; ++i) buf[i] = bf16 ? bf16_to_f32(src[i * stride]) : f16_to_f32(src[i * stride]);
  }
  return {buf, 1};
}

// Where a chunk's float32 results go: straight into a float32 out, else into buf until written.
float* result_floats(Tensor& out, int64_t off, float* buf) { return out.dtype == DType::F32 ? out.f32() + off : buf; }
void write_floats(Tensor& out, int64_t off, const float* results, int64_t m) {
  if (out.dtype != DType::F32) narrow_run(results, out.ptr<uint16_t>() + off, m, out.dtype);
}

// fn(offsets, chunk length, inner strides) over every chunk of at most kChunk elements of every
// run, in parallel (a contiguous tensor is one run, so the split is by chunks, not rows).
template <int N, typename F>
void for_chunks(const StridedLoop<N>& loop, F&& fn) {
  const int64_t inner = loop.inner();
  if (inner == 0) return;
  const int64_t per_row = (inner + kChunk - 1) / kChunk;
  int64_t inner_strides[N];
  for (int k = 0; k < N; ++k) inner_strides[k] = loop.strides[k][loop.ndim - 1];
  parallel_for(loop.rows() * per_row, std::max<int64_t>(1, kGrainElems / kChunk), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      int64_t off[N];
      loop.row_offsets(k / per_row, off);
      const int64_t start = (k % per_row) * kChunk;
      for (int j = 0; j < N; ++j) off[j] += start * inner_strides[j];
      fn(off, std::min(kChunk, inner - start), inner_strides);
    }
  });
}

template <BinaryOp Op>
void binary_typed(const Tensor& a, const Tensor& b, Tensor& out) {
  StridedLoop<3> loop(out.shape, {a.strides.data(), b.strides.data(), out.strides.data()});
  for_chunks(loop, [&](const int64_t* off, int64_t m, const int64_t* is) {
    alignas(64) float ba[kChunk], bb[kChunk], bo[kChunk];
    const FloatRun ra = read_floats(a, off[0], is[0], m, ba);
    const FloatRun rb = read_floats(b, off[1], is[1], m, bb);
    float* o = result_floats(out, off[2], bo);
    binary_run<Op>(ra.p, ra.stride, rb.p, rb.stride, o, m);
    write_floats(out, off[2], o, m);
  });
}

template <BinaryOp Op>
void binary_scalar_typed(const Tensor& a, float s, bool scalar_first, Tensor& out) {
  StridedLoop<2> loop(out.shape, {a.strides.data(), out.strides.data()});
  for_chunks(loop, [&](const int64_t* off, int64_t m, const int64_t* is) {
    alignas(64) float ba[kChunk], bo[kChunk];
    const FloatRun ra = read_floats(a, off[0], is[0], m, ba);
    float* o = result_floats(out, off[1], bo);
    if (scalar_first)
      binary_run<Op>(&s, 0, ra.p, ra.stride, o, m);
    else
      binary_run<Op>(ra.p, ra.stride, &s, 0, o, m);
    write_floats(out, off[1], o, m);
  });
}

template <UnaryOp Op>
void unary_run(const float* x, float* o, int64_t n, float p0, float p1) {
  // The activations transformers spend their time in run through the vectorised kernels.
  if constexpr (Op == UnaryOp::Exp) vector_exp(x, o, n);
  else if constexpr (Op == UnaryOp::Sigmoid) vector_sigmoid(x, o, n);
  else if constexpr (Op == UnaryOp::Silu) vector_silu(x, o, n);
  else if constexpr (Op == UnaryOp::GeluTanh) vector_gelu_tanh(x, o, n);
  else
    for (int64_t i = 0; i < n; ++i) o[i] = apply_unary<Op>(x[i], p0, p1);
}

template <UnaryOp Op>
void unary_typed(const Tensor& x, Tensor& out, float p0, float p1) {
  StridedLoop<2> loop(out.shape, {x.strides.data(), out.strides.data()});
  for_chunks(loop, [&](const int64_t* off, int64_t m, const int64_t* is) {
    alignas(64) float bx[kChunk], bo[kChunk];
    FloatRun rx = read_floats(x, off[0], is[0], m, bx);
    if (rx.stride != 1) {  // a strided or broadcast float32 input: gathered, as the kernels read runs
      for (int64_t i = 0; i < m; ++i) bx[i] = rx.p[i * rx.stride];
      rx = {bx, 1};
    }
    float* o = result_floats(out, off[1], bo);
    unary_run<Op>(rx.p, o, m, p0, p1);
    write_floats(out, off[1], o, m);
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
  switch (op) {
#define DC_CASE(name) \
  case BinaryOp::name: return binary_scalar_typed<BinaryOp::name>(a, s, scalar_first, out);
    DC_FOR_EACH_BINARY_OP(DC_CASE)
#undef DC_CASE
  }
}

void unary(UnaryOp op, const Tensor& x, Tensor& out, float p0, float p1) {
  switch (op) {
#define DC_CASE(name) \
  case UnaryOp::name: return unary_typed<UnaryOp::name>(x, out, p0, p1);
    DC_FOR_EACH_UNARY_OP(DC_CASE)
#undef DC_CASE
  }
}

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out, bool interleaved) {
  const int nd = x.dim();
  const int64_t d = x.shape[nd - 1];
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  const float* pc = cos.f32();
  const float* ps = sin.f32();
  parallel_for(rows, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(d, 1)),
               [&](int64_t r0, int64_t r1) {
    // 16-bit rows of x are widened, and of out rounded, one at a time (see read_floats).
    std::vector<float> xbuf(x.dtype == DType::F32 ? 0 : static_cast<size_t>(d));
    std::vector<float> obuf(out.dtype == DType::F32 ? 0 : static_cast<size_t>(d));
    for (int64_t r = r0; r < r1; ++r) {
      int64_t rem = r, oc = 0, os = 0;
      for (int k = nd - 2; k >= 0; --k) {
        const int64_t i = rem % x.shape[k];
        rem /= x.shape[k];
        oc += i * cos.strides[k];
        os += i * sin.strides[k];
      }
      const float* xr = read_floats(x, r * d, 1, d, xbuf.data()).p;
      const float* c = pc + oc;
      const float* s = ps + os;
      float* o = result_floats(out, r * d, obuf.data());
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
      write_floats(out, r * d, o, d);
    }
  });
}

}  // namespace dc::cpu
