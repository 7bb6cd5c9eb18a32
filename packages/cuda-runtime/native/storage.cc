#include "storage.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "host_blocks.h"

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
  void* p = host_allocate(request);
  if (!p) fail_runtime("allocate", "out of host memory allocating ", bytes, " bytes");
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
      host_release(data_, bytes_ == 0 ? 64 : bytes_);
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
