// Creation, movement, dtype conversion and view ops.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "half.h"
#include "ops_common.h"

namespace dc::ops {

void check_same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t) continue;
    if (!first) first = t;
    else if (t->device() != first->device())
      fail(op, "tensors are on different devices (", first->device().str(), " and ", t->device().str(), ")");
  }
}

void check_float(const char* op, const Tensor& t, const char* what) {
  if (!is_float(t.dtype)) fail(op, what, " must be a float tensor, got ", t.describe());
}

DType result_dtype(std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t) continue;
    if (!first) first = t;
    else if (t->dtype != first->dtype) return DType::F32;
  }
  return first ? first->dtype : DType::F32;
}

Tensor staged_f32(const Tensor& t, bool need_contiguous) {
  if (t.dtype == DType::F32 && (!need_contiguous || t.is_contiguous())) return t;
  Tensor out = Tensor::empty(t.shape, DType::F32, t.device());
  DC_DISPATCH(t.device(), copy, t, out);
  return out;
}

Tensor finish(Tensor r, DType dtype) {
  if (r.dtype == dtype) return r;
  return cast(r, dtype);
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      fail(op, "shapes ", shape_str(a), " and ", shape_str(b), " do not broadcast (dimension ", i,
           ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor broadcast_to(const Tensor& t, const Shape& shape) {
  const size_t n = shape.size(), off = n - t.shape.size();
  Shape strides(n, 0);
  for (size_t i = 0; i < t.shape.size(); ++i)
    strides[off + i] = t.shape[i] == 1 && shape[off + i] != 1 ? 0 : t.strides[i];
  return t.view(shape, strides);
}

namespace {

template <typename Src>
void convert_into(const Src* src, int64_t n, Tensor& host) {
  char* base = host.raw();
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(src[i]);
    switch (host.dtype) {
      case DType::F32: reinterpret_cast<float*>(base)[i] = float(v); break;
      case DType::F16: reinterpret_cast<uint16_t*>(base)[i] = f32_to_f16(float(v)); break;
      case DType::BF16: reinterpret_cast<uint16_t*>(base)[i] = f32_to_bf16(float(v)); break;
      case DType::I32: reinterpret_cast<int32_t*>(base)[i] = int32_t(v); break;
    }
  }
}

}  // namespace

Tensor from_host(const void* data, DType src_type, int64_t count, const Shape& shape, DType dtype,
                 Device device) {
  const int64_t n = checked_numel("tensor", shape);
  if (n != count)
    fail("tensor", "shape ", shape_str(shape), " holds ", n, " elements but ", count, " values were given");
  Tensor host = Tensor::empty(shape, dtype, Device{});
  if (src_type == dtype) {
    std::memcpy(host.raw(), data, size_t(n) * dtype_size(dtype));
  } else if (src_type == DType::F32) {
    convert_into(static_cast<const float*>(data), n, host);
  } else if (src_type == DType::I32) {
    convert_into(static_cast<const int32_t*>(data), n, host);
  } else {
    // Raw 16-bit data is only meaningful for its own dtype.
    fail("tensor", "16-bit raw values (Uint16Array) need dtype ", dtype_name(src_type), ", not ", dtype_name(dtype));
  }
  return device.is_cuda() ? to_device(host, device) : host;
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  DC_DISPATCH(device, fill, t, value);
  return t;
}

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  if (step == 0 || !std::isfinite(step) || !std::isfinite(start) || !std::isfinite(end))
    fail("arange", "start, end and step must be finite and step non-zero (got ", start, ", ", end, ", ", step, ")");
  const double count = std::ceil((end - start) / step);
  const int64_t n = count > 0 ? int64_t(count) : 0;
  Tensor host = Tensor::empty({n}, dtype, Device{});
  cpu::arange(host, start, step);
  return device.is_cuda() ? to_device(host, device) : host;
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  return clone(t);
}

Tensor clone(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape, t.dtype, t.device());
  DC_DISPATCH(t.device(), copy, t, out);
  return out;
}

Tensor cast(const Tensor& t, DType dtype) {
  if (t.dtype == dtype) return t;
  Tensor out = Tensor::empty(t.shape, dtype, t.device());
  DC_DISPATCH(t.device(), copy, t, out);
  return out;
}

Tensor to_device(const Tensor& t, Device device) {
  if (t.device() == device) return t;
#if DITCACHE_WITH_CUDA
  Tensor src = contiguous(t);
  if (device.is_cuda() && !src.device().is_cuda()) {
    Tensor out = Tensor::empty(src.shape, src.dtype, device);
    cuda::memcpy_h2d(out.raw(), src.raw(), src.nbytes(), device.index);
    return out;
  }
  if (!device.is_cuda() && src.device().is_cuda()) {
    Tensor out = Tensor::empty(src.shape, src.dtype, device);
    cuda::memcpy_d2h(out.raw(), src.raw(), src.nbytes(), src.device().index);
    return out;
  }
  // Between two GPUs: through the host keeps this simple and is rare.
  return to_device(to_device(src, Device{}), device);
#else
  fail("to", "this build has no CUDA support; cannot move ", t.describe(), " to ", device.str());
#endif
}

namespace {
// Gathers the elements of t into contiguous host memory in its own dtype.
Tensor host_contiguous(const Tensor& t) {
  Tensor c = contiguous(t);
  return c.device().is_cuda() ? to_device(c, Device{}) : c;
}
}  // namespace

void to_host_f32(const Tensor& t, float* dst) {
  Tensor h = host_contiguous(cast(t, t.dtype == DType::I32 ? DType::I32 : DType::F32));
  if (h.dtype == DType::F32) {
    std::memcpy(dst, h.raw(), h.nbytes());
  } else {
    const int32_t* p = h.ptr<int32_t>();
    for (int64_t i = 0; i < h.numel(); ++i) dst[i] = float(p[i]);
  }
}

void to_host_i32(const Tensor& t, int32_t* dst) {
  if (t.dtype != DType::I32) fail("toInt32Array", "tensor is ", t.describe(), "; cast it to int32 first");
  Tensor h = host_contiguous(t);
  std::memcpy(dst, h.raw(), h.nbytes());
}

void to_host_raw(const Tensor& t, void* dst) {
  Tensor h = host_contiguous(t);
  std::memcpy(dst, h.raw(), h.nbytes());
}

// ---- views ----

Tensor reshape(const Tensor& t, const Shape& requested) {
  Shape shape = requested;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) fail("reshape", "only one dimension can be -1 in ", shape_str(requested));
      infer = int(i);
    } else if (shape[i] < 0) {
      fail("reshape", "invalid shape ", shape_str(requested));
    } else {
      known *= shape[i];
    }
  }
  const int64_t n = t.numel();
  if (infer >= 0) {
    if (known == 0 || n % known != 0)
      fail("reshape", "cannot reshape ", shape_str(t.shape), " (", n, " elements) into ", shape_str(requested));
    shape[size_t(infer)] = n / known;
  }
  if (checked_numel("reshape", shape) != n)
    fail("reshape", "cannot reshape ", shape_str(t.shape), " (", n, " elements) into ", shape_str(requested));
  Tensor c = contiguous(t);
  return c.view(shape, Tensor::contiguous_strides(shape));
}

Tensor permute(const Tensor& t, const std::vector<int64_t>& dims) {
  const int nd = t.dim();
  if (int(dims.size()) != nd)
    fail("permute", "expected ", nd, " dimensions for a tensor of shape ", shape_str(t.shape), ", got ", dims.size());
  std::vector<bool> seen(static_cast<size_t>(nd), false);
  Shape shape(static_cast<size_t>(nd)), strides(static_cast<size_t>(nd));
  for (int i = 0; i < nd; ++i) {
    const int d = normalize_dim("permute", dims[size_t(i)], nd);
    if (seen[size_t(d)]) fail("permute", "dimension ", d, " appears twice");
    seen[size_t(d)] = true;
    shape[size_t(i)] = t.shape[size_t(d)];
    strides[size_t(i)] = t.strides[size_t(d)];
  }
  return t.view(shape, strides);
}

Tensor transpose(const Tensor& t, int64_t d0, int64_t d1) {
  const int a = normalize_dim("transpose", d0, t.dim()), b = normalize_dim("transpose", d1, t.dim());
  Shape shape = t.shape, strides = t.strides;
  std::swap(shape[size_t(a)], shape[size_t(b)]);
  std::swap(strides[size_t(a)], strides[size_t(b)]);
  return t.view(shape, strides);
}

Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step) {
  const int d = normalize_dim("slice", dim, t.dim());
  if (step <= 0) fail("slice", "step must be positive, got ", step);
  const int64_t size = t.shape[size_t(d)];
  // Python slicing: negative indices count from the end; out-of-range bounds clamp.
  auto clamp = [&](int64_t i) {
    if (i < 0) i += size;
    return std::min(std::max<int64_t>(i, 0), size);
  };
  const int64_t s = clamp(start), e = std::max(clamp(end), s);
  Shape shape = t.shape, strides = t.strides;
  shape[size_t(d)] = (e - s + step - 1) / step;
  strides[size_t(d)] = t.strides[size_t(d)] * step;
  return t.view(shape, strides, s * t.strides[size_t(d)]);
}

Tensor expand(const Tensor& t, const Shape& requested) {
  if (requested.size() < t.shape.size())
    fail("expand", "cannot expand ", shape_str(t.shape), " to fewer dimensions ", shape_str(requested));
  Shape shape = requested;
  const size_t off = shape.size() - t.shape.size();
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t have = i < off ? 1 : t.shape[i - off];
    if (shape[i] == -1) {
      if (i < off) fail("expand", "-1 is not allowed for a new leading dimension in ", shape_str(requested));
      shape[i] = have;
    }
    if (have != shape[i] && have != 1)
      fail("expand", "cannot expand ", shape_str(t.shape), " to ", shape_str(requested));
  }
  checked_numel("expand", shape);
  return broadcast_to(t, shape);
}

Tensor squeeze(const Tensor& t, int64_t dim) {
  const int d = normalize_dim("squeeze", dim, t.dim());
  if (t.shape[size_t(d)] != 1)
    fail("squeeze", "dimension ", dim, " of ", shape_str(t.shape), " has size ", t.shape[size_t(d)], ", not 1");
  Shape shape = t.shape, strides = t.strides;
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return t.view(shape, strides);
}

Tensor unsqueeze(const Tensor& t, int64_t dim) {
  const int d = normalize_dim("unsqueeze", dim, t.dim() + 1);
  if (t.dim() + 1 > kMaxDims) fail("unsqueeze", "at most ", kMaxDims, " dimensions are supported");
  Shape shape = t.shape, strides = t.strides;
  const int64_t st = d < t.dim() ? t.strides[size_t(d)] * t.shape[size_t(d)] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, st);
  return t.view(shape, strides);
}

std::vector<Tensor> split(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim) {
  const int d = normalize_dim("split", dim, t.dim());
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s < 0) fail("split", "negative size ", s);
    total += s;
  }
  if (total != t.shape[size_t(d)])
    fail("split", "sizes add up to ", total, " but dimension ", dim, " of ", shape_str(t.shape), " has ", t.shape[size_t(d)]);
  std::vector<Tensor> parts;
  int64_t at = 0;
  for (int64_t s : sizes) {
    parts.push_back(slice(t, d, at, at + s, 1));
    at += s;
  }
  return parts;
}

Tensor concat(const std::vector<Tensor>& ts, int64_t dim) {
  if (ts.empty()) fail("concat", "needs at least one tensor");
  const Tensor& first = ts[0];
  const int d = normalize_dim("concat", dim, first.dim());
  Shape shape = first.shape;
  int64_t total = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    if (t.dim() != first.dim())
      fail("concat", "tensor ", i, " has shape ", shape_str(t.shape), ", expected ", first.dim(), " dimensions like ", shape_str(first.shape));
    for (int k = 0; k < t.dim(); ++k)
      if (k != d && t.shape[size_t(k)] != first.shape[size_t(k)])
        fail("concat", "tensor ", i, " has shape ", shape_str(t.shape), ", which differs from ", shape_str(first.shape), " outside dimension ", d);
    if (t.device() != first.device())
      fail("concat", "tensors are on different devices (", first.device().str(), " and ", t.device().str(), ")");
    if (t.dtype != first.dtype)
      fail("concat", "tensor ", i, " is ", dtype_name(t.dtype), " but tensor 0 is ", dtype_name(first.dtype));
    total += t.shape[size_t(d)];
  }
  shape[size_t(d)] = total;
  Tensor out = Tensor::empty(shape, first.dtype, first.device());
  int64_t at = 0;
  for (const Tensor& t : ts) {
    const int64_t n = t.shape[size_t(d)];
    if (n > 0) {
      Tensor dst = slice(out, d, at, at + n, 1);
      DC_DISPATCH(out.device(), copy, t, dst);
    }
    at += n;
  }
  return out;
}

Tensor from_mapping(const std::shared_ptr<Storage>& mapping, size_t byte_offset, DType dtype,
                    const Shape& shape) {
  const int64_t n = checked_numel("fromMapping", shape);
  const size_t bytes = size_t(n) * dtype_size(dtype);
  if (byte_offset > mapping->bytes() || bytes > mapping->bytes() - byte_offset)
    fail("fromMapping", "bytes [", byte_offset, ", ", byte_offset + bytes, ") lie outside the ",
         mapping->bytes(), "-byte file");
  Tensor t;
  t.storage = mapping;
  t.byte_offset = byte_offset;
  t.dtype = dtype;
  t.shape = shape;
  t.strides = Tensor::contiguous_strides(shape);
  return t;
}

}  // namespace dc::ops
