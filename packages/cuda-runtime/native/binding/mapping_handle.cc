// The JS handle of a memory-mapped file: NativeMapping, from which weight tensors are viewed
// without copying; closing it leaves the tensors viewing the file valid.
#include "binding.h"

namespace dc::binding {
namespace {

class MappingWrap : public Napi::ObjectWrap<MappingWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeMapping",
                       {InstanceAccessor<&MappingWrap::ByteLength>("byteLength"),
                        InstanceMethod<&MappingWrap::Read>("read"),
                        InstanceMethod<&MappingWrap::Close>("close")});
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

Napi::Value MappingWrap::Read(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const auto& s = Get("read");
    const int64_t off = arg_int(info, 0, "read", "offset"), len = arg_int(info, 1, "read", "length");
    if (off < 0 || len < 0 || uint64_t(off) > s->bytes() || uint64_t(len) > s->bytes() - uint64_t(off))
      fail("read", "bytes [", off, ", ", off + len, ") lie outside the ", s->bytes(), "-byte file");
    return Napi::Buffer<uint8_t>::Copy(info.Env(), static_cast<const uint8_t*>(s->data()) + off, size_t(len));
  });
}

}  // namespace

Napi::Function define_mapping_class(Napi::Env env) { return MappingWrap::Define(env); }

Napi::Object wrap_mapping(Napi::Env env, std::shared_ptr<Storage> storage) {
  return env.GetInstanceData<AddonData>()->mapping_ctor.New({Napi::External<std::shared_ptr<Storage>>::New(env, &storage)});
}

const std::shared_ptr<Storage>& arg_mapping(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (i >= info.Length() || !info[i].IsObject() || !info[i].As<Napi::Object>().CheckTypeTag(&kMappingTag)) fail(op, "mapping must be a Mapping");
  return MappingWrap::Unwrap(info[i].As<Napi::Object>())->Get(op);
}

}  // namespace dc::binding
