#include "storage.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#if DITCACHE_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace dc {

MemoryCounters& counters() {
  static MemoryCounters c;
  return c;
}

std::shared_ptr<Storage> Storage::allocate(size_t bytes, Device device) {
  // Zero-byte tensors still get a distinct, valid pointer.
  size_t request = bytes == 0 ? 64 : bytes;
  if (device.is_cuda()) {
#if DITCACHE_WITH_CUDA
    void* p = cuda::device_malloc(request, device.index);
    counters().device_bytes += int64_t(bytes);
    counters().storages++;
    return std::shared_ptr<Storage>(new Storage(p, bytes, device, Kind::Cuda));
#else
    throw OpError("this build of @ditcache/cuda-runtime has no CUDA support (device " + device.str() + ")");
#endif
  }
  // Large blocks (activations of real-width models: tens of MB each op) come fresh from the
  // kernel on every allocation; on 4 KiB pages, faulting them in cost as much as a 16-bit
  // matrix product's arithmetic. 2 MiB-aligned blocks that ask for transparent huge pages
  // fault in 512 times less often.
  constexpr size_t kHugePage = size_t(2) << 20;
  const bool huge = request >= 2 * kHugePage;
  const size_t align = huge ? kHugePage : 64;
  size_t rounded = (request + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (!p) fail_runtime("allocate", "out of host memory allocating ", bytes, " bytes");
  if (huge) ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without THP it is a no-op
  counters().host_bytes += int64_t(bytes);
  counters().storages++;
  return std::shared_ptr<Storage>(new Storage(p, bytes, device, Kind::Host));
}

std::shared_ptr<Storage> Storage::map_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_runtime("mapFile", "cannot open '", path, "': ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail_runtime("mapFile", "cannot stat '", path, "': ", std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_runtime("mapFile", "'", path, "' is not a regular file");
  }
  size_t size = size_t(st.st_size);
  void* p = nullptr;
  if (size > 0) {
    p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail_runtime("mapFile", "cannot map '", path, "': ", std::strerror(e));
    }
  }
  ::close(fd);
  counters().mapped_bytes += int64_t(size);
  counters().storages++;
  Device cpu;
  return std::shared_ptr<Storage>(new Storage(p, size, cpu, Kind::Mapped));
}

Storage::~Storage() {
  counters().storages--;
  switch (kind_) {
    case Kind::Host:
      std::free(data_);
      counters().host_bytes -= int64_t(bytes_);
      break;
    case Kind::Mapped:
      if (data_) ::munmap(data_, bytes_);
      counters().mapped_bytes -= int64_t(bytes_);
      break;
    case Kind::Cuda:
#if DITCACHE_WITH_CUDA
      cuda::device_free(data_, device_.index);
#endif
      counters().device_bytes -= int64_t(bytes_);
      break;
  }
}

}  // namespace dc
