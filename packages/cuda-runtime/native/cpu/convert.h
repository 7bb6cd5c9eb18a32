// Contiguous runs of bfloat16 / float16 <-> float32, vectorised (AVX-512 / F16C, chosen at run
// time): the 16-bit ops convert every operand and result, so a per-element scalar conversion
// would cost more than the arithmetic. Rounding is to nearest even with NaN kept NaN, exactly
// as half.h (and PyTorch), denormals included.
#pragma once
#include <cstdint>

#include "../common.h"

namespace dc::cpu {

// dst[i] = src[i] widened; dtype is BF16 or F16.
void widen_run(const uint16_t* src, float* dst, int64_t n, DType dtype);
// dst[i] = src[i] rounded to nearest even; dtype is BF16 or F16.
void narrow_run(const float* src, uint16_t* dst, int64_t n, DType dtype);

}  // namespace dc::cpu
