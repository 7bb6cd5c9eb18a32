// CPU matrix products: OpenBLAS (loaded at run time when present) or the built-in blocked
// kernel, selectable at run time so that tests exercise both.
#pragma once
#include <string>

#include "../kernels.h"

namespace dc::cpu {

enum class GemmBackend { Builtin, Blas };

bool blas_available();
std::string blas_name();  // e.g. "OpenBLAS 0.3.21 ... (/usr/lib/.../libopenblas.so.0)" or "none: why"
GemmBackend gemm_backend();
void set_gemm_backend(GemmBackend b);  // Blas without a loaded BLAS is an OpError

// One (unbatched) product on the calling thread only; for use inside parallel regions.
void gemm_serial(const GemmArgs& g);
void gemm_half_serial(const HalfGemmArgs& g);

}  // namespace dc::cpu
