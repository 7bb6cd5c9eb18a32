// One JS function per op of the runtime (ops.h): arguments read, the op run, the result wrapped.
#include <cmath>
#include <string>
#include <unordered_map>

#include "binding.h"

namespace dc::binding {
namespace {

DC_FN(FromArray) {
  DC_BODY(
    const char* op = "tensor";
    if (info.Length() < 1 || !info[0].IsTypedArray()) fail(op, "data must be a Float32Array, Float64Array, Int32Array or Uint16Array");
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    const Shape shape = arg_shape(info, 1, op);
    const DType dtype = arg_dtype(info, 2, op);
    const Device device = arg_device(info, 3, op);
    const int64_t n = int64_t(ta.ElementLength());
    const void* data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    switch (ta.TypedArrayType()) {
      case napi_float32_array: return wrap(info.Env(), ops::from_host(data, DType::F32, n, shape, dtype, device));
      case napi_int32_array: return wrap(info.Env(), ops::from_host(data, DType::I32, n, shape, dtype, device));
      case napi_uint16_array:
        if (dtype != DType::F16 && dtype != DType::BF16) fail(op, "a Uint16Array holds raw float16 / bfloat16 bits; dtype must be one of those, not ", dtype_name(dtype));
        return wrap(info.Env(), ops::from_host(data, dtype, n, shape, dtype, device));
      case napi_float64_array: {
        // Doubles narrow to float32 (or to int32 for an int32 tensor) before storage.
        const double* src = static_cast<const double*>(data);
        if (dtype == DType::I32) {
          std::vector<int32_t> ints(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i) ints[size_t(i)] = int32_t(src[i]);
          return wrap(info.Env(), ops::from_host(ints.data(), DType::I32, n, shape, dtype, device));
        }
        std::vector<float> floats(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) floats[size_t(i)] = float(src[i]);
        return wrap(info.Env(), ops::from_host(floats.data(), DType::F32, n, shape, dtype, device));
      }
      default: fail(op, "data must be a Float32Array, Float64Array, Int32Array or Uint16Array");
    })
}

DC_FN(Full) {
  DC_BODY(return wrap(info.Env(), ops::full(arg_shape(info, 0, "full"), arg_number(info, 1, "full", "value"),
                                            arg_dtype(info, 2, "full"), arg_device(info, 3, "full")));)
}
DC_FN(Arange) {
  DC_BODY(return wrap(info.Env(), ops::arange(arg_number(info, 0, "arange", "start"), arg_number(info, 1, "arange", "end"),
                                              arg_number(info, 2, "arange", "step"), arg_dtype(info, 3, "arange"),
                                              arg_device(info, 4, "arange")));)
}
DC_FN(To) { DC_BODY(return wrap(info.Env(), ops::to_device(arg_tensor(info, 0, "to", "input"), arg_device(info, 1, "to")));) }
DC_FN(Cast) { DC_BODY(return wrap(info.Env(), ops::cast(arg_tensor(info, 0, "cast", "input"), arg_dtype(info, 1, "cast")));) }
DC_FN(Contiguous) { DC_BODY(return wrap(info.Env(), ops::contiguous(arg_tensor(info, 0, "contiguous", "input")));) }
DC_FN(Clone) { DC_BODY(return wrap(info.Env(), ops::clone(arg_tensor(info, 0, "clone", "input")));) }
DC_FN(Reshape) { DC_BODY(return wrap(info.Env(), ops::reshape(arg_tensor(info, 0, "reshape", "input"), arg_ints(info, 1, "reshape", "shape")));) }
DC_FN(Permute) { DC_BODY(return wrap(info.Env(), ops::permute(arg_tensor(info, 0, "permute", "input"), arg_ints(info, 1, "permute", "dims")));) }
DC_FN(Transpose) {
  DC_BODY(return wrap(info.Env(), ops::transpose(arg_tensor(info, 0, "transpose", "input"), arg_int(info, 1, "transpose", "dim0"),
                                                 arg_int(info, 2, "transpose", "dim1")));)
}
DC_FN(Slice) {
  DC_BODY(return wrap(info.Env(), ops::slice(arg_tensor(info, 0, "slice", "input"), arg_int(info, 1, "slice", "dim"),
                                             arg_int(info, 2, "slice", "start"), arg_int(info, 3, "slice", "end"),
                                             arg_int(info, 4, "slice", "step")));)
}
DC_FN(Expand) { DC_BODY(return wrap(info.Env(), ops::expand(arg_tensor(info, 0, "expand", "input"), arg_ints(info, 1, "expand", "shape")));) }
DC_FN(Squeeze) { DC_BODY(return wrap(info.Env(), ops::squeeze(arg_tensor(info, 0, "squeeze", "input"), arg_int(info, 1, "squeeze", "dim")));) }
DC_FN(Unsqueeze) { DC_BODY(return wrap(info.Env(), ops::unsqueeze(arg_tensor(info, 0, "unsqueeze", "input"), arg_int(info, 1, "unsqueeze", "dim")));) }

DC_FN(Split) {
  DC_BODY(
    auto parts = ops::split(arg_tensor(info, 0, "split", "input"), arg_ints(info, 1, "split", "sizes"), arg_int(info, 2, "split", "dim"));
    Napi::Array out = Napi::Array::New(info.Env(), parts.size());
    for (size_t i = 0; i < parts.size(); ++i) out[uint32_t(i)] = wrap(info.Env(), parts[i]);
    return out;)
}

DC_FN(Concat) {
  DC_BODY(
    if (info.Length() < 1 || !info[0].IsArray()) fail("concat", "tensors must be an array");
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<Tensor> ts;
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value v = a[i];
      if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kTensorTag)) fail("concat", "element ", i, " is not a Tensor");
      ts.push_back(tensor_of(v.As<Napi::Object>(), "concat"));
    }
    return wrap(info.Env(), ops::concat(ts, arg_int(info, 1, "concat", "dim")));)
}

const std::unordered_map<std::string, BinaryOp>& binary_ops() {
  static const std::unordered_map<std::string, BinaryOp> m = {
      {"add", BinaryOp::Add}, {"sub", BinaryOp::Sub}, {"mul", BinaryOp::Mul}, {"div", BinaryOp::Div},
      {"maximum", BinaryOp::Max}, {"minimum", BinaryOp::Min}, {"pow", BinaryOp::Pow}};
  return m;
}
const std::unordered_map<std::string, UnaryOp>& unary_ops() {
  static const std::unordered_map<std::string, UnaryOp> m = {
      {"neg", UnaryOp::Neg}, {"abs", UnaryOp::Abs}, {"exp", UnaryOp::Exp}, {"log", UnaryOp::Log},
      {"sqrt", UnaryOp::Sqrt}, {"rsqrt", UnaryOp::Rsqrt}, {"sin", UnaryOp::Sin}, {"cos", UnaryOp::Cos},
      {"tanh", UnaryOp::Tanh}, {"sigmoid", UnaryOp::Sigmoid}, {"silu", UnaryOp::Silu}, {"relu", UnaryOp::Relu},
      {"gelu_tanh", UnaryOp::GeluTanh}, {"gelu_erf", UnaryOp::GeluErf}, {"square", UnaryOp::Square},
      {"reciprocal", UnaryOp::Reciprocal}, {"clamp", UnaryOp::Clamp}};
  return m;
}
const std::unordered_map<std::string, ReduceOp>& reduce_ops() {
  static const std::unordered_map<std::string, ReduceOp> m = {
      {"sum", ReduceOp::Sum}, {"mean", ReduceOp::Mean}, {"max", ReduceOp::Max}, {"min", ReduceOp::Min}};
  return m;
}
template <typename M>
auto lookup(const M& m, const std::string& name, const char* kind) {
  auto it = m.find(name);
  if (it == m.end()) fail(kind, "unknown operation '", name, "'");
  return it->second;
}

DC_FN(Binary) {
  DC_BODY(
    const BinaryOp op = lookup(binary_ops(), arg_string(info, 0, "binary", "op"), "binary");
    const char* name = ops::op_name(op);
    const Tensor& a = arg_tensor(info, 1, name, "first operand");
    if (info.Length() > 2 && info[2].IsNumber())
      return wrap(info.Env(), ops::binary_scalar(op, a, info[2].As<Napi::Number>().DoubleValue(), arg_bool(info, 3)));
    const Tensor& b = arg_tensor(info, 2, name, "second operand");
    return arg_bool(info, 3) ? wrap(info.Env(), ops::binary(op, b, a)) : wrap(info.Env(), ops::binary(op, a, b));)
}

DC_FN(Unary) {
  DC_BODY(
    const UnaryOp op = lookup(unary_ops(), arg_string(info, 0, "unary", "op"), "unary");
    const char* name = ops::op_name(op);
    const Tensor& x = arg_tensor(info, 1, name, "input");
    float p0 = 0.f, p1 = 0.f;
    if (op == UnaryOp::Clamp) {
      p0 = info.Length() > 2 && info[2].IsNumber() ? float(info[2].As<Napi::Number>().DoubleValue()) : -INFINITY;
      p1 = info.Length() > 3 && info[3].IsNumber() ? float(info[3].As<Napi::Number>().DoubleValue()) : INFINITY;
      if (std::isnan(p0) || std::isnan(p1)) fail("clamp", "bounds must not be NaN");
    }
    return wrap(info.Env(), ops::unary(op, x, p0, p1));)
}

DC_FN(Reduce) {
  DC_BODY(
    const ReduceOp op = lookup(reduce_ops(), arg_string(info, 0, "reduce", "op"), "reduce");
    std::vector<int64_t> dims;
    if (info.Length() > 2 && !info[2].IsNull() && !info[2].IsUndefined()) dims = arg_ints(info, 2, "reduce", "dims");
    const bool all = info.Length() <= 2 || info[2].IsNull() || info[2].IsUndefined();
    if (!all && dims.empty()) return wrap(info.Env(), arg_tensor(info, 1, "reduce", "input"));
    return wrap(info.Env(), ops::reduce(op, arg_tensor(info, 1, "reduce", "input"), dims, arg_bool(info, 3)));)
}

DC_FN(MeanAbs) { DC_BODY(return Napi::Number::New(info.Env(), ops::mean_abs(arg_tensor(info, 0, "meanAbs", "input")));) }
DC_FN(RelL1) {
  DC_BODY(return Napi::Number::New(info.Env(), ops::rel_l1(arg_tensor(info, 0, "relL1", "reference"), arg_tensor(info, 1, "relL1", "other")));)
}
DC_FN(Softmax) { DC_BODY(return wrap(info.Env(), ops::softmax(arg_tensor(info, 0, "softmax", "input"), arg_int(info, 1, "softmax", "dim")));) }
DC_FN(LayerNorm) {
  DC_BODY(return wrap(info.Env(), ops::layer_norm(arg_tensor(info, 0, "layerNorm", "input"), arg_opt_tensor(info, 1, "layerNorm", "weight"),
                                                  arg_opt_tensor(info, 2, "layerNorm", "bias"), arg_number(info, 3, "layerNorm", "eps")));)
}
DC_FN(RmsNorm) {
  DC_BODY(return wrap(info.Env(), ops::rms_norm(arg_tensor(info, 0, "rmsNorm", "input"), arg_opt_tensor(info, 1, "rmsNorm", "weight"),
                                                arg_number(info, 2, "rmsNorm", "eps")));)
}
DC_FN(GroupNorm) {
  DC_BODY(return wrap(info.Env(), ops::group_norm(arg_tensor(info, 0, "groupNorm", "input"), arg_int(info, 1, "groupNorm", "groups"),
                                                  arg_opt_tensor(info, 2, "groupNorm", "weight"), arg_opt_tensor(info, 3, "groupNorm", "bias"),
                                                  arg_number(info, 4, "groupNorm", "eps")));)
}
DC_FN(Linear) {
  DC_BODY(return wrap(info.Env(), ops::linear(arg_tensor(info, 0, "linear", "input"), arg_tensor(info, 1, "linear", "weight"),
                                              arg_opt_tensor(info, 2, "linear", "bias")));)
}
DC_FN(Matmul) {
  DC_BODY(return wrap(info.Env(), ops::matmul(arg_tensor(info, 0, "matmul", "first operand"), arg_tensor(info, 1, "matmul", "second operand")));)
}
DC_FN(Attention) {
  DC_BODY(
    std::optional<double> scale;
    if (info.Length() > 4 && info[4].IsNumber()) scale = info[4].As<Napi::Number>().DoubleValue();
    return wrap(info.Env(), ops::attention(arg_tensor(info, 0, "attention", "query"), arg_tensor(info, 1, "attention", "key"),
                                           arg_tensor(info, 2, "attention", "value"), arg_opt_tensor(info, 3, "attention", "mask"),
                                           scale, arg_bool(info, 5)));)
}
DC_FN(Rope) {
  DC_BODY(return wrap(info.Env(), ops::rope(arg_tensor(info, 0, "rope", "input"), arg_tensor(info, 1, "rope", "cos"),
                                            arg_tensor(info, 2, "rope", "sin"), arg_bool(info, 3)));)
}
DC_FN(Embedding) {
  DC_BODY(return wrap(info.Env(), ops::embedding(arg_tensor(info, 0, "embedding", "weight"), arg_tensor(info, 1, "embedding", "indices")));)
}
template <Tensor (*Conv)(const Tensor&, const Tensor&, const std::optional<Tensor>&, const std::vector<int64_t>&,
                         const std::vector<int64_t>&, const std::vector<int64_t>&, int64_t)>
Napi::Value Convolution(const Napi::CallbackInfo& info, const char* op) {
  DC_BODY(return wrap(info.Env(), Conv(arg_tensor(info, 0, op, "input"), arg_tensor(info, 1, op, "weight"),
                                       arg_opt_tensor(info, 2, op, "bias"), arg_ints(info, 3, op, "stride"),
                                       arg_ints(info, 4, op, "padding"), arg_ints(info, 5, op, "dilation"),
                                       arg_int(info, 6, op, "groups")));)
}
DC_FN(Conv2d) { return Convolution<ops::conv2d>(info, "conv2d"); }
DC_FN(Conv3d) { return Convolution<ops::conv3d>(info, "conv3d"); }
DC_FN(Topk) {
  DC_BODY(
    auto [values, indices] = ops::topk(arg_tensor(info, 0, "topk", "input"), arg_int(info, 1, "topk", "k"),
                                       arg_int(info, 2, "topk", "dim"), arg_bool(info, 3));
    Napi::Array out = Napi::Array::New(info.Env(), 2);
    out[uint32_t(0)] = wrap(info.Env(), values);
    out[uint32_t(1)] = wrap(info.Env(), indices);
    return out;)
}
DC_FN(UpsampleNearest2d) {
  DC_BODY(return wrap(info.Env(), ops::upsample_nearest2d(arg_tensor(info, 0, "upsampleNearest2d", "input"),
                                                          arg_int(info, 1, "upsampleNearest2d", "height"),
                                                          arg_int(info, 2, "upsampleNearest2d", "width")));)
}

DC_FN(MapFile) { DC_BODY(return wrap_mapping(info.Env(), Storage::map_file(arg_string(info, 0, "mapFile", "path")));) }
DC_FN(FromMapping) {
  DC_BODY(
    const char* op = "fromMapping";
    const auto& storage = arg_mapping(info, 0, op);
    const int64_t off = arg_int(info, 1, op, "byteOffset");
    if (off < 0) fail(op, "byteOffset must be non-negative");
    return wrap(info.Env(), ops::from_mapping(storage, size_t(off), arg_dtype(info, 2, op), arg_shape(info, 3, op)));)
}

}  // namespace

std::vector<NamedFn> op_functions() {
  return {{"fromArray", FromArray}, {"full", Full}, {"arange", Arange}, {"to", To}, {"cast", Cast},
          {"contiguous", Contiguous}, {"clone", Clone}, {"reshape", Reshape}, {"permute", Permute},
          {"transpose", Transpose}, {"slice", Slice}, {"expand", Expand}, {"squeeze", Squeeze},
          {"unsqueeze", Unsqueeze}, {"split", Split}, {"concat", Concat}, {"binary", Binary},
          {"unary", Unary}, {"reduce", Reduce}, {"meanAbs", MeanAbs}, {"relL1", RelL1},
          {"softmax", Softmax}, {"layerNorm", LayerNorm}, {"rmsNorm", RmsNorm}, {"groupNorm", GroupNorm},
          {"linear", Linear}, {"matmul", Matmul}, {"attention", Attention}, {"rope", Rope},
          {"embedding", Embedding}, {"conv2d", Conv2d}, {"conv3d", Conv3d}, {"topk", Topk},
          {"upsampleNearest2d", UpsampleNearest2d}, {"mapFile", MapFile}, {"fromMapping", FromMapping}};
}

}  // namespace dc::binding
