#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dc::cpu {
namespace {

thread_local bool tl_inside_pool = false;

class Pool {
 public:
  Pool() { resize(default_threads()); }
  ~Pool() { stop_workers(); }

  static int default_threads() {
    if (const char* env = std::getenv("DITCACHE_NUM_THREADS")) {
      int n = std::atoi(env);
      if (n > 0) return std::min(n, 256);
    }
    unsigned hc = std::thread::hardware_concurrency();
    return hc ? int(std::min(hc, 256u)) : 1;
  }

  int size() const { return int(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    stop_.store(false);
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> run_lock(run_mutex_, std::try_to_lock);
    int threads = size();
    int64_t max_chunks = (n + grain - 1) / grain;
    if (!run_lock.owns_lock() || tl_inside_pool || threads == 1 || max_chunks <= 1) {
      fn(0, n);
      return;
    }
    // A few chunks per thread balance uneven work without much scheduling overhead.
    int64_t chunks = std::min<int64_t>(max_chunks, int64_t(threads) * 4);
    job_fn_ = &fn;
    job_n_ = n;
    job_chunk_ = (n + chunks - 1) / chunks;
    next_.store(0);
    active_.store(int(workers_.size()));
    {
      std::lock_guard<std::mutex> lk(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    tl_inside_pool = true;
    work();
    tl_inside_pool = false;
    while (active_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    job_fn_ = nullptr;
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  void work() {
    for (;;) {
      int64_t begin = next_.fetch_add(job_chunk_);
      if (begin >= job_n_) break;
      try {
        (*job_fn_)(begin, std::min(job_n_, begin + job_chunk_));
      } catch (...) {
        // Kernels do not throw by design; an allocation failure still must not kill the process.
        std::lock_guard<std::mutex> lk(error_mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(job_n_);
      }
    }
  }

  void worker_loop() {
    tl_inside_pool = true;
    uint64_t seen = 0;
    for (;;) {
      // Ops come back to back while a model runs, and waking a thread from a condition variable
      // can take longer than a small kernel; so poll for a moment before sleeping.
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
      for (int i = 0; generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed); ++i) {
        if ((i & 63) == 0 && std::chrono::steady_clock::now() > spin_until) break;
        std::this_thread::yield();
      }
      {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
        if (stop_) return;
        seen = generation_.load();
      }
      work();
      active_.fetch_sub(1, std::memory_order_release);
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stop_.store(true);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel region at a time
  std::mutex mutex_;
  std::condition_variable cv_;
  static constexpr int kSpinMicros = 200;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int64_t, int64_t)>* job_fn_ = nullptr;
  int64_t job_n_ = 0, job_chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::atomic<int> active_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers must outlive static teardown
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(n > 0 ? std::min(n, 256) : Pool::default_threads()); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  pool().run(n, std::max<int64_t>(grain, 1), fn);
}

}  // namespace dc::cpu
