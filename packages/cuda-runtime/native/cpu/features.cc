#include "features.h"

#include <cstdlib>
#include <fstream>

#include "../common.h"

namespace dc::cpu {
namespace {

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma")) {
    if (__builtin_cpu_supports("avx512bf16")) return Isa::Avx512Bf16;
    return Isa::Avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Scalar;
}

Isa initial() {
  Isa d = detect();
  if (const char* env = std::getenv("DITCACHE_CPU_ISA")) {
    try {
      Isa want = parse_isa(env);
      if (int(want) < int(d)) return want;
    } catch (const OpError&) {
      // An unknown value keeps the detected ISA; the runtime's self-check reports it.
    }
  }
  return d;
}

Isa g_active = initial();

}  // namespace

Isa detected_isa() {
  static Isa d = detect();
  return d;
}

Isa active_isa() { return g_active; }

void set_isa(Isa isa) {
  if (int(isa) > int(detected_isa()))
    throw OpError(std::string("setCpuIsa: this processor does not support ") + isa_name(isa) +
                  " (it supports up to " + isa_name(detected_isa()) + ")");
  g_active = isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512Bf16: return "avx512bf16";
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Scalar: return "scalar";
  }
  return "?";
}

Isa parse_isa(const std::string& name) {
  if (name == "avx512bf16") return Isa::Avx512Bf16;
  if (name == "avx512") return Isa::Avx512;
  if (name == "avx2") return Isa::Avx2;
  if (name == "scalar") return Isa::Scalar;
  throw OpError("unknown CPU ISA '" + name + "' (expected avx512bf16, avx512, avx2 or scalar)");
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto pos = line.find(':');
      if (pos != std::string::npos) return line.substr(pos + 2);
    }
  }
  return "unknown CPU";
}

}  // namespace dc::cpu
