// Host-side CUDA services for the op layer: device discovery (never fatal without a driver),
// memory, copies, and cuBLAS loaded at run time. Only compiled when DITCACHE_WITH_CUDA is set.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace dc::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  size_t total_memory = 0;
  int major = 0, minor = 0;
  int multiprocessors = 0;
};

struct Status {
  bool available = false;      // a driver and at least one device answered
  std::string reason;          // why not, when unavailable
  int driver_version = 0;      // as cudaDriverGetVersion reports, 0 without a driver
  int runtime_version = 0;
  std::vector<DeviceInfo> devices;
  std::string gemm;            // "cuBLAS (path)" or "built-in kernel (reason)"
};

// Queries once and caches; safe to call on machines with no driver or no GPU.
const Status& status();

// Selects the device for the calling thread; throws OpError for a device that is not present.
void use_device(int index);
void* device_malloc(size_t bytes, int index);  // throws RuntimeFailure when out of memory
void device_free(void* p, int index);
void memcpy_h2d(void* dst, const void* src, size_t bytes, int index);
void memcpy_d2h(void* dst, const void* src, size_t bytes, int index);
void synchronize(int index);
// Throws a RuntimeFailure naming `what` if the last launch failed.
void check_launch(const char* what);

}  // namespace dc::cuda
