// The JS tensor handle: a NativeTensor object whose wrap owns one Tensor, with the accessors and
// conversions the TypeScript Tensor class reads.
#include "binding.h"

namespace dc::binding {
namespace {

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

}  // namespace

const Tensor& tensor_of(const Napi::Object& handle, const char* op) {
  TensorBox* box = box_of(handle.Env(), handle);
  if (!box) fail(op, "the tensor was disposed");
  return box->tensor;
}

Napi::Function define_tensor_class(Napi::Env env) { return TensorHandle::Define(env); }

Napi::Value wrap(Napi::Env env, Tensor t) {
  return env.GetInstanceData<AddonData>()->tensor_ctor.New({Napi::External<Tensor>::New(env, &t)});
}

}  // namespace dc::binding
