// The N-API face of the runtime: a Tensor handle class, a file Mapping class and one function
// per op. Arguments are checked here for type (the op layer checks meaning); every C++
// exception becomes a JS exception, so no input from JS can take the process down.
#include <napi.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <unordered_map>

#include "cpu/features.h"
#include "cpu/gemm.h"
#include "cpu/onednn.h"
#include "cpu/parallel.h"
#include "host_blocks.h"
#include "ops.h"
#if DITCACHE_WITH_CUDA
#include "cuda/cublas.h"
#include "cuda/runtime.h"
#endif

namespace dc {
namespace {

// Type tags keep a foreign object (or a Mapping passed as a Tensor) from being unwrapped.
const napi_type_tag kTensorTag = {0x6469746361636865ULL, 0x54656e736f720001ULL};
const napi_type_tag kMappingTag = {0x6469746361636865ULL, 0x4d617070696e6701ULL};

struct AddonData {
  Napi::FunctionReference tensor_ctor;
  Napi::FunctionReference mapping_ctor;
};

// ---------------------------------------------------------------- error translation

template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const OpError& e) {
    throw Napi::TypeError::New(env, e.what());
  } catch (const RuntimeFailure& e) {
    throw Napi::Error::New(env, e.what());
  } catch (const std::bad_alloc&) {
    throw Napi::RangeError::New(env, "out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("internal error: ") + e.what());
  }
}

// ---------------------------------------------------------------- Tensor handle

// The native half of one JS tensor handle. The handle holds it through a wrap whose reference the
// runtime owns, so dispose() can remove the wrap and free every native byte at once. Through
// ObjectWrap the C++ object and its wrap reference would outlive dispose() until the wrap's
// finaliser ran, and Node runs those only when the event loop turns: a synchronous loop of
// generations (no await) grew by about 300 bytes per op.
struct TensorBox {
  Tensor tensor;
  int64_t external_bytes = 0;  // told to V8 as external memory while the box lives
};

void release_box(napi_env env, TensorBox* box) {
  counters().live_tensors--;
  if (box->external_bytes) {
    int64_t ignored;
    napi_adjust_external_memory(env, -box->external_bytes, &ignored);
  }
  delete box;
}

// Garbage-collected handles that were never disposed.
void finalize_box(napi_env env, void* data, void* /*hint*/) { release_box(env, static_cast<TensorBox*>(data)); }

// The box of a handle; nullptr once it was disposed. `handle` must carry kTensorTag.
TensorBox* box_of(napi_env env, napi_value handle) {
  void* data = nullptr;
  return napi_unwrap(env, handle, &data) == napi_ok ? static_cast<TensorBox*>(data) : nullptr;
}

const Tensor& tensor_of(const Napi::Object& handle, const char* op) {
  TensorBox* box = box_of(handle.Env(), handle);
  if (!box) fail(op, "the tensor was disposed");
  return box->tensor;
}

// The handle a method or accessor was called on (`this`), checked to be a tensor handle.
Napi::Object this_handle(const Napi::CallbackInfo& info, const char* op) {
  Napi::Value self = info.This();
  if (!self.IsObject() || !self.As<Napi::Object>().CheckTypeTag(&kTensorTag)) fail(op, "called on something that is not a Tensor");
  return self.As<Napi::Object>();
}

class TensorHandle {
 public:
  static Napi::Function Define(Napi::Env env) {
    Napi::Function ctor = Napi::Function::New<Construct>(env, "NativeTensor");
    ctor.Get("prototype").As<Napi::Object>().DefineProperties({
        Napi::PropertyDescriptor::Accessor<Shape>("shape"),
        Napi::PropertyDescriptor::Accessor<Strides>("strides"),
        Napi::PropertyDescriptor::Accessor<DTypeName>("dtype"),
        Napi::PropertyDescriptor::Accessor<DeviceName>("device"),
        Napi::PropertyDescriptor::Accessor<ByteOffset>("byteOffset"),
        Napi::PropertyDescriptor::Accessor<IsContiguous>("isContiguous"),
        Napi::PropertyDescriptor::Accessor<Disposed>("disposed"),
        Napi::PropertyDescriptor::Accessor<ReadOnly>("readOnly"),
        Napi::PropertyDescriptor::Value("dispose", Napi::Function::New<Dispose>(env, "dispose")),
        Napi::PropertyDescriptor::Value("toFloat32Array", Napi::Function::New<ToFloat32Array>(env, "toFloat32Array")),
        Napi::PropertyDescriptor::Value("toInt32Array", Napi::Function::New<ToInt32Array>(env, "toInt32Array")),
        Napi::PropertyDescriptor::Value("toBytes", Napi::Function::New<ToBytes>(env, "toBytes")),
    });
    return ctor;
  }

  static Napi::Object Create(Napi::Env env, Tensor t) {
    auto* data = env.GetInstanceData<AddonData>();
    return data->tensor_ctor.New({Napi::External<Tensor>::New(env, &t)});
  }

 private:
  static Napi::Value Construct(const Napi::CallbackInfo& info) {
    if (!info.IsConstructCall() || info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeTensor cannot be constructed directly; use tensor() or an op");
    Napi::Object self = info.This().As<Napi::Object>();
    auto* box = new TensorBox{std::move(*info[0].As<Napi::External<Tensor>>().Data())};
    // No result reference: the runtime owns the wrap, and napi_remove_wrap frees it.
    if (napi_wrap(info.Env(), self, box, finalize_box, nullptr, nullptr) != napi_ok) {
      delete box;
      throw Napi::Error::New(info.Env(), "internal error: cannot wrap a tensor handle");
    }
    counters().live_tensors++;
    self.TypeTag(&kTensorTag);
    // A fresh allocation owned by this handle alone: tell V8, so GC pressure reflects it.
    const Tensor& t = box->tensor;
    if (t.storage.use_count() == 1 && t.storage->kind() == Storage::Kind::Host) {
      box->external_bytes = int64_t(t.storage->bytes());
      Napi::MemoryManagement::AdjustExternalMemory(info.Env(), box->external_bytes);
    }
    return info.Env().Undefined();
  }

  static Napi::Array IntArray(Napi::Env env, const dc::Shape& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a[uint32_t(i)] = Napi::Number::New(env, double(v[i]));
    return a;
  }
  // A getter's or method's body on the handle's tensor, with its errors translated.
  template <typename F>
  static Napi::Value on_tensor(const Napi::CallbackInfo& info, const char* op, F&& f) {
    return guarded(info.Env(), [&]() -> Napi::Value { return f(tensor_of(this_handle(info, op), op)); });
  }

  static Napi::Value Shape(const Napi::CallbackInfo& info) {
    return on_tensor(info, "shape", [&](const Tensor& t) -> Napi::Value { return IntArray(info.Env(), t.shape); });
  }
  static Napi::Value Strides(const Napi::CallbackInfo& info) {
    return on_tensor(info, "strides", [&](const Tensor& t) -> Napi::Value { return IntArray(info.Env(), t.strides); });
  }
  static Napi::Value DTypeName(const Napi::CallbackInfo& info) {
    return on_tensor(info, "dtype", [&](const Tensor& t) -> Napi::Value { return Napi::String::New(info.Env(), dtype_name(t.dtype)); });
  }
  static Napi::Value DeviceName(const Napi::CallbackInfo& info) {
    return on_tensor(info, "device", [&](const Tensor& t) -> Napi::Value { return Napi::String::New(info.Env(), t.device().str()); });
  }
  static Napi::Value ByteOffset(const Napi::CallbackInfo& info) {
    return on_tensor(info, "byteOffset", [&](const Tensor& t) -> Napi::Value { return Napi::Number::New(info.Env(), double(t.byte_offset)); });
  }
  static Napi::Value IsContiguous(const Napi::CallbackInfo& info) {
    return on_tensor(info, "isContiguous", [&](const Tensor& t) -> Napi::Value { return Napi::Boolean::New(info.Env(), t.is_contiguous()); });
  }
  static Napi::Value ReadOnly(const Napi::CallbackInfo& info) {
    return on_tensor(info, "readOnly", [&](const Tensor& t) -> Napi::Value { return Napi::Boolean::New(info.Env(), !t.storage->writable()); });
  }
  static Napi::Value Disposed(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      return Napi::Boolean::New(info.Env(), box_of(info.Env(), this_handle(info, "disposed")) == nullptr);
    });
  }
  // Removes the wrap and frees the tensor now; disposing twice is a no-op.
  static Napi::Value Dispose(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Object self = this_handle(info, "dispose");
      void* data = nullptr;
      if (napi_remove_wrap(info.Env(), self, &data) == napi_ok) release_box(info.Env(), static_cast<TensorBox*>(data));
      return info.Env().Undefined();
    });
  }
  static Napi::Value ToFloat32Array(const Napi::CallbackInfo& info) {
    return on_tensor(info, "toFloat32Array", [&](const Tensor& t) -> Napi::Value {
      Napi::Float32Array out = Napi::Float32Array::New(info.Env(), size_t(t.numel()));
      ops::to_host_f32(t, out.Data());
      return out;
    });
  }
  static Napi::Value ToInt32Array(const Napi::CallbackInfo& info) {
    return on_tensor(info, "toInt32Array", [&](const Tensor& t) -> Napi::Value {
      Napi::Int32Array out = Napi::Int32Array::New(info.Env(), size_t(t.numel()));
      ops::to_host_i32(t, out.Data());
      return out;
    });
  }
  static Napi::Value ToBytes(const Napi::CallbackInfo& info) {
    return on_tensor(info, "toBytes", [&](const Tensor& t) -> Napi::Value {
      Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(info.Env(), t.nbytes());
      ops::to_host_raw(t, out.Data());
      return out;
    });
  }
};

// ---------------------------------------------------------------- Mapping handle

class MappingWrap : public Napi::ObjectWrap<MappingWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeMapping",
                       {InstanceAccessor<&MappingWrap::ByteLength>("byteLength"),
                        InstanceMethod<&MappingWrap::Read>("read"),
                        InstanceMethod<&MappingWrap::Close>("close")});
  }
  static Napi::Object Create(Napi::Env env, std::shared_ptr<Storage> s) {
    auto* data = env.GetInstanceData<AddonData>();
    return data->mapping_ctor.New({Napi::External<std::shared_ptr<Storage>>::New(env, &s)});
  }
  explicit MappingWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MappingWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeMapping cannot be constructed directly; use mapFile()");
    storage_ = *info[0].As<Napi::External<std::shared_ptr<Storage>>>().Data();
    info.This().As<Napi::Object>().TypeTag(&kMappingTag);
  }
  const std::shared_ptr<Storage>& Get(const char* op) const {
    if (!storage_) fail(op, "the mapping was closed");
    return storage_;
  }

 private:
  Napi::Value ByteLength(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return Napi::Number::New(info.Env(), double(Get("byteLength")->bytes())); });
  }
  // Copies bytes [offset, offset + length) out of the file (for headers).
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info) {
    storage_.reset();  // tensors viewing the file keep it mapped until they are disposed
    return info.Env().Undefined();
  }
  std::shared_ptr<Storage> storage_;
};

// ---------------------------------------------------------------- argument parsing

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
#if DITCACHE_WITH_CUDA
  if (d.is_cuda()) {
    const auto& st = cuda::status();
    if (!st.available) fail(op, "device ", d.str(), " is not available: ", st.reason);
    if (d.index >= int(st.devices.size())) fail(op, "device ", d.str(), " does not exist (", st.devices.size(), " CUDA devices)");
  }
#else
  if (d.is_cuda()) fail(op, "this build of @ditcache/cuda-runtime has no CUDA support (asked for ", d.str(), ")");
#endif
  return d;
}

DType arg_dtype(const Napi::CallbackInfo& info, size_t i, const char* op) {
  return parse_dtype(arg_string(info, i, op, "dtype"));
}

Napi::Value MappingWrap::Read(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const auto& s = Get("read");
    const int64_t off = arg_int(info, 0, "read", "offset"), len = arg_int(info, 1, "read", "length");
    if (off < 0 || len < 0 || uint64_t(off) > s->bytes() || uint64_t(len) > s->bytes() - uint64_t(off))
      fail("read", "bytes [", off, ", ", off + len, ") lie outside the ", s->bytes(), "-byte file");
    return Napi::Buffer<uint8_t>::Copy(info.Env(), static_cast<const uint8_t*>(s->data()) + off, size_t(len));
  });
}

// ---------------------------------------------------------------- op functions

using Fn = Napi::Value (*)(const Napi::CallbackInfo&);
Napi::Value wrap(Napi::Env env, Tensor t) { return TensorHandle::Create(env, std::move(t)); }

#define DC_FN(name) Napi::Value name(const Napi::CallbackInfo& info)
#define DC_BODY(...) return guarded(info.Env(), [&]() -> Napi::Value { __VA_ARGS__ });

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

DC_FN(MapFile) { DC_BODY(return MappingWrap::Create(info.Env(), Storage::map_file(arg_string(info, 0, "mapFile", "path")));) }
DC_FN(FromMapping) {
  DC_BODY(
    const char* op = "fromMapping";
    if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().CheckTypeTag(&kMappingTag)) fail(op, "mapping must be a Mapping");
    const auto& storage = MappingWrap::Unwrap(info[0].As<Napi::Object>())->Get(op);
    const int64_t off = arg_int(info, 1, op, "byteOffset");
    if (off < 0) fail(op, "byteOffset must be non-negative");
    return wrap(info.Env(), ops::from_mapping(storage, size_t(off), arg_dtype(info, 2, op), arg_shape(info, 3, op)));)
}

// ---------------------------------------------------------------- runtime information

DC_FN(MemoryStats) {
  DC_BODY(
    Napi::Object o = Napi::Object::New(info.Env());
    auto& c = counters();
    o.Set("liveTensors", double(c.live_tensors.load()));
    o.Set("hostBytes", double(c.host_bytes.load()));
    o.Set("deviceBytes", double(c.device_bytes.load()));
    o.Set("mappedBytes", double(c.mapped_bytes.load()));
    o.Set("storages", double(c.storages.load()));
    return o;)
}

DC_FN(Devices) {
  DC_BODY(
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    Napi::Object cpuInfo = Napi::Object::New(env);
    cpuInfo.Set("name", cpu::cpu_model_name());
    cpuInfo.Set("threads", cpu::num_threads());
    cpuInfo.Set("isa", cpu::isa_name(cpu::active_isa()));
    cpuInfo.Set("detectedIsa", cpu::isa_name(cpu::detected_isa()));
    cpuInfo.Set("gemm", cpu::gemm_backend() == cpu::GemmBackend::Blas ? "blas" : "builtin");
    cpuInfo.Set("blas", cpu::blas_name());
    cpuInfo.Set("blasLoaded", cpu::blas_available());
    cpuInfo.Set("gemm16", cpu::half_gemm_backend() == cpu::HalfGemmBackend::OneDnn ? "onednn" : "builtin");
    cpuInfo.Set("onednn", cpu::onednn_name());
    cpuInfo.Set("onednnLoaded", cpu::onednn_available());
    o.Set("cpu", cpuInfo);
    Napi::Object cu = Napi::Object::New(env);
#if DITCACHE_WITH_CUDA
    const auto& st = cuda::status();
    cu.Set("compiled", true);
    cu.Set("available", st.available);
    cu.Set("reason", st.reason);
    cu.Set("driverVersion", st.driver_version);
    cu.Set("runtimeVersion", st.runtime_version);
    cu.Set("gemm", st.gemm);
    cu.Set("tf32", cuda::allow_tf32());
    Napi::Array list = Napi::Array::New(env, st.devices.size());
    for (size_t i = 0; i < st.devices.size(); ++i) {
      const auto& d = st.devices[i];
      Napi::Object e = Napi::Object::New(env);
      e.Set("device", "cuda:" + std::to_string(d.index));
      e.Set("name", d.name);
      e.Set("totalMemory", double(d.total_memory));
      e.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      e.Set("multiprocessors", d.multiprocessors);
      list[uint32_t(i)] = e;
    }
    cu.Set("devices", list);
#else
    cu.Set("compiled", false);
    cu.Set("available", false);
    cu.Set("reason", "this build has no CUDA support (it was compiled without nvcc, or with DITCACHE_WITH_CUDA=OFF)");
    cu.Set("devices", Napi::Array::New(env, 0));
#endif
    o.Set("cuda", cu);
    return o;)
}

DC_FN(BuildInfo) {
  DC_BODY(
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("blas", DITCACHE_BUILD_BLAS);
    o.Set("cuda", DITCACHE_BUILD_CUDA);
    o.Set("onednn", DITCACHE_BUILD_ONEDNN);
    o.Set("napiVersion", NAPI_VERSION);
    return o;)
}

DC_FN(SetNumThreads) {
  DC_BODY(
    const int64_t n = arg_int(info, 0, "setNumThreads", "threads");
    if (n < 0 || n > 256) fail("setNumThreads", "threads must be 0 (automatic) .. 256, got ", n);
    cpu::set_num_threads(int(n));
    return Napi::Number::New(info.Env(), cpu::num_threads());)
}
DC_FN(NumThreads) { return Napi::Number::New(info.Env(), cpu::num_threads()); }
DC_FN(SetGemmBackend) {
  DC_BODY(
    const std::string b = arg_string(info, 0, "setGemmBackend", "backend");
    if (b == "blas") cpu::set_gemm_backend(cpu::GemmBackend::Blas);
    else if (b == "builtin") cpu::set_gemm_backend(cpu::GemmBackend::Builtin);
    else fail("setGemmBackend", "unknown backend '", b, "' (expected 'blas' or 'builtin')");
    return info.Env().Undefined();)
}
DC_FN(GemmBackendName) {
  return Napi::String::New(info.Env(), cpu::gemm_backend() == cpu::GemmBackend::Blas ? "blas" : "builtin");
}
DC_FN(HostCachedBytes) { return Napi::Number::New(info.Env(), double(host_cached_bytes())); }
DC_FN(SetHalfGemmBackend) {
  DC_BODY(
    const std::string b = arg_string(info, 0, "setHalfGemmBackend", "backend");
    if (b == "onednn") cpu::set_half_gemm_backend(cpu::HalfGemmBackend::OneDnn);
    else if (b == "builtin") cpu::set_half_gemm_backend(cpu::HalfGemmBackend::Builtin);
    else fail("setHalfGemmBackend", "unknown backend '", b, "' (expected 'onednn' or 'builtin')");
    return info.Env().Undefined();)
}
DC_FN(HalfGemmBackendName) {
  return Napi::String::New(info.Env(), cpu::half_gemm_backend() == cpu::HalfGemmBackend::OneDnn ? "onednn" : "builtin");
}
DC_FN(SetCpuIsa) {
  DC_BODY(cpu::set_isa(cpu::parse_isa(arg_string(info, 0, "setCpuIsa", "isa"))); return info.Env().Undefined();)
}
DC_FN(CpuIsa) { return Napi::String::New(info.Env(), cpu::isa_name(cpu::active_isa())); }
#if DITCACHE_WITH_CUDA
void set_tf32(bool on) { cuda::set_allow_tf32(on); }
bool tf32() { return cuda::allow_tf32(); }
#else
// Without CUDA the switch has nothing to act on, but it still reads back what was set.
std::atomic<bool> no_cuda_tf32{false};
void set_tf32(bool on) { no_cuda_tf32 = on; }
bool tf32() { return no_cuda_tf32; }
#endif
DC_FN(SetAllowTf32) {
  DC_BODY(
    if (info.Length() < 1 || !info[0].IsBoolean()) fail("setAllowTf32", "expects true or false");
    set_tf32(info[0].As<Napi::Boolean>().Value());
    return info.Env().Undefined();)
}
DC_FN(AllowTf32) { return Napi::Boolean::New(info.Env(), tf32()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  {
    auto* data = new AddonData();
    Napi::Function tensor = TensorHandle::Define(env);
    Napi::Function mapping = MappingWrap::Define(env);
    data->tensor_ctor = Napi::Persistent(tensor);
    data->mapping_ctor = Napi::Persistent(mapping);
    env.SetInstanceData<AddonData>(data);
    exports.Set("NativeTensor", tensor);
    exports.Set("NativeMapping", mapping);
    const std::pair<const char*, Fn> fns[] = {
        {"fromArray", FromArray}, {"full", Full}, {"arange", Arange}, {"to", To}, {"cast", Cast},
        {"contiguous", Contiguous}, {"clone", Clone}, {"reshape", Reshape}, {"permute", Permute},
        {"transpose", Transpose}, {"slice", Slice}, {"expand", Expand}, {"squeeze", Squeeze},
        {"unsqueeze", Unsqueeze}, {"split", Split}, {"concat", Concat}, {"binary", Binary},
        {"unary", Unary}, {"reduce", Reduce}, {"meanAbs", MeanAbs}, {"relL1", RelL1},
        {"softmax", Softmax}, {"layerNorm", LayerNorm}, {"rmsNorm", RmsNorm}, {"groupNorm", GroupNorm},
        {"linear", Linear}, {"matmul", Matmul}, {"attention", Attention}, {"rope", Rope},
        {"embedding", Embedding}, {"conv2d", Conv2d}, {"conv3d", Conv3d}, {"topk", Topk},
        {"upsampleNearest2d", UpsampleNearest2d},
        {"mapFile", MapFile}, {"fromMapping", FromMapping}, {"memoryStats", MemoryStats}, {"hostCachedBytes", HostCachedBytes},
        {"devices", Devices}, {"buildInfo", BuildInfo}, {"setNumThreads", SetNumThreads},
        {"numThreads", NumThreads}, {"setGemmBackend", SetGemmBackend}, {"gemmBackend", GemmBackendName},
        {"setHalfGemmBackend", SetHalfGemmBackend}, {"halfGemmBackend", HalfGemmBackendName},
        {"setCpuIsa", SetCpuIsa}, {"cpuIsa", CpuIsa}, {"setAllowTf32", SetAllowTf32}, {"allowTf32", AllowTf32}};
    for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
  }
  return exports;
}

}  // namespace
}  // namespace dc

namespace {
Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return dc::Init(env, exports); }
}  // namespace
NODE_API_MODULE(ditcache_native, InitModule)
