// The N-API module's entry: the NativeTensor and NativeMapping classes and one function per op
// and per runtime setting. Every C++ exception becomes a JS exception (binding.h's guarded), so
// no input from JS can take the process down.
#include "binding.h"

namespace dc::binding {
namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  Napi::Function tensor = define_tensor_class(env);
  Napi::Function mapping = define_mapping_class(env);
  data->tensor_ctor = Napi::Persistent(tensor);
  data->mapping_ctor = Napi::Persistent(mapping);
  env.SetInstanceData<AddonData>(data);
  exports.Set("NativeTensor", tensor);
  exports.Set("NativeMapping", mapping);
  for (const auto& list : {op_functions(), runtime_functions()})
    for (const auto& [name, fn] : list) exports.Set(name, Napi::Function::New(env, fn, name));
  return exports;
}

}  // namespace
}  // namespace dc::binding

namespace {
Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return dc::binding::Init(env, exports); }
}  // namespace
NODE_API_MODULE(ditcache_native, InitModule)
