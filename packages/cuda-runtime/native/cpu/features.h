// Which vector instruction set the CPU kernels use. One build runs on any x86-64 machine: the
// wide kernels are compiled with per-function target attributes and chosen here at run time.
#pragma once
#include <string>

namespace dc::cpu {

// Each level includes the ones below it. Avx512Bf16 adds the bfloat16 dot products
// (VDPBF16PS) that the 16-bit GEMM uses; the float32 kernels run their AVX-512 code there.
enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3 };

Isa detected_isa();  // what the processor supports
Isa active_isa();    // what the kernels use (detected, lowered by DITCACHE_CPU_ISA or set_isa)
// Lowers (or restores) the ISA; asking for more than the processor has is an error.
void set_isa(Isa isa);
const char* isa_name(Isa isa);
Isa parse_isa(const std::string& name);
std::string cpu_model_name();

}  // namespace dc::cpu
