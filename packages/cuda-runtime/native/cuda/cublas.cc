// cuBLAS through dlopen. There are no cuBLAS headers at build time, so the handful of
// declarations used are written out below (values as in cublas_api.h of CUDA 12 and 13).
#include "cublas.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <glob.h>
#include <library_types.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace dc::cuda {
namespace {

struct CublasContext;
using CublasHandle = CublasContext*;
using CublasStatus = int;
constexpr CublasStatus kCublasSuccess = 0;
constexpr int kOpN = 0, kOpT = 1;
// CUBLAS_DEFAULT_MATH: plain FP32 FMA for SGEMM. The TF32 modes would be faster but round the
// inputs to 10-bit mantissas, and results must agree with the CPU backend to about 1e-5; TF32
// is an opt-in (allow_tf32), asked for per call through the compute type, not the handle.
constexpr int kDefaultMath = 0;
// cublasComputeType_t: float32 accumulation; the FAST_TF32 variant lets float32 operands run on
// TF32 tensor cores, which is what the opt-in (allow_tf32) asks for.
constexpr int kCompute32F = 68, kCompute32FFastTf32 = 77;
// CUBLAS_GEMM_DEFAULT: cuBLAS's heuristics, which pick tensor-core kernels for 16-bit and TF32
// operands by themselves since CUDA 11 (the *_TENSOR_OP algorithm values are deprecated).
constexpr int kGemmDefault = -1;

using CreateFn = CublasStatus (*)(CublasHandle*);
using SetMathModeFn = CublasStatus (*)(CublasHandle, int);
using GetPropertyFn = CublasStatus (*)(libraryPropertyType, int*);
using SgemmStridedBatchedFn = CublasStatus (*)(CublasHandle, int, int, int, int, int, const float*,
                                               const float*, int, long long, const float*, int,
                                               long long, const float*, float*, int, long long, int);
// cublasGemmStridedBatchedEx: typed operands (cudaDataType), a compute type and an algorithm.
using GemmStridedBatchedExFn = CublasStatus (*)(CublasHandle, int, int, int, int, int, const void*, const void*,
                                                cudaDataType, int, long long, const void*, cudaDataType, int,
                                                long long, const void*, void*, cudaDataType, int, long long, int,
                                                int, int);

const char* status_name(CublasStatus s) {
  switch (s) {
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

struct Cublas {
  bool loaded = false;
  std::string route;
  CreateFn create = nullptr;
  SetMathModeFn set_math_mode = nullptr;
  SgemmStridedBatchedFn sgemm = nullptr;
  // Optional: without it, 16-bit products take the built-in kernel and TF32 is not used.
  GemmStridedBatchedExFn gemm_ex = nullptr;
  std::mutex handles_mutex;
  std::vector<CublasHandle> handles;  // per device index, created on first use
};

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string dirname_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// A place to look: a file path, or a bare soname for the dynamic loader's own search
// (LD_LIBRARY_PATH, the ld.so cache, the standard directories).
struct Candidate {
  std::string path;
  bool by_soname = false;
};

const char* const kSonames[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};

std::vector<Candidate> candidates() {
  std::vector<Candidate> out;
  auto add_dir = [&](const std::string& dir) {
    for (const char* name : kSonames) out.push_back({dir + "/" + name, false});
  };
  if (const char* env = std::getenv("DITCACHE_CUBLAS_PATH"); env && *env) {
    if (is_file(env))
      out.push_back({env, false});
    else
      add_dir(env);
  }
  for (const char* name : kSonames) out.push_back({name, true});
  add_dir("/usr/local/cuda/lib64");

  // pip's nvidia-cublas-cu12 installs nvidia/cublas/lib, the CUDA 13 wheels nvidia/cu13/lib.
  std::vector<std::string> roots = {"/usr/lib/python3*/site-packages", "/usr/lib/python3/dist-packages",
                                    "/usr/local/lib/python3*/site-packages",
                                    "/usr/local/lib/python3*/dist-packages"};
  if (const char* home = std::getenv("HOME"); home && *home)
    roots.push_back(std::string(home) + "/.local/lib/python3*/site-packages");
  for (const char* env : {"VIRTUAL_ENV", "CONDA_PREFIX"})
    if (const char* prefix = std::getenv(env); prefix && *prefix)
      roots.push_back(std::string(prefix) + "/lib/python3*/site-packages");
  std::vector<std::string> dirs;
  for (const std::string& root : roots) {
    for (const char* sub : {"/nvidia/cublas/lib/libcublas.so.*", "/nvidia/cu[0-9]*/lib/libcublas.so.*"}) {
      glob_t g;
      if (::glob((root + sub).c_str(), 0, nullptr, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; ++i) {
          const std::string dir = dirname_of(g.gl_pathv[i]);
          if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
        }
      }
      ::globfree(&g);
    }
  }
  if (const char* conda = std::getenv("CONDA_PREFIX"); conda && *conda) dirs.push_back(std::string(conda) + "/lib");
  for (const std::string& dir : dirs) add_dir(dir);
  return out;
}

// dlopen's message, or a placeholder: dlerror() may return null.
std::string last_dl_error() {
  const char* e = ::dlerror();
  return e ? e : "unknown dlopen error";
}

// Loads one candidate and resolves the entry points. Files that exist but do not load, and
// sonames the loader finds but cannot load, are explained in `problem` (the first one wins).
bool try_load(const Candidate& c, Cublas& api, std::string* problem) {
  auto note = [&](const std::string& why) {
    if (problem->empty()) *problem = why;
  };
  void* lt = nullptr;
  if (!c.by_soname) {
    if (!is_file(c.path)) return false;
    // libcublas needs the libcublasLt of its own release. Loading it first from the same
    // directory satisfies that dependency even when the directory is not on any search path.
    const std::string name = c.path.substr(c.path.rfind('/') + 1);
    const std::string prefix = "libcublas.so";
    if (name.rfind(prefix, 0) == 0) {
      const std::string lt_path = dirname_of(c.path) + "/libcublasLt.so" + name.substr(prefix.size());
      if (is_file(lt_path)) lt = ::dlopen(lt_path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    }
  }
  void* lib = ::dlopen(c.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const std::string error = last_dl_error();
    const bool absent = c.by_soname && error.rfind(c.path + ": cannot open shared object file", 0) == 0;
    if (!absent) note(error);
    if (lt) ::dlclose(lt);
    return false;
  }
  auto create = reinterpret_cast<CreateFn>(::dlsym(lib, "cublasCreate_v2"));
  auto set_math_mode = reinterpret_cast<SetMathModeFn>(::dlsym(lib, "cublasSetMathMode"));
  auto sgemm = reinterpret_cast<SgemmStridedBatchedFn>(::dlsym(lib, "cublasSgemmStridedBatched"));
  if (!create || !set_math_mode || !sgemm) {
    note(c.path + " lacks cublasCreate_v2, cublasSetMathMode or cublasSgemmStridedBatched");
    ::dlclose(lib);
    if (lt) ::dlclose(lt);
    return false;
  }

  std::string version;
  if (auto get_property = reinterpret_cast<GetPropertyFn>(::dlsym(lib, "cublasGetProperty"))) {
    int major = 0, minor = 0, patch = 0;
    if (get_property(MAJOR_VERSION, &major) == kCublasSuccess &&
        get_property(MINOR_VERSION, &minor) == kCublasSuccess &&
        get_property(PATCH_LEVEL, &patch) == kCublasSuccess)
      version = " " + std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  }
  std::string where = c.path;
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(sgemm), &info) != 0 && info.dli_fname) where = info.dli_fname;
  api.create = create;
  api.set_math_mode = set_math_mode;
  api.sgemm = sgemm;
  api.gemm_ex = reinterpret_cast<GemmStridedBatchedExFn>(::dlsym(lib, "cublasGemmStridedBatchedEx"));
  api.route = "cuBLAS" + version + " (" + where + ")";
  if (!api.gemm_ex) api.route += "; 16-bit products on the built-in kernel (no cublasGemmStridedBatchedEx)";
  api.loaded = true;
  return true;
}

void load(Cublas& api) {
  const char* choice = std::getenv("DITCACHE_CUDA_GEMM");
  if (choice && std::string(choice) == "builtin") {
    api.route = "built-in kernel (DITCACHE_CUDA_GEMM=builtin)";
    return;
  }
  std::string problem;
  for (const Candidate& c : candidates())
    if (try_load(c, api, &problem)) return;
  api.route = problem.empty()
                  ? "built-in kernel (cuBLAS not found: no libcublas.so.13 or .12 in DITCACHE_CUBLAS_PATH, "
                    "the library search path, /usr/local/cuda/lib64 or Python nvidia-cublas packages)"
                  : "built-in kernel (cuBLAS did not load: " + problem + ")";
}

// Never destroyed: cuBLAS handles cannot be torn down safely from static destructors, which
// may run after the CUDA runtime has shut down; the process exit releases everything anyway.
Cublas& cublas() {
  static Cublas* api = [] {
    auto* a = new Cublas;
    load(*a);
    return a;
  }();
  return *api;
}

CublasHandle handle_for(Cublas& api, int device) {
  std::lock_guard<std::mutex> lock(api.handles_mutex);
  if (api.handles.size() <= size_t(device)) api.handles.resize(size_t(device) + 1, nullptr);
  CublasHandle& h = api.handles[size_t(device)];
  if (!h) {
    CublasHandle created = nullptr;
    CublasStatus s = api.create(&created);
    if (s != kCublasSuccess) fail_runtime("gemm", "cublasCreate failed on cuda:", device, ": ", status_name(s));
    s = api.set_math_mode(created, kDefaultMath);
    if (s != kCublasSuccess) fail_runtime("gemm", "cublasSetMathMode failed on cuda:", device, ": ", status_name(s));
    h = created;
  }
  return h;
}

// cuBLAS takes 32-bit sizes and checks leading dimensions against the column-major shapes;
// anything else goes to the built-in kernel rather than failing.
template <typename Args>
bool fits_cublas(const Args& g) {
  for (int64_t v : {g.m, g.n, g.k, g.lda, g.ldb, g.ldc})
    if (v > INT_MAX) return false;
  const int64_t a_cols = g.trans_a ? g.m : g.k;  // row length of A as stored
  const int64_t b_cols = g.trans_b ? g.k : g.n;
  return g.lda >= std::max<int64_t>(1, a_cols) && g.ldb >= std::max<int64_t>(1, b_cols) &&
         g.ldc >= std::max<int64_t>(1, g.n);
}

std::atomic<bool>& tf32_flag() {
  static std::atomic<bool> flag{[] {
    const char* v = std::getenv("DITCACHE_CUDA_TF32");
    return v && std::strcmp(v, "1") == 0;
  }()};
  return flag;
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a row-major matrix
// read as column-major is its transpose: pass B first, A second, with their own flags. Batches
// beyond cuBLAS's int count go in several calls.
template <typename Args, typename Call>
void column_major_batches(const Args& g, const char* what, Call call) {
  const int64_t max_batch = INT_MAX;
  for (int64_t first = 0; first < g.batch; first += max_batch) {
    const int count = int(std::min(max_batch, g.batch - first));
    const CublasStatus s = call(g.trans_b ? kOpT : kOpN, g.trans_a ? kOpT : kOpN, first, count);
    if (s != kCublasSuccess)
      fail_runtime("gemm", what, " failed: ", status_name(s), " (m=", g.m, ", n=", g.n, ", k=", g.k,
                   ", batch=", g.batch, ")");
  }
}

}  // namespace

const std::string& gemm_route() { return cublas().route; }

bool allow_tf32() { return tf32_flag().load(std::memory_order_relaxed); }
void set_allow_tf32(bool on) { tf32_flag().store(on, std::memory_order_relaxed); }

bool cublas_gemm(const GemmArgs& g, int device) {
  Cublas& api = cublas();
  if (!api.loaded || !fits_cublas(g)) return false;
  CublasHandle h = handle_for(api, device);
  if (api.gemm_ex && allow_tf32()) {
    // The opt-in: the same product with TF32 tensor cores allowed (float32 in and out).
    column_major_batches(g, "cublasGemmStridedBatchedEx (TF32)", [&](int op_b, int op_a, int64_t first, int count) {
      return api.gemm_ex(h, op_b, op_a, int(g.n), int(g.m), int(g.k), &g.alpha, g.b + first * g.stride_b, CUDA_R_32F,
                         int(g.ldb), g.stride_b, g.a + first * g.stride_a, CUDA_R_32F, int(g.lda), g.stride_a,
                         &g.beta, g.c + first * g.stride_c, CUDA_R_32F, int(g.ldc), g.stride_c, count,
                         kCompute32FFastTf32, kGemmDefault);
    });
    return true;
  }
  column_major_batches(g, "cublasSgemmStridedBatched", [&](int op_b, int op_a, int64_t first, int count) {
    return api.sgemm(h, op_b, op_a, int(g.n), int(g.m), int(g.k), &g.alpha, g.b + first * g.stride_b, int(g.ldb),
                     g.stride_b, g.a + first * g.stride_a, int(g.lda), g.stride_a, &g.beta,
                     g.c + first * g.stride_c, int(g.ldc), g.stride_c, count);
  });
  return true;
}

bool cublas_gemm_half(const HalfGemmArgs& g, int device) {
  Cublas& api = cublas();
  if (!api.loaded || !api.gemm_ex || !fits_cublas(g)) return false;
  CublasHandle h = handle_for(api, device);
  const cudaDataType in = g.dtype == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  column_major_batches(g, "cublasGemmStridedBatchedEx", [&](int op_b, int op_a, int64_t first, int count) {
    return api.gemm_ex(h, op_b, op_a, int(g.n), int(g.m), int(g.k), &g.alpha, g.b + first * g.stride_b, in,
                       int(g.ldb), g.stride_b, g.a + first * g.stride_a, in, int(g.lda), g.stride_a, &g.beta,
                       g.c + first * g.stride_c, CUDA_R_32F, int(g.ldc), g.stride_c, count, kCompute32F,
                       kGemmDefault);
  });
  return true;
}

}  // namespace dc::cuda
