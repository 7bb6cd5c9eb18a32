// Shared vocabulary of the native runtime: dtypes, devices, shapes and the error type that
// becomes a JS exception. Everything here compiles with both the host compiler and nvcc.
#pragma once
#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dc {

constexpr int kMaxDims = 8;
// Upper bound on element counts: keeps every byte-size computation far from int64 overflow.
constexpr int64_t kMaxElements = int64_t(1) << 46;

enum class DType : uint8_t { F32 = 0, F16 = 1, BF16 = 2, I32 = 3 };

inline size_t dtype_size(DType t) { return t == DType::F32 || t == DType::I32 ? 4 : 2; }
inline bool is_float(DType t) { return t != DType::I32; }
const char* dtype_name(DType t);
DType parse_dtype(const std::string& name);

struct Device {
  enum Kind : uint8_t { CPU = 0, CUDA = 1 };
  Kind kind = CPU;
  int index = 0;
  bool is_cuda() const { return kind == CUDA; }
  bool operator==(const Device& o) const { return kind == o.kind && (kind == CPU || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return kind == CPU ? "cpu" : "cuda:" + std::to_string(index); }
};
Device parse_device(const std::string& name);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);

// A caller error (wrong shape, dtype, device, argument): reported to JS as a TypeError.
class OpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// A failure of the machine rather than of the arguments (allocation, driver): a plain Error.
class RuntimeFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

template <typename... Args>
[[noreturn]] void fail(const char* op, const Args&... args) {
  std::ostringstream os;
  os << op << ": ";
  detail::append(os, args...);
  throw OpError(os.str());
}

template <typename... Args>
[[noreturn]] void fail_runtime(const char* op, const Args&... args) {
  std::ostringstream os;
  os << op << ": ";
  detail::append(os, args...);
  throw RuntimeFailure(os.str());
}

// Validates a shape (non-negative dims, bounded size) and returns its element count.
int64_t checked_numel(const char* op, const Shape& shape);

// Normalises a possibly negative dimension index against ndim.
int normalize_dim(const char* op, int64_t dim, int ndim);

}  // namespace dc
