// What the binding's files share: the type tags of the two handle classes, the per-addon data,
// error translation, the tensor and mapping handles' accessors and the argument readers. Each
// file holds one job: tensor_handle.cc, mapping_handle.cc, args.cc, op_functions.cc,
// runtime_functions.cc, module.cc (the module's entry).
#pragma once
#include <napi.h>

#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "../ops.h"

namespace dc::binding {

// Type tags keep a foreign object (or a Mapping passed as a Tensor) from being unwrapped.
inline constexpr napi_type_tag kTensorTag = {0x6469746361636865ULL, 0x54656e736f720001ULL};
inline constexpr napi_type_tag kMappingTag = {0x6469746361636865ULL, 0x4d617070696e6701ULL};

struct AddonData {
  Napi::FunctionReference tensor_ctor;
  Napi::FunctionReference mapping_ctor;
};

// Runs f, turning every C++ exception into the JS exception that says what went wrong.
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

// ---- handles

Napi::Function define_tensor_class(Napi::Env env);
// A new JS handle owning t.
Napi::Value wrap(Napi::Env env, Tensor t);
// The tensor of a handle carrying kTensorTag; an OpError once it was disposed.
const Tensor& tensor_of(const Napi::Object& handle, const char* op);

Napi::Function define_mapping_class(Napi::Env env);
Napi::Object wrap_mapping(Napi::Env env, std::shared_ptr<Storage> storage);
// The mapped file behind argument i; an OpError for anything but an open Mapping.
const std::shared_ptr<Storage>& arg_mapping(const Napi::CallbackInfo& info, size_t i, const char* op);

// ---- arguments: checked for type here (the op layer checks meaning), errors name op and argument

const Tensor& arg_tensor(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what);
std::optional<Tensor> arg_opt_tensor(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what);
double arg_number(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what);
int64_t to_int(double d, const char* op, const char* what);
int64_t arg_int(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what);
bool arg_bool(const Napi::CallbackInfo& info, size_t i);
std::string arg_string(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what);
std::vector<int64_t> arg_ints(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what);
Shape arg_shape(const Napi::CallbackInfo& info, size_t i, const char* op);
Device arg_device(const Napi::CallbackInfo& info, size_t i, const char* op);
DType arg_dtype(const Napi::CallbackInfo& info, size_t i, const char* op);

// ---- the module's functions

using Fn = Napi::Value (*)(const Napi::CallbackInfo&);
struct NamedFn {
  const char* name;
  Fn fn;
};
// The ops (op_functions.cc) and the runtime's information and settings (runtime_functions.cc).
std::vector<NamedFn> op_functions();
std::vector<NamedFn> runtime_functions();

#define DC_FN(name) Napi::Value name(const Napi::CallbackInfo& info)
#define DC_BODY(...) return guarded(info.Env(), [&]() -> Napi::Value { __VA_ARGS__ });

}  // namespace dc::binding
