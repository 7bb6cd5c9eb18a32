#include "common.h"

namespace dc {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::I32: return "int32";
  }
  return "?";
}

DType parse_dtype(const std::string& name) {
  if (name == "float32") return DType::F32;
  if (name == "float16") return DType::F16;
  if (name == "bfloat16") return DType::BF16;
  if (name == "int32") return DType::I32;
  throw OpError("unknown dtype '" + name + "' (expected float32, float16, bfloat16 or int32)");
}

Device parse_device(const std::string& name) {
  Device d;
  if (name == "cpu") return d;
  if (name.rfind("cuda", 0) == 0) {
    d.kind = Device::CUDA;
    if (name == "cuda") return d;
    if (name.size() > 5 && name[4] == ':' && name.size() < 9) {
      int idx = 0;
      for (size_t i = 5; i < name.size(); ++i) {
        if (name[i] < '0' || name[i] > '9') goto bad;
        idx = idx * 10 + (name[i] - '0');
      }
      d.index = idx;
      return d;
    }
  }
bad:
  throw OpError("unknown device '" + name + "' (expected 'cpu', 'cuda' or 'cuda:N')");
}

std::string shape_str(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  if (s.size() == 1) r += ",";
  return r + ")";
}

int64_t checked_numel(const char* op, const Shape& shape) {
  if (shape.size() > size_t(kMaxDims)) fail(op, "at most ", kMaxDims, " dimensions are supported, got ", shape.size());
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(op, "negative dimension in shape ", shape_str(shape));
    if (d != 0 && n > kMaxElements / d) fail(op, "shape ", shape_str(shape), " is too large");
    n *= d;
  }
  return n;
}

int normalize_dim(const char* op, int64_t dim, int ndim) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim) fail(op, "dimension ", dim, " is out of range for a ", ndim, "-D tensor");
  return int(d);
}

}  // namespace dc
