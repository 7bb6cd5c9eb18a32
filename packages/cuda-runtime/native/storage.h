// Reference-counted blocks of memory that tensors view: host allocations, read-only file
// mappings and CUDA allocations. Live counters make leaks visible to tests.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "common.h"

namespace dc {

struct MemoryCounters {
  std::atomic<int64_t> live_tensors{0};     // tensor handles held by JS and not yet disposed
  std::atomic<int64_t> host_bytes{0};       // owned host allocations
  std::atomic<int64_t> device_bytes{0};     // owned CUDA allocations
  std::atomic<int64_t> mapped_bytes{0};     // file mappings (page cache, not heap)
  std::atomic<int64_t> storages{0};         // live storage blocks of any kind
};
MemoryCounters& counters();

class Storage {
 public:
  enum class Kind { Host, Mapped, Cuda };

  static std::shared_ptr<Storage> allocate(size_t bytes, Device device);
  // Maps a whole file read-only; throws a RuntimeFailure naming the path on any error.
  static std::shared_ptr<Storage> map_file(const std::string& path);

  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  Kind kind() const { return kind_; }
  bool writable() const { return kind_ != Kind::Mapped; }

 private:
  Storage(void* data, size_t bytes, Device device, Kind kind)
      : data_(data), bytes_(bytes), device_(device), kind_(kind) {}
  void* data_;
  size_t bytes_;
  Device device_;
  Kind kind_;
};

}  // namespace dc
