// Per-thread scratch for the GEMM kernels' packed operands and sums: 64-byte aligned for full
// vector loads, grown on demand and kept, so a product allocates nothing in the steady state.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>

namespace dc::cpu {

template <typename T>
struct AlignedScratch {
  T* data = nullptr;
  size_t size = 0;
  ~AlignedScratch() { std::free(data); }
  // At least n elements; the previous contents are not kept.
  T* get(size_t n) {
    if (n > size) {
      std::free(data);
      data = static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64));
      if (!data) {
        size = 0;
        throw std::bad_alloc();
      }
      size = n;
    }
    return data;
  }
};

}  // namespace dc::cpu
