// The runtime's settings and machine report behind one interface, so that front ends never
// reach into the CPU or CUDA backends themselves.
#include "runtime_settings.h"

#include <atomic>

#include "cpu/features.h"
#include "cpu/gemm.h"
#include "cpu/onednn.h"
#include "cpu/parallel.h"
#if DITCACHE_WITH_CUDA
#include "cuda/cublas.h"
#include "cuda/runtime.h"
#endif

namespace dc::settings {

int num_threads() { return cpu::num_threads(); }
int set_num_threads(int64_t threads) {
  if (threads < 0 || threads > 256) fail("setNumThreads", "threads must be 0 (automatic) .. 256, got ", threads);
  cpu::set_num_threads(int(threads));
  return cpu::num_threads();
}

std::string cpu_isa() { return cpu::isa_name(cpu::active_isa()); }
void set_cpu_isa(const std::string& name) { cpu::set_isa(cpu::parse_isa(name)); }

std::string gemm_backend() { return cpu::gemm_backend() == cpu::GemmBackend::Blas ? "blas" : "builtin"; }
void set_gemm_backend(const std::string& name) {
  if (name == "blas") cpu::set_gemm_backend(cpu::GemmBackend::Blas);
  else if (name == "builtin") cpu::set_gemm_backend(cpu::GemmBackend::Builtin);
  else fail("setGemmBackend", "unknown backend '", name, "' (expected 'blas' or 'builtin')");
}

std::string half_gemm_backend() { return cpu::half_gemm_backend() == cpu::HalfGemmBackend::OneDnn ? "onednn" : "builtin"; }
void set_half_gemm_backend(const std::string& name) {
  if (name == "onednn") cpu::set_half_gemm_backend(cpu::HalfGemmBackend::OneDnn);
  else if (name == "builtin") cpu::set_half_gemm_backend(cpu::HalfGemmBackend::Builtin);
  else fail("setHalfGemmBackend", "unknown backend '", name, "' (expected 'onednn' or 'builtin')");
}

#if DITCACHE_WITH_CUDA
bool allow_tf32() { return cuda::allow_tf32(); }
void set_allow_tf32(bool on) { cuda::set_allow_tf32(on); }
#else
namespace {
std::atomic<bool> tf32_without_cuda{false};
}
bool allow_tf32() { return tf32_without_cuda; }
void set_allow_tf32(bool on) { tf32_without_cuda = on; }
#endif

void check_device(const Device& d, const char* op) {
  if (!d.is_cuda()) return;
#if DITCACHE_WITH_CUDA
  const auto& st = cuda::status();
  if (!st.available) fail(op, "device ", d.str(), " is not available: ", st.reason);
  if (d.index >= int(st.devices.size())) fail(op, "device ", d.str(), " does not exist (", st.devices.size(), " CUDA devices)");
#else
  fail(op, "this build of @ditcache/cuda-runtime has no CUDA support (asked for ", d.str(), ")");
#endif
}

CpuReport cpu_report() {
  CpuReport r;
  r.name = cpu::cpu_model_name();
  r.threads = cpu::num_threads();
  r.isa = cpu::isa_name(cpu::active_isa());
  r.detected_isa = cpu::isa_name(cpu::detected_isa());
  r.gemm = gemm_backend();
  r.blas = cpu::blas_name();
  r.blas_loaded = cpu::blas_available();
  r.gemm16 = half_gemm_backend();
  r.onednn = cpu::onednn_name();
  r.onednn_loaded = cpu::onednn_available();
  return r;
}

CudaReport cuda_report() {
  CudaReport r;
#if DITCACHE_WITH_CUDA
  const auto& st = cuda::status();
  r.compiled = true;
  r.available = st.available;
  r.reason = st.reason;
  r.driver_version = st.driver_version;
  r.runtime_version = st.runtime_version;
  r.gemm = st.gemm;
  r.tf32 = cuda::allow_tf32();
  for (const auto& d : st.devices) {
    r.devices.push_back({d.index, d.name, std::to_string(d.major) + "." + std::to_string(d.minor), double(d.total_memory), d.multiprocessors});
  }
#else
  r.reason = "this build has no CUDA support (it was compiled without nvcc, or with DITCACHE_WITH_CUDA=OFF)";
#endif
  return r;
}

}  // namespace dc::settings
