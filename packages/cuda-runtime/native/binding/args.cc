// Reading JS arguments into C++ values: each reader checks the type and names the op and the
// argument when it is wrong.
#include <cmath>

#include "../runtime_settings.h"
#include "binding.h"

namespace dc::binding {

const Tensor& arg_tensor(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kTensorTag))
    fail(op, what, " must be a Tensor");
  return tensor_of(v.As<Napi::Object>(), op);
}

std::optional<Tensor> arg_opt_tensor(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return std::nullopt;
  return arg_tensor(info, i, op, what);
}

double arg_number(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) fail(op, what, " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

int64_t to_int(double d, const char* op, const char* what) {
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9007199254740991.0)
    fail(op, what, " must be an integer, got ", d);
  return int64_t(d);
}

int64_t arg_int(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what) {
  return to_int(arg_number(info, i, op, what), op, what);
}

bool arg_bool(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() && info[i].IsBoolean() && info[i].As<Napi::Boolean>().Value();
}

std::string arg_string(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what) {
  if (i >= info.Length() || !info[i].IsString()) fail(op, what, " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

std::vector<int64_t> arg_ints(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what) {
  if (i >= info.Length() || !info[i].IsArray()) fail(op, what, " must be an array of integers");
  Napi::Array a = info[i].As<Napi::Array>();
  if (a.Length() > 64) fail(op, what, " has too many entries (", a.Length(), ")");
  std::vector<int64_t> out;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value v = a[k];
    if (!v.IsNumber()) fail(op, what, "[", k, "] must be a number");
    out.push_back(to_int(v.As<Napi::Number>().DoubleValue(), op, what));
  }
  return out;
}

Shape arg_shape(const Napi::CallbackInfo& info, size_t i, const char* op) {
  Shape s = arg_ints(info, i, op, "shape");
  if (s.size() > size_t(kMaxDims)) fail(op, "at most ", kMaxDims, " dimensions are supported, got ", s.size());
  return s;
}

Device arg_device(const Napi::CallbackInfo& info, size_t i, const char* op) {
  Device d = parse_device(arg_string(info, i, op, "device"));
  settings::check_device(d, op);
  return d;
}

DType arg_dtype(const Napi::CallbackInfo& info, size_t i, const char* op) {
  return parse_dtype(arg_string(info, i, op, "dtype"));
}

}  // namespace dc::binding
