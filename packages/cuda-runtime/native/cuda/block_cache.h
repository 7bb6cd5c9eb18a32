// Freed device memory kept for reuse, as PyTorch's CUDA caching allocator keeps it: cudaMalloc is
// slow and cudaFree waits for the whole device, so a transformer forward that allocates and
// frees hundreds of activations would otherwise spend its time synchronizing. Reusing a block
// at once is safe because every kernel, cuBLAS call and copy of this runtime runs on the
// device's legacy default stream, in order: the next owner's kernels queue behind the kernels
// of the previous one that may still be running.
//
// Plain host code, templated on the raw allocation functions so that it can be tested without
// a GPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dc::cuda {

// A request rounded up to its size class: 512-byte steps up to 1 MiB, then steps of 1/16 of the
// largest power of two not above it (at most 6.25% more). Tensors of one shape share a class,
// which is what makes a freed activation fit the same activation of the next call.
inline size_t size_class(size_t bytes) {
  constexpr size_t kSmall = size_t(1) << 20;
  if (bytes <= kSmall) return bytes == 0 ? 512 : (bytes + 511) / 512 * 512;
  size_t power = kSmall;
  while (power <= bytes / 2) power *= 2;  // the largest power of two <= bytes
  const size_t step = power / 16;
  return (bytes + step - 1) / step * step;
}

// Raw::allocate(bytes, device) returns null on failure; Raw::release(p, device) never throws.
template <typename Raw>
class BlockCache {
 public:
  explicit BlockCache(bool enabled) : enabled_(enabled) {}

  // A block of at least `bytes` on `device` (already current), or null when the device has no
  // memory left even after the cached blocks were given back.
  void* allocate(size_t bytes, int device) {
    if (!enabled_) return Raw::allocate(bytes, device);
    const size_t cls = size_class(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& list = free_lists(device)[cls];
      if (!list.empty()) {
        void* p = list.back();
        list.pop_back();
        cached_bytes_ -= cls;
        return p;
      }
    }
    void* p = Raw::allocate(cls, device);
    if (!p && release_cached(device) > 0) p = Raw::allocate(cls, device);
    if (!p) return nullptr;
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[p] = cls;
    } catch (const std::bad_alloc&) {
      Raw::release(p, device);
      throw;
    }
    return p;
  }

  // Keeps p for reuse; never throws (it runs in destructors).
  void release(void* p, int device) noexcept {
    if (!p) return;
    if (!enabled_) {
      Raw::release(p, device);
      return;
    }
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = sizes_.find(p);
      if (it != sizes_.end()) {
        free_lists(device)[it->second].push_back(p);
        cached_bytes_ += it->second;
        return;
      }
    } catch (...) {  // no memory for the bookkeeping: give the block back instead
    }
    forget(p);
    Raw::release(p, device);
  }

  // Gives every cached block of `device` back to the driver; returns how many bytes.
  size_t release_cached(int device) noexcept {
    std::vector<std::pair<void*, size_t>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (size_t(device) >= free_.size()) return 0;
      try {
        for (auto& [cls, list] : free_[size_t(device)])
          for (void* p : list) blocks.emplace_back(p, cls);
      } catch (...) {
        return 0;
      }
      free_[size_t(device)].clear();
      for (const auto& [p, cls] : blocks) {
        sizes_.erase(p);
        cached_bytes_ -= cls;
      }
    }
    size_t released = 0;
    for (const auto& [p, cls] : blocks) {
      Raw::release(p, device);
      released += cls;
    }
    return released;
  }

  size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_bytes_;
  }

 private:
  using FreeLists = std::unordered_map<size_t, std::vector<void*>>;

  FreeLists& free_lists(int device) {  // with mutex_ held
    if (free_.size() <= size_t(device)) free_.resize(size_t(device) + 1);
    return free_[size_t(device)];
  }

  void forget(void* p) noexcept {
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_.erase(p);
    } catch (...) {
    }
  }

  const bool enabled_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, size_t> sizes_;  // class of every block this cache handed out
  std::vector<FreeLists> free_;             // per device: size class -> cached blocks
  size_t cached_bytes_ = 0;
};

}  // namespace dc::cuda
