// The runtime's process-wide settings and what it reports about the machine, in one place for
// every front end (the N-API binding today): threads, CPU kernel ISA, GEMM backends, TF32, and
// the CPU and CUDA devices. Names are the ones users pass ('blas', 'onednn', 'avx512', ...);
// unknown names are OpErrors that list the valid ones.
#pragma once
#include <string>
#include <vector>

#include "common.h"

namespace dc::settings {

int num_threads();
// 0: automatic (the machine's cores); returns the count now in use.
int set_num_threads(int64_t threads);

std::string cpu_isa();
void set_cpu_isa(const std::string& name);

// 'builtin' or 'blas' (float32 products).
std::string gemm_backend();
void set_gemm_backend(const std::string& name);
// 'builtin' or 'onednn' (bfloat16 / float16 products).
std::string half_gemm_backend();
void set_half_gemm_backend(const std::string& name);

// TF32 for float32 products on CUDA; without CUDA it still reads back what was set.
bool allow_tf32();
void set_allow_tf32(bool on);

// An OpError from `op` when `device` cannot be used in this process.
void check_device(const Device& device, const char* op);

struct CpuReport {
  std::string name, isa, detected_isa, gemm, blas, gemm16, onednn;
  int threads = 0;
  bool blas_loaded = false, onednn_loaded = false;
};
CpuReport cpu_report();

struct CudaDeviceReport {
  int index = 0;
  std::string name, compute_capability;
  double total_memory = 0;
  int multiprocessors = 0;
};
struct CudaReport {
  bool compiled = false, available = false, tf32 = false;
  std::string reason, gemm;
  int driver_version = 0, runtime_version = 0;
  std::vector<CudaDeviceReport> devices;
};
CudaReport cuda_report();

}  // namespace dc::settings
