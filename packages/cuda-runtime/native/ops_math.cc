// Elementwise arithmetic and reductions.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops_common.h"

namespace dc::ops {

const char* op_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "maximum", "minimum", "pow"};
  return names[int(op)];
}

const char* op_name(UnaryOp op) {
  static const char* names[] = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos",
                                "tanh", "sigmoid", "silu", "relu", "gelu", "gelu", "square",
                                "reciprocal", "clamp"};
  return names[int(op)];
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = op_name(op);
  check_float(name, a, "first operand");
  check_float(name, b, "second operand");
  check_same_device(name, {&a, &b});
  const Shape shape = broadcast_shapes(name, a.shape, b.shape);
  checked_numel(name, shape);
  const DType dtype = result_dtype({&a, &b});
  if (reads_any_float(a.device())) {
    Tensor out = Tensor::empty(shape, dtype, a.device());
    cpu::binary(op, broadcast_to(a, shape), broadcast_to(b, shape), out);
    return out;
  }
  Tensor fa = broadcast_to(staged_f32(a, false), shape);
  Tensor fb = broadcast_to(staged_f32(b, false), shape);
  Tensor out = Tensor::empty(shape, DType::F32, a.device());
  DC_DISPATCH(a.device(), binary, op, fa, fb, out);
  return finish(out, dtype);
}

Tensor binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first) {
  check_float(op_name(op), a, "tensor operand");
  if (reads_any_float(a.device())) {
    Tensor out = Tensor::empty(a.shape, a.dtype, a.device());
    cpu::binary_scalar(op, a, float(s), scalar_first, out);
    return out;
  }
  Tensor fa = staged_f32(a, true);
  Tensor out = Tensor::empty(a.shape, DType::F32, a.device());
  DC_DISPATCH(a.device(), binary_scalar, op, fa, float(s), scalar_first, out);
  return finish(out, a.dtype);
}

Tensor unary(UnaryOp op, const Tensor& x, float p0, float p1) {
  check_float(op_name(op), x, "input");
  if (op == UnaryOp::Clamp && p0 > p1) fail("clamp", "min ", p0, " is greater than max ", p1);
  if (reads_any_float(x.device())) {
    Tensor out = Tensor::empty(x.shape, x.dtype, x.device());
    cpu::unary(op, x, out, p0, p1);
    return out;
  }
  Tensor fx = staged_f32(x, true);
  Tensor out = Tensor::empty(x.shape, DType::F32, x.device());
  DC_DISPATCH(x.device(), unary, op, fx, out, p0, p1);
  return finish(out, x.dtype);
}

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_float("reduce", x, "input");
  const int nd = x.dim();
  std::vector<bool> reduced(size_t(nd), dims.empty());
  for (int64_t d : dims) {
    const int k = normalize_dim("reduce", d, nd);
    if (reduced[size_t(k)] && !dims.empty()) fail("reduce", "dimension ", d, " appears twice");
    reduced[size_t(k)] = true;
  }
  if ((op == ReduceOp::Max || op == ReduceOp::Min) && x.numel() == 0)
    fail("reduce", "max / min of an empty tensor ", shape_str(x.shape), " is undefined");
  // Reduce one dimension at a time, innermost first, on a contiguous float32 copy.
  Tensor cur = staged_f32(x, true);
  Shape kept_shape;
  for (int d = nd - 1; d >= 0; --d) {
    if (!reduced[size_t(d)]) continue;
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < d; ++k) outer *= cur.shape[size_t(k)];
    for (int k = d + 1; k < cur.dim(); ++k) inner *= cur.shape[size_t(k)];
    Shape next = cur.shape;
    next[size_t(d)] = 1;
    Tensor out = Tensor::empty(next, DType::F32, x.device());
    DC_DISPATCH(x.device(), reduce, op, cur, outer, cur.shape[size_t(d)], inner, out);
    cur = out;
  }
  Shape final_shape;
  for (int d = 0; d < nd; ++d)
    if (!reduced[size_t(d)] || keepdim) final_shape.push_back(reduced[size_t(d)] ? 1 : x.shape[size_t(d)]);
  cur = cur.view(final_shape, Tensor::contiguous_strides(final_shape));
  return finish(cur, x.dtype);
}

double mean_abs(const Tensor& x) {
  check_float("meanAbs", x, "input");
  if (x.numel() == 0) return std::numeric_limits<double>::quiet_NaN();
  Tensor fx = staged_f32(x, true);
  double sum = 0;
  DC_DISPATCH(x.device(), abs_diff_sums, fx, nullptr, nullptr, &sum);
  return sum / double(x.numel());
}

double rel_l1(const Tensor& a, const Tensor& b) {
  check_float("relL1", a, "reference");
  check_float("relL1", b, "other");
  check_same_device("relL1", {&a, &b});
  if (a.shape != b.shape)
    fail("relL1", "shapes differ: ", shape_str(a.shape), " vs ", shape_str(b.shape));
  Tensor fa = staged_f32(a, true), fb = staged_f32(b, true);
  double diff = 0, mag = 0;
  DC_DISPATCH(a.device(), abs_diff_sums, fa, &fb, &diff, &mag);
  // The means share a denominator, so their ratio is the ratio of sums.
  return diff / mag;
}

}  // namespace dc::ops
