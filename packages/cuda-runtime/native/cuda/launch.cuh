// Launch geometry shared by the CUDA kernels: block size, capped grids for grid-stride loops,
// and the choice between 32- and 64-bit index arithmetic.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "runtime.h"

namespace dc::cuda {

constexpr int kBlock = 256;

// Grid-stride kernels need only enough blocks to fill every SM several times over; more would
// just add scheduling overhead. The cap also keeps gridDim.x far below its 2^31 - 1 limit.
constexpr int64_t kMaxBlocks = 1 << 16;

inline unsigned blocks_for(int64_t work, int per_block = kBlock) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  return unsigned(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

// 64-bit division costs several times a 32-bit one on the GPU, so kernels that unravel linear
// indices are instantiated for both and use 32 bits whenever every index and offset fits.
constexpr int64_t kMaxIndex32 = INT32_MAX;

// A grid-stride loop over [0, n): 64-bit so that i + stride never overflows.
#define DC_GRID_STRIDE_LOOP(i, n)                                                        \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);              \
       i += int64_t(gridDim.x) * blockDim.x)

}  // namespace dc::cuda
