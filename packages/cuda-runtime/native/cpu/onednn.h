// oneDNN (Intel's deep-learning kernels, what PyTorch runs on the CPU), loaded at run time for
// the 16-bit products where it has an engine we lack: AMX tiles, which no machine of this
// project's has had to test a kernel of our own on. The binary runs with or without it.
#pragma once
#include <string>

#include "../kernels.h"

namespace dc::cpu {

enum class HalfGemmBackend { Builtin, OneDnn };

bool onednn_available();
// "oneDNN 2.6.3 (ISA avx512_core_amx, /usr/lib/...)" or "none: why".
std::string onednn_name();
// Whether oneDNN's CPU engine has AMX tiles here (its default choice for 16-bit products then).
bool onednn_has_amx();

HalfGemmBackend half_gemm_backend();
void set_half_gemm_backend(HalfGemmBackend b);  // OneDnn without oneDNN loaded is an OpError

// Runs g through oneDNN's matmul when the backend is OneDnn and oneDNN implements it (alpha 1,
// beta 0, one product or equal-stride batches); false leaves g to the built-in kernel.
bool onednn_gemm_half(const HalfGemmArgs& g);

}  // namespace dc::cpu
