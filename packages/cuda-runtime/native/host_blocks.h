// Host memory for tensors. Large blocks (the activations of real-width models: tens of MB per
// op) are 2 MiB aligned, ask for transparent huge pages, and are kept for reuse when freed, up
// to a bound: fresh pages from the kernel must be zeroed and faulted in, which at FLUX.1 width
// cost as much as a 16-bit matrix product's arithmetic. The same shapes recur every step, so
// the next step's activations take the blocks the last step freed.
#pragma once
#include <cstddef>

namespace dc {

// A block of at least `bytes` (64-byte aligned), or null when the system has no memory.
void* host_allocate(size_t bytes);
// Gives back a block from host_allocate(bytes) (the same `bytes`); never throws.
void host_release(void* p, size_t bytes) noexcept;
// Bytes held for reuse (not counted as live tensor memory).
size_t host_cached_bytes();

}  // namespace dc
