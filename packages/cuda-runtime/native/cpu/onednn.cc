#include "onednn.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "../common.h"

#if DITCACHE_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

namespace dc::cpu {
namespace {

#if DITCACHE_WITH_ONEDNN

// The oneDNN 2.x C API, resolved from libdnnl.so.2 (the 3.x API differs, and is a later step).
struct Api {
#define DC_DNNL_FN(name) decltype(&::name) name = nullptr;
  DC_DNNL_FN(dnnl_engine_create)
  DC_DNNL_FN(dnnl_stream_create)
  DC_DNNL_FN(dnnl_stream_wait)
  DC_DNNL_FN(dnnl_memory_desc_init_by_strides)
  DC_DNNL_FN(dnnl_matmul_desc_init)
  DC_DNNL_FN(dnnl_primitive_desc_create)
  DC_DNNL_FN(dnnl_primitive_desc_destroy)
  DC_DNNL_FN(dnnl_primitive_create)
  DC_DNNL_FN(dnnl_primitive_destroy)
  DC_DNNL_FN(dnnl_memory_create)
  DC_DNNL_FN(dnnl_memory_destroy)
  DC_DNNL_FN(dnnl_primitive_execute)
  DC_DNNL_FN(dnnl_get_effective_cpu_isa)
  DC_DNNL_FN(dnnl_version)
#undef DC_DNNL_FN
  dnnl_engine_t engine = nullptr;
  dnnl_stream_t stream = nullptr;
  std::string description;
  bool amx = false;
};

struct Loaded {
  Api api;
  bool ok = false;
  std::string absence;
};

const char* isa_text(dnnl_cpu_isa_t isa) {
  if (isa >= dnnl_cpu_isa_avx512_core_amx) return "avx512_core_amx";
  if (isa >= dnnl_cpu_isa_avx512_core_bf16) return "avx512_core_bf16";
  if (isa >= dnnl_cpu_isa_avx512_core) return "avx512_core";
  if (isa >= dnnl_cpu_isa_avx2) return "avx2";
  return "sse41 or none";
}

Loaded load() {
  Loaded l;
  if (const char* env = std::getenv("DITCACHE_GEMM16"); env && std::string(env) == "builtin") {
    l.absence = "not loaded (DITCACHE_GEMM16=builtin)";
    return l;
  }
  const char* path = std::getenv("DITCACHE_ONEDNN_PATH");
  const std::string file = path ? path : "libdnnl.so.2";
  // oneDNN's OpenMP threads would otherwise spin for milliseconds after each product, taking
  // the cores from the runtime's own pool in the element-wise ops that follow. OpenMP reads the
  // policy when it loads (here, with oneDNN); the environment is restored at once, so that
  // processes this one starts (a PyTorch to compare with, say) keep their own default.
  const bool policy_set = std::getenv("OMP_WAIT_POLICY") != nullptr;
  if (!policy_set) setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
  void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!policy_set) unsetenv("OMP_WAIT_POLICY");
  if (!h) {
    l.absence = "no oneDNN 2.x found (" + std::string(dlerror()) + "; set DITCACHE_ONEDNN_PATH to libdnnl.so.2)";
    return l;
  }
  Api& a = l.api;
  bool all = true;
#define DC_DNNL_RESOLVE(name) all = all && (a.name = reinterpret_cast<decltype(a.name)>(dlsym(h, #name)));
  DC_DNNL_RESOLVE(dnnl_engine_create)
  DC_DNNL_RESOLVE(dnnl_stream_create)
  DC_DNNL_RESOLVE(dnnl_stream_wait)
  DC_DNNL_RESOLVE(dnnl_memory_desc_init_by_strides)
  DC_DNNL_RESOLVE(dnnl_matmul_desc_init)
  DC_DNNL_RESOLVE(dnnl_primitive_desc_create)
  DC_DNNL_RESOLVE(dnnl_primitive_desc_destroy)
  DC_DNNL_RESOLVE(dnnl_primitive_create)
  DC_DNNL_RESOLVE(dnnl_primitive_destroy)
  DC_DNNL_RESOLVE(dnnl_memory_create)
  DC_DNNL_RESOLVE(dnnl_memory_destroy)
  DC_DNNL_RESOLVE(dnnl_primitive_execute)
  DC_DNNL_RESOLVE(dnnl_get_effective_cpu_isa)
  DC_DNNL_RESOLVE(dnnl_version)
#undef DC_DNNL_RESOLVE
  if (!all) {
    l.absence = file + " lacks the oneDNN 2.x matmul API";
    return l;
  }
  if (a.dnnl_engine_create(&a.engine, dnnl_cpu, 0) != dnnl_success ||
      a.dnnl_stream_create(&a.stream, a.engine, dnnl_stream_default_flags) != dnnl_success) {
    l.absence = file + ": could not create a CPU engine";
    return l;
  }
  const dnnl_version_t* v = a.dnnl_version();
  const dnnl_cpu_isa_t isa = a.dnnl_get_effective_cpu_isa();
  a.amx = isa >= dnnl_cpu_isa_avx512_core_amx;
  Dl_info info{};
  const bool located = dladdr(reinterpret_cast<void*>(a.dnnl_version), &info) != 0 && info.dli_fname;
  a.description = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
                  " (ISA " + isa_text(isa) + ", " + (located ? info.dli_fname : file) + ")";
  l.ok = true;
  return l;  // the library stays loaded for the life of the process
}

const Loaded& loaded() {
  static const Loaded l = load();
  return l;
}

// One matmul: src (batch, m, k), weights (batch, k, n), optional bias (1, 1, n) float32, dst
// (batch, m, n) 16-bit or float32, all described by strides (transposes read in place).
bool run_matmul(const HalfGemmArgs& g) {
  const Api& a = loaded().api;
  const dnnl_data_type_t in = g.dtype == DType::BF16 ? dnnl_bf16 : dnnl_f16;
  const int64_t batch = g.batch;
  dnnl_dims_t src_dims = {batch, g.m, g.k}, src_strides = {g.stride_a, g.trans_a ? 1 : g.lda, g.trans_a ? g.lda : 1};
  dnnl_dims_t w_dims = {batch, g.k, g.n}, w_strides = {g.stride_b, g.trans_b ? 1 : g.ldb, g.trans_b ? g.ldb : 1};
  dnnl_dims_t dst_dims = {batch, g.m, g.n}, dst_strides = {g.stride_c, g.ldc, 1};
  dnnl_dims_t bias_dims = {1, 1, g.n}, bias_strides = {g.n, g.n, 1};
  if (batch == 1) src_strides[0] = w_strides[0] = dst_strides[0] = g.m * g.n;  // unused, must be valid
  dnnl_memory_desc_t src_md, w_md, dst_md, bias_md;
  if (a.dnnl_memory_desc_init_by_strides(&src_md, 3, src_dims, in, src_strides) != dnnl_success ||
      a.dnnl_memory_desc_init_by_strides(&w_md, 3, w_dims, in, w_strides) != dnnl_success ||
      a.dnnl_memory_desc_init_by_strides(&dst_md, 3, dst_dims, g.c16 ? in : dnnl_f32, dst_strides) != dnnl_success ||
      (g.bias && a.dnnl_memory_desc_init_by_strides(&bias_md, 3, bias_dims, dnnl_f32, bias_strides) != dnnl_success))
    return false;
  dnnl_matmul_desc_t desc;
  if (a.dnnl_matmul_desc_init(&desc, &src_md, &w_md, g.bias ? &bias_md : nullptr, &dst_md) != dnnl_success) return false;
  dnnl_primitive_desc_t pd = nullptr;
  if (a.dnnl_primitive_desc_create(&pd, &desc, nullptr, a.engine, nullptr) != dnnl_success) return false;
  dnnl_primitive_t prim = nullptr;
  const bool made = a.dnnl_primitive_create(&prim, pd) == dnnl_success;
  a.dnnl_primitive_desc_destroy(pd);
  if (!made) return false;
  dnnl_memory_t src = nullptr, w = nullptr, dst = nullptr, bias = nullptr;
  bool ok = a.dnnl_memory_create(&src, &src_md, a.engine, const_cast<uint16_t*>(g.a)) == dnnl_success &&
            a.dnnl_memory_create(&w, &w_md, a.engine, const_cast<uint16_t*>(g.b)) == dnnl_success &&
            a.dnnl_memory_create(&dst, &dst_md, a.engine, g.c16 ? static_cast<void*>(g.c16) : static_cast<void*>(g.c)) == dnnl_success &&
            (!g.bias || a.dnnl_memory_create(&bias, &bias_md, a.engine, const_cast<float*>(g.bias)) == dnnl_success);
  if (ok) {
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}, {DNNL_ARG_BIAS, bias}};
    ok = a.dnnl_primitive_execute(prim, a.stream, g.bias ? 4 : 3, args) == dnnl_success && a.dnnl_stream_wait(a.stream) == dnnl_success;
  }
  for (dnnl_memory_t m : {src, w, dst, bias})
    if (m) a.dnnl_memory_destroy(m);
  a.dnnl_primitive_destroy(prim);
  return ok;
}

#else

struct Loaded {
  bool ok = false;
  std::string absence = "this build has no oneDNN support (built without oneDNN's headers)";
};
const Loaded& loaded() {
  static const Loaded l;
  return l;
}

#endif

HalfGemmBackend initial_backend() {
  const char* env = std::getenv("DITCACHE_GEMM16");
  if (env && std::string(env) == "builtin") return HalfGemmBackend::Builtin;
  if (!onednn_available()) return HalfGemmBackend::Builtin;
  if (env && std::string(env) == "onednn") return HalfGemmBackend::OneDnn;
  return onednn_has_amx() ? HalfGemmBackend::OneDnn : HalfGemmBackend::Builtin;
}

HalfGemmBackend& backend() {
  static HalfGemmBackend b = initial_backend();
  return b;
}

}  // namespace

bool onednn_available() { return loaded().ok; }

std::string onednn_name() {
#if DITCACHE_WITH_ONEDNN
  if (loaded().ok) return loaded().api.description;
#endif
  return "none: " + loaded().absence;
}

bool onednn_has_amx() {
#if DITCACHE_WITH_ONEDNN
  return loaded().ok && loaded().api.amx;
#else
  return false;
#endif
}

HalfGemmBackend half_gemm_backend() { return backend(); }

void set_half_gemm_backend(HalfGemmBackend b) {
  if (b == HalfGemmBackend::OneDnn && !onednn_available())
    throw OpError("setHalfGemmBackend: oneDNN is not loaded (" + loaded().absence + "); use 'builtin'");
  backend() = b;
}

bool onednn_gemm_half(const HalfGemmArgs& g) {
#if DITCACHE_WITH_ONEDNN
  if (backend() != HalfGemmBackend::OneDnn || g.alpha != 1.f || g.beta != 0.f) return false;
  static std::mutex one_at_a_time;  // one engine stream; products from several JS threads queue
  std::lock_guard<std::mutex> lock(one_at_a_time);
  return run_matmul(g);
#else
  (void)g;
  return false;
#endif
}

}  // namespace dc::cpu
