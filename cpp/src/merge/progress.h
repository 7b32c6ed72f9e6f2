// A progress line on stderr for long merges (only when stderr is a terminal).
// Add() may be called from several threads (inputs scanned at once).
#ifndef VPERFETTO_MERGE_PROGRESS_H_
#define VPERFETTO_MERGE_PROGRESS_H_

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mutex>

namespace vpmerge {

class Progress {
 public:
  // Shown only for inputs of at least `min_bytes` in all, on a terminal.
  Progress(bool wanted, uint64_t total_bytes, uint64_t min_bytes = 64u << 20)
      : on_(wanted && total_bytes >= min_bytes && isatty(2)), total_(total_bytes) {}
  ~Progress() { Done(); }

  void Add(uint64_t bytes) {
    uint64_t done = done_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    if (!on_) return;
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) return;  // another thread is showing it
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
    if (now - last_ms_ < 200) return;
    last_ms_ = now;
    unsigned pct = total_ ? static_cast<unsigned>(done * 100 / total_) : 0;
    if (pct > 99) pct = 99;
    std::fprintf(stderr, "\rmerging: %3u%%  %llu / %llu MB", pct,
                 static_cast<unsigned long long>(done >> 20),
                 static_cast<unsigned long long>(total_ >> 20));
    shown_ = true;
  }
  // One thread's share, handed over in steps of 1 MB: a shared counter
  // bumped per packet by two threads at once cost the scan of small packets
  // a third of its time (the cache line went back and forth).
  class Local {
   public:
    explicit Local(Progress* p) : p_(p) {}
    ~Local() { Flush(); }
    Local(const Local&) = delete;
    Local& operator=(const Local&) = delete;
    void Add(uint64_t bytes) {
      pending_ += bytes;
      if (pending_ >= (1u << 20)) Flush();
    }
    void Flush() {
      if (p_ && pending_) p_->Add(pending_);
      pending_ = 0;
    }

   private:
    Progress* p_;
    uint64_t pending_ = 0;
  };

  void Done() {
    if (shown_) std::fprintf(stderr, "\r\033[K");
    shown_ = false;
  }

 private:
  bool on_;
  bool shown_ = false;
  uint64_t total_;
  std::atomic<uint64_t> done_{0};
  std::mutex mu_;
  uint64_t last_ms_ = 0;
};

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_PROGRESS_H_
