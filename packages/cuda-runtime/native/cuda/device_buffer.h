// Temporary device memory for one kernel call (partial sums, counters, statistics), released
// when the call returns, into the block cache (block_cache.h): work still reading the buffer is
// never cut short, because whatever next uses the block queues behind it on the same stream.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "../common.h"
#include "runtime.h"

namespace dc::cuda {

class DeviceBuffer {
 public:
  // On the calling thread's current device, which the op layer selected for the kernel.
  explicit DeviceBuffer(size_t bytes) {
    const cudaError_t e = cudaGetDevice(&device_);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail_runtime("cuda", "cudaGetDevice failed: ", cudaGetErrorString(e));
    }
    data_ = device_malloc(bytes, device_);
  }
  ~DeviceBuffer() { device_free(data_, device_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  int device() const { return device_; }

 private:
  int device_ = 0;
  void* data_ = nullptr;
};

}  // namespace dc::cuda
