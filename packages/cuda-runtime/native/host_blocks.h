// Host memory for tensors. Blocks from 128 KiB (where malloc starts taking fresh pages from the
// kernel) are kept for reuse when freed, up to a bound: fresh pages must be zeroed and faulted
// in, which at FLUX.1 width cost as much as a 16-bit matrix product's arithmetic. The same
// shapes recur every step, so the next step's activations take the blocks the last step freed.
// Blocks from 4 MiB are 2 MiB aligned and ask for transparent huge pages.
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
