// The runtime's information and settings as JS functions: memory counters, devices, build
// options, threads, kernel ISA, GEMM backends and TF32 (all through runtime_settings.h).
#include "../host_blocks.h"
#include "../runtime_settings.h"
#include "binding.h"

namespace dc::binding {
namespace {

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
DC_FN(HostCachedBytes) { return Napi::Number::New(info.Env(), double(host_cached_bytes())); }

Napi::Object cpu_object(Napi::Env env) {
  const settings::CpuReport r = settings::cpu_report();
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", r.name);
  o.Set("threads", r.threads);
  o.Set("isa", r.isa);
  o.Set("detectedIsa", r.detected_isa);
  o.Set("gemm", r.gemm);
  o.Set("blas", r.blas);
  o.Set("blasLoaded", r.blas_loaded);
  o.Set("gemm16", r.gemm16);
  o.Set("onednn", r.onednn);
  o.Set("onednnLoaded", r.onednn_loaded);
  return o;
}

Napi::Object cuda_object(Napi::Env env) {
  const settings::CudaReport r = settings::cuda_report();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", r.compiled);
  o.Set("available", r.available);
  o.Set("reason", r.reason);
  if (r.compiled) {
    o.Set("driverVersion", r.driver_version);
    o.Set("runtimeVersion", r.runtime_version);
    o.Set("gemm", r.gemm);
    o.Set("tf32", r.tf32);
  }
  Napi::Array list = Napi::Array::New(env, r.devices.size());
  for (size_t i = 0; i < r.devices.size(); ++i) {
    const auto& d = r.devices[i];
    Napi::Object e = Napi::Object::New(env);
    e.Set("device", "cuda:" + std::to_string(d.index));
    e.Set("name", d.name);
    e.Set("totalMemory", d.total_memory);
    e.Set("computeCapability", d.compute_capability);
    e.Set("multiprocessors", d.multiprocessors);
    list[uint32_t(i)] = e;
  }
  o.Set("devices", list);
  return o;
}

DC_FN(Devices) {
  DC_BODY(
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("cpu", cpu_object(info.Env()));
    o.Set("cuda", cuda_object(info.Env()));
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
  DC_BODY(return Napi::Number::New(info.Env(), settings::set_num_threads(arg_int(info, 0, "setNumThreads", "threads")));)
}
DC_FN(NumThreads) { return Napi::Number::New(info.Env(), settings::num_threads()); }
DC_FN(SetGemmBackend) {
  DC_BODY(settings::set_gemm_backend(arg_string(info, 0, "setGemmBackend", "backend")); return info.Env().Undefined();)
}
DC_FN(GemmBackendName) { return Napi::String::New(info.Env(), settings::gemm_backend()); }
DC_FN(SetHalfGemmBackend) {
  DC_BODY(settings::set_half_gemm_backend(arg_string(info, 0, "setHalfGemmBackend", "backend")); return info.Env().Undefined();)
}
DC_FN(HalfGemmBackendName) { return Napi::String::New(info.Env(), settings::half_gemm_backend()); }
DC_FN(SetCpuIsa) {
  DC_BODY(settings::set_cpu_isa(arg_string(info, 0, "setCpuIsa", "isa")); return info.Env().Undefined();)
}
DC_FN(CpuIsa) { return Napi::String::New(info.Env(), settings::cpu_isa()); }
DC_FN(SetAllowTf32) {
  DC_BODY(
    if (info.Length() < 1 || !info[0].IsBoolean()) fail("setAllowTf32", "expects true or false");
    settings::set_allow_tf32(info[0].As<Napi::Boolean>().Value());
    return info.Env().Undefined();)
}
DC_FN(AllowTf32) { return Napi::Boolean::New(info.Env(), settings::allow_tf32()); }

}  // namespace

std::vector<NamedFn> runtime_functions() {
  return {{"memoryStats", MemoryStats}, {"hostCachedBytes", HostCachedBytes}, {"devices", Devices},
          {"buildInfo", BuildInfo}, {"setNumThreads", SetNumThreads}, {"numThreads", NumThreads},
          {"setGemmBackend", SetGemmBackend}, {"gemmBackend", GemmBackendName},
          {"setHalfGemmBackend", SetHalfGemmBackend}, {"halfGemmBackend", HalfGemmBackendName},
          {"setCpuIsa", SetCpuIsa}, {"cpuIsa", CpuIsa}, {"setAllowTf32", SetAllowTf32}, {"allowTf32", AllowTf32}};
}

}  // namespace dc::binding
