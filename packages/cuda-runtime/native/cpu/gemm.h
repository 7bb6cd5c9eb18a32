// CPU matrix products: a BLAS (OpenBLAS, when CMake found one) or the built-in blocked kernel,
// selectable at run time so that tests exercise both.
#pragma once
#include "../kernels.h"

namespace dc::cpu {

enum class GemmBackend { Builtin, Blas };

bool blas_available();
const char* blas_name();  // e.g. "OpenBLAS 0.3.21 ..." or "none"
GemmBackend gemm_backend();
void set_gemm_backend(GemmBackend b);  // Blas without a BLAS is an OpError

// One (unbatched) product on the calling thread only; for use inside parallel regions.
void gemm_serial(const GemmArgs& g);

}  // namespace dc::cpu
