#include "host_blocks.h"

#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace dc {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kLarge = 2 * kHugePage;       // from here on, huge-page aligned
constexpr size_t kCached = size_t(128) << 10;  // from here on (malloc's mmap threshold), kept for reuse

// At most this many bytes are kept (DITCACHE_HOST_CACHE_MB; 0 turns the cache off).
size_t cache_limit() {
  static const size_t limit = [] {
    const char* env = std::getenv("DITCACHE_HOST_CACHE_MB");
    return env ? size_t(std::strtoull(env, nullptr, 10)) << 20 : size_t(1) << 30;
  }();
  return limit;
}

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> free;  // rounded size -> block
  size_t bytes = 0;
};
Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: tensors may be freed during exit
  return *c;
}

size_t rounded(size_t bytes) {
  if (bytes >= kLarge) return (bytes + kHugePage - 1) / kHugePage * kHugePage;
  if (bytes >= kCached) return (bytes + 4095) / 4096 * 4096;
  return (bytes + 63) / 64 * 64;
}

}  // namespace

void* host_allocate(size_t bytes) {
  const size_t size = rounded(bytes);
  if (size < kCached) return std::aligned_alloc(64, size);
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free.find(size);
    if (it != c.free.end()) {
      void* p = it->second;
      c.free.erase(it);
      c.bytes -= size;
      return p;
    }
  }
  const size_t align = size >= kLarge ? kHugePage : 64;
  void* p = std::aligned_alloc(align, size);
  if (!p) {  // give the cached blocks back and try once more
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    for (auto& [s, q] : c.free) std::free(q);
    c.free.clear();
    c.bytes = 0;
    p = std::aligned_alloc(align, size);
    if (!p) return nullptr;
  }
  if (size >= kLarge) ::madvise(p, size, MADV_HUGEPAGE);  // advice only: without THP it changes nothing
  return p;
}

void host_release(void* p, size_t bytes) noexcept {
  if (!p) return;
  const size_t size = rounded(bytes);
  if (size >= kCached) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.bytes + size <= cache_limit()) {
      try {
        c.free.emplace(size, p);
        c.bytes += size;
        return;
      } catch (...) {
        // No memory for the bookkeeping: free the block instead.
      }
    }
  }
  std::free(p);
}

size_t host_cached_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.bytes;
}

}  // namespace dc
