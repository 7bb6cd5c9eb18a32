// The element-wise formulas, written once for the CPU (cpu/elementwise.cc) and CUDA
// (cuda/elementwise.cu) kernels, so that "the same results on both backends", NaN handling
// included, is something the compiler sees rather than a promise between two copies. The CPU runs
// the hot activations (exp, sigmoid, silu, tanh-GELU) through its vectorised kernels instead.
#pragma once
#include <math.h>

#include "kernels.h"

#ifdef __CUDACC__
#define DC_FORMULA __host__ __device__ __forceinline__
#else
#define DC_FORMULA inline
#endif

// Every binary and unary op, for switches that instantiate one kernel per op.
#define DC_FOR_EACH_BINARY_OP(X) X(Add) X(Sub) X(Mul) X(Div) X(Max) X(Min) X(Pow)
#define DC_FOR_EACH_UNARY_OP(X)                                                                         \
  X(Neg) X(Abs) X(Exp) X(Log) X(Sqrt) X(Rsqrt) X(Sin) X(Cos) X(Tanh) X(Sigmoid) X(Silu) X(Relu) X(GeluTanh) \
  X(GeluErf) X(Square) X(Reciprocal) X(Clamp)

namespace dc {

DC_FORMULA bool is_nan(float x) { return x != x; }

// max / min pass a NaN of the first operand through, like PyTorch's.
template <BinaryOp Op>
DC_FORMULA float apply_binary(float a, float b) {
  if constexpr (Op == BinaryOp::Add) return a + b;
  if constexpr (Op == BinaryOp::Sub) return a - b;
  if constexpr (Op == BinaryOp::Mul) return a * b;
  if constexpr (Op == BinaryOp::Div) return a / b;
  if constexpr (Op == BinaryOp::Max) return (a > b || is_nan(a)) ? a : b;
  if constexpr (Op == BinaryOp::Min) return (a < b || is_nan(a)) ? a : b;
  if constexpr (Op == BinaryOp::Pow) return powf(a, b);
  return 0.f;
}

// p0, p1: Clamp's bounds (unused otherwise).
template <UnaryOp Op>
DC_FORMULA float apply_unary(float x, float p0, float p1) {
  if constexpr (Op == UnaryOp::Neg) return -x;
  if constexpr (Op == UnaryOp::Abs) return fabsf(x);
  if constexpr (Op == UnaryOp::Exp) return expf(x);
  if constexpr (Op == UnaryOp::Log) return logf(x);
  if constexpr (Op == UnaryOp::Sqrt) return sqrtf(x);
  if constexpr (Op == UnaryOp::Rsqrt) return 1.f / sqrtf(x);  // CUDA's rsqrtf is not correctly rounded
  if constexpr (Op == UnaryOp::Sin) return sinf(x);
  if constexpr (Op == UnaryOp::Cos) return cosf(x);
  if constexpr (Op == UnaryOp::Tanh) return tanhf(x);
  if constexpr (Op == UnaryOp::Sigmoid) return 1.f / (1.f + expf(-x));
  if constexpr (Op == UnaryOp::Silu) return x / (1.f + expf(-x));
  if constexpr (Op == UnaryOp::Relu) return x > 0.f ? x : (is_nan(x) ? x : 0.f);
  if constexpr (Op == UnaryOp::GeluTanh) {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
  }
  if constexpr (Op == UnaryOp::GeluErf) return 0.5f * x * (1.f + erff(x * 0.7071067811865476f));
  if constexpr (Op == UnaryOp::Square) return x * x;
  if constexpr (Op == UnaryOp::Reciprocal) return 1.f / x;
  if constexpr (Op == UnaryOp::Clamp) {
    // min(max(x, lo), hi) spelled out: a NaN input stays NaN (fminf / fmaxf would replace it).
    const float lower = x < p0 ? p0 : x;
    return p1 < lower ? p1 : lower;
  }
  return 0.f;
}

}  // namespace dc
