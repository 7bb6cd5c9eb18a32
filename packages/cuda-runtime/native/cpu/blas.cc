#include "blas.h"

#include <dlfcn.h>

#include <cstdlib>
#include <sys/stat.h>
#include <vector>

namespace dc::cpu {
namespace {

// Places to look: only where DITCACHE_BLAS_PATH says when it is set (a file, or a folder);
// otherwise the library CMake found when this binary was built, then the usual sonames.
std::vector<std::string> candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("DITCACHE_BLAS_PATH")) {
    struct stat st;
    const std::string p = env;
    if (stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      out.push_back(p + "/libopenblas.so.0");
      out.push_back(p + "/libopenblas.so");
    } else {
      out.push_back(p);
    }
    return out;
  }
#ifdef DITCACHE_OPENBLAS_AT_BUILD
  out.push_back(DITCACHE_OPENBLAS_AT_BUILD);
#endif
  out.push_back("libopenblas.so.0");
  out.push_back("libopenblas.so");
  return out;
}

struct Loaded {
  Blas blas{};
  bool ok = false;
  std::string absence;
};

Loaded load() {
  Loaded l;
  std::string tried;
  for (const std::string& path : candidates()) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      tried += (tried.empty() ? "" : ", ") + path;
      continue;
    }
    auto sgemm = reinterpret_cast<decltype(Blas::sgemm)>(dlsym(h, "cblas_sgemm"));
    auto sgemv = reinterpret_cast<decltype(Blas::sgemv)>(dlsym(h, "cblas_sgemv"));
    auto set_threads = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"));
    auto config = reinterpret_cast<const char* (*)()>(dlsym(h, "openblas_get_config"));
    if (!sgemm || !sgemv || !set_threads || !config) {
      tried += (tried.empty() ? "" : ", ") + path + " (not an OpenBLAS with CBLAS)";
      dlclose(h);
      continue;
    }
    // The runtime's pool parallelises around BLAS calls; BLAS threads would compete for its cores.
    set_threads(1);
    l.blas.sgemm = sgemm;
    l.blas.sgemv = sgemv;
    Dl_info info{};
    const bool located = dladdr(reinterpret_cast<void*>(sgemm), &info) != 0 && info.dli_fname;
    l.blas.description = std::string(config()) + " (" + (located ? info.dli_fname : path) + ")";
    l.ok = true;
    return l;  // the library stays loaded for the life of the process
  }
  l.absence = "no OpenBLAS found (tried " + tried + "; set DITCACHE_BLAS_PATH to its file or folder)";
  return l;
}

const Loaded& loaded() {
  static const Loaded l = load();
  return l;
}

}  // namespace

const Blas* blas() { return loaded().ok ? &loaded().blas : nullptr; }
const std::string& blas_absence() { return loaded().absence; }

}  // namespace dc::cpu
