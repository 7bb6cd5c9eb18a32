// cuBLAS, found and loaded at run time: the addon has to load, and GEMM fall back to the
// built-in kernel, on machines where it is missing.
#pragma once
#include <string>

#include "../kernels.h"

namespace dc::cuda {

// How GEMMs run in this process, for status(): "cuBLAS <version> (<path>)" or
// "built-in kernel (<why not cuBLAS>)". The first call searches for the library.
const std::string& gemm_route();

// Runs g through cuBLAS on `device` (already the calling thread's current device). Returns
// false, having done nothing, when cuBLAS is not in use or cannot take these arguments (sizes
// beyond its 32-bit dimensions); throws RuntimeFailure when cuBLAS reports an error.
// Expects m, n, k > 0 and alpha != 0: the caller handles the degenerate products.
bool cublas_gemm(const GemmArgs& g, int device);

}  // namespace dc::cuda
