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

// The same for bfloat16 / float16 operands: float32 accumulation and output, tensor-core
// algorithms (cublasGemmStridedBatchedEx, CUBLAS_COMPUTE_32F), as PyTorch's 16-bit matmul.
bool cublas_gemm_half(const HalfGemmArgs& g, int device);

// Whether float32 products may run on TF32 tensor cores (inputs rounded to 10-bit mantissas),
// like PyTorch's torch.backends.cuda.matmul.allow_tf32. Off unless DITCACHE_CUDA_TF32=1 or
// set_allow_tf32(true); it affects cuBLAS only (the built-in kernel always computes in FP32).
bool allow_tf32();
void set_allow_tf32(bool on);

}  // namespace dc::cuda
