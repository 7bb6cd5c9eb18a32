// One process-wide pool of worker threads for the CPU kernels (the BLAS runs single-threaded
// inside it, so the machine's cores are never oversubscribed).
#pragma once
#include <cstdint>
#include <functional>

namespace dc::cpu {

int num_threads();
// n <= 0 picks the machine's core count (or DITCACHE_NUM_THREADS).
void set_num_threads(int n);

// Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` long except
// the last. Nested calls, and calls from a second JS thread while the pool is busy, run inline.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace dc::cpu
