// Host-side CUDA services. Compiled by the host compiler against the static CUDA runtime,
// which loads the driver (libcuda.so.1) lazily: without a driver every query below fails
// cleanly, so the addon loads and reports why CUDA is unavailable.
#include "runtime.h"

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "../common.h"
#include "block_cache.h"
#include "cublas.h"

namespace dc::cuda {
namespace {

std::string error_text(cudaError_t e) {
  return std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")";
}

// A failed runtime call also sets the thread's last-error state; clearing it keeps that
// failure from being reported again by the next check_launch as if a kernel had failed.
cudaError_t consume(cudaError_t e) {
  if (e != cudaSuccess) cudaGetLastError();
  return e;
}

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

std::string unavailable_reason(const Status& s, cudaError_t e) {
  if (s.driver_version == 0)
    return "no NVIDIA driver found (libcuda.so.1 could not be loaded): " + error_text(e);
  if (e == cudaErrorInsufficientDriver)
    return "the NVIDIA driver supports CUDA " + version_text(s.driver_version) +
           " but this addon was built with CUDA " + version_text(s.runtime_version) +
           "; update the driver: " + error_text(e);
  return "cudaGetDeviceCount failed: " + error_text(e);
}

Status query_status() {
  Status s;
  consume(cudaRuntimeGetVersion(&s.runtime_version));
  if (consume(cudaDriverGetVersion(&s.driver_version)) != cudaSuccess) s.driver_version = 0;
  int count = 0;
  const cudaError_t e = consume(cudaGetDeviceCount(&count));
  if (e != cudaSuccess || count <= 0) {
    s.reason = e != cudaSuccess ? unavailable_reason(s, e) : "the driver reports no CUDA device";
    s.gemm = "none (CUDA is unavailable)";
    return s;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    const cudaError_t pe = consume(cudaGetDeviceProperties(&prop, i));
    if (pe != cudaSuccess) {
      s.devices.clear();
      s.reason = "cudaGetDeviceProperties(" + std::to_string(i) + ") failed: " + error_text(pe);
      s.gemm = "none (CUDA is unavailable)";
      return s;
    }
    DeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.total_memory = prop.totalGlobalMem;
    d.major = prop.major;
    d.minor = prop.minor;
    d.multiprocessors = prop.multiProcessorCount;
    s.devices.push_back(d);
  }
  s.available = true;
  s.gemm = gemm_route();
  return s;
}

// The raw allocation functions under the block cache.
struct DriverMemory {
  static void* allocate(size_t bytes, int) {
    void* p = nullptr;
    return consume(cudaMalloc(&p, bytes)) == cudaSuccess ? p : nullptr;
  }
  static void release(void* p, int index) noexcept {
    // Errors are dropped: at process exit the runtime may already be unloading, and after a
    // sticky kernel fault nothing can be freed.
    if (consume(cudaSetDevice(index)) == cudaSuccess) consume(cudaFree(p));
  }
};

// Never destroyed, like the cuBLAS handles: at exit the driver takes the memory back itself.
// DITCACHE_CUDA_CACHE=0 frees every block at once instead (e.g. for compute-sanitizer).
BlockCache<DriverMemory>& block_cache() {
  static auto* cache = new BlockCache<DriverMemory>([] {
    const char* v = std::getenv("DITCACHE_CUDA_CACHE");
    return !(v && std::strcmp(v, "0") == 0);
  }());
  return *cache;
}

bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("DITCACHE_CUDA_SYNC");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

}  // namespace

const Status& status() {
  static const Status s = [] {
    try {
      return query_status();
    } catch (...) {  // only allocation failures can get here; status() must not throw
      Status failed;
      failed.reason = "querying CUDA failed unexpectedly";
      return failed;
    }
  }();
  return s;
}

void use_device(int index) {
  const Status& s = status();
  if (!s.available) throw OpError("cuda:" + std::to_string(index) + " is not available: " + s.reason);
  if (index < 0 || size_t(index) >= s.devices.size())
    throw OpError("cuda:" + std::to_string(index) + " does not exist: this machine has " +
                  std::to_string(s.devices.size()) + " CUDA device(s)");
  const cudaError_t e = consume(cudaSetDevice(index));
  if (e != cudaSuccess) fail_runtime("cuda", "cudaSetDevice(", index, ") failed: ", error_text(e));
}

void* device_malloc(size_t bytes, int index) {
  use_device(index);
  void* p = block_cache().allocate(bytes, index);
  if (!p) {
    // The cache has already given its blocks back and retried: ask again for the error.
    void* probe = nullptr;
    const cudaError_t e = consume(cudaMalloc(&probe, size_class(bytes)));
    if (e == cudaSuccess) return probe;  // memory came free meanwhile (another thread or process)
    size_t free_bytes = 0, total_bytes = 0;
    std::string memory;
    if (consume(cudaMemGetInfo(&free_bytes, &total_bytes)) == cudaSuccess)
      memory = " (" + std::to_string(free_bytes) + " of " + std::to_string(total_bytes) + " bytes free)";
    fail_runtime("allocate", "cannot allocate ", bytes, " bytes on cuda:", index, memory, ": ", error_text(e));
  }
  return p;
}

void device_free(void* p, int index) {
  // Called from destructors, so it never throws.
  block_cache().release(p, index);
}

void memcpy_h2d(void* dst, const void* src, size_t bytes, int index) {
  if (bytes == 0) return;
  use_device(index);
  const cudaError_t e = consume(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  if (e != cudaSuccess) fail_runtime("to", "copying ", bytes, " bytes to cuda:", index, " failed: ", error_text(e));
}

void memcpy_d2h(void* dst, const void* src, size_t bytes, int index) {
  if (bytes == 0) return;
  use_device(index);
  const cudaError_t e = consume(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  if (e != cudaSuccess)
    fail_runtime("to", "copying ", bytes, " bytes from cuda:", index, " failed: ", error_text(e));
}

void synchronize(int index) {
  use_device(index);
  const cudaError_t e = consume(cudaDeviceSynchronize());
  if (e != cudaSuccess) fail_runtime("synchronize", "cuda:", index, ": ", error_text(e));
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail_runtime(what, "CUDA kernel launch failed: ", error_text(e));
  // DITCACHE_CUDA_SYNC=1 waits for every kernel, so that a fault names the kernel that
  // caused it rather than surfacing at a later copy.
  if (sync_after_launch()) {
    const cudaError_t se = consume(cudaDeviceSynchronize());
    if (se != cudaSuccess) fail_runtime(what, "CUDA kernel failed: ", error_text(se));
  }
}

}  // namespace dc::cuda
