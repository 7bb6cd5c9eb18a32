// Elementwise kernels: broadcasting binary arithmetic, unary functions and rotary embeddings,
// on the formulas of elementwise_formulas.h that the CPU kernels use too.
#include <cstdint>

#include "../elementwise_formulas.h"
#include "../kernels.h"
#include "launch.cuh"
#include "strided.cuh"

namespace dc::cuda {
namespace {

template <BinaryOp Op, typename Index>
__global__ void binary_kernel(const float* a, const float* b, float* out, StridedIndexer<3> idx, int64_t n) {
  DC_GRID_STRIDE_LOOP(i, n) {
    int64_t off[3];
    idx.offsets<Index>(i, off);
    out[off[2]] = apply_binary<Op>(a[off[0]], b[off[1]]);
  }
}

template <BinaryOp Op>
void launch_binary(const Tensor& a, const Tensor& b, Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const StridedIndexer<3> idx(out.shape, {a.strides.data(), b.strides.data(), out.strides.data()});
  if (idx.fits_int32())
    binary_kernel<Op, int32_t><<<blocks_for(n), kBlock>>>(a.f32(), b.f32(), out.f32(), idx, n);
  else
    binary_kernel<Op, int64_t><<<blocks_for(n), kBlock>>>(a.f32(), b.f32(), out.f32(), idx, n);
  check_launch("binary");
}

template <BinaryOp Op>
__global__ void binary_scalar_kernel(const float* a, float s, bool scalar_first, float* out, int64_t n) {
  if (scalar_first) {
    DC_GRID_STRIDE_LOOP(i, n) out[i] = apply_binary<Op>(s, a[i]);
  } else {
    DC_GRID_STRIDE_LOOP(i, n) out[i] = apply_binary<Op>(a[i], s);
  }
}

template <BinaryOp Op>
void launch_binary_scalar(const Tensor& a, float s, bool scalar_first, Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  binary_scalar_kernel<Op><<<blocks_for(n), kBlock>>>(a.f32(), s, scalar_first, out.f32(), n);
  check_launch("binary_scalar");
}

template <UnaryOp Op>
__global__ void unary_kernel(const float* x, float* out, int64_t n, float p0, float p1) {
  DC_GRID_STRIDE_LOOP(i, n) out[i] = apply_unary<Op>(x[i], p0, p1);
}

template <UnaryOp Op>
void launch_unary(const Tensor& x, Tensor& out, float p0, float p1) {
  const int64_t n = out.numel();
  if (n == 0) return;
  unary_kernel<Op><<<blocks_for(n), kBlock>>>(x.f32(), out.f32(), n, p0, p1);
  check_launch("unary");
}

// One thread per rotated pair. `rows` unravels a row number into the offsets of that row's
// cos and sin vectors (which may broadcast over any leading dimension).
template <bool kInterleaved, typename Index>
__global__ void rope_kernel(const float* x, const float* cos, const float* sin, float* out,
                            StridedIndexer<2> rows, int64_t half, int64_t pairs) {
  DC_GRID_STRIDE_LOOP(e, pairs) {
    const Index r = Index(e) / Index(half), i = Index(e) % Index(half);
    int64_t off[2];
    rows.offsets<Index>(r, off);
    const Index d = 2 * Index(half);
    const Index lo = kInterleaved ? 2 * i : i, hi = kInterleaved ? 2 * i + 1 : i + Index(half);
    const float* xr = x + int64_t(r) * d;
    const float* c = cos + off[0];
    const float* s = sin + off[1];
    float* o = out + int64_t(r) * d;
    // Products rounded separately, as the CPU computes them (no fused multiply-add).
    const float a = xr[lo], b = xr[hi];
    o[lo] = __fsub_rn(__fmul_rn(a, c[lo]), __fmul_rn(b, s[lo]));
    o[hi] = __fadd_rn(__fmul_rn(b, c[hi]), __fmul_rn(a, s[hi]));
  }
}

template <bool kInterleaved>
void launch_rope(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out) {
  const int nd = x.dim();
  const int64_t half = x.shape[size_t(nd - 1)] / 2;
  const int64_t pairs = half * (half ? x.numel() / (2 * half) : 0);
  if (pairs == 0) return;
  const Shape row_shape(x.shape.begin(), x.shape.end() - 1);
  const StridedIndexer<2> rows(row_shape, {cos.strides.data(), sin.strides.data()});
  if (rows.fits_int32() && pairs <= kMaxIndex32)
    rope_kernel<kInterleaved, int32_t><<<blocks_for(pairs), kBlock>>>(x.f32(), cos.f32(), sin.f32(), out.f32(),
                                                                     rows, half, pairs);
  else
    rope_kernel<kInterleaved, int64_t><<<blocks_for(pairs), kBlock>>>(x.f32(), cos.f32(), sin.f32(), out.f32(),
                                                                     rows, half, pairs);
  check_launch("rope");
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  switch (op) {
#define DC_CASE(name) \
  case BinaryOp::name: return launch_binary<BinaryOp::name>(a, b, out);
    DC_FOR_EACH_BINARY_OP(DC_CASE)
#undef DC_CASE
  }
}

void binary_scalar(BinaryOp op, const Tensor& a, float s, bool scalar_first, Tensor& out) {
  switch (op) {
#define DC_CASE(name) \
  case BinaryOp::name: return launch_binary_scalar<BinaryOp::name>(a, s, scalar_first, out);
    DC_FOR_EACH_BINARY_OP(DC_CASE)
#undef DC_CASE
  }
}

void unary(UnaryOp op, const Tensor& x, Tensor& out, float p0, float p1) {
  switch (op) {
#define DC_CASE(name) \
  case UnaryOp::name: return launch_unary<UnaryOp::name>(x, out, p0, p1);
    DC_FOR_EACH_UNARY_OP(DC_CASE)
#undef DC_CASE
  }
}

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out, bool interleaved) {
  if (interleaved)
    launch_rope<true>(x, cos, sin, out);
  else
    launch_rope<false>(x, cos, sin, out);
}

}  // namespace dc::cuda
