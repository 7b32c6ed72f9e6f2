// Shared internals of the vpsdk runtime: the registries, the per-thread
// writer and the session core. Not installed.
#ifndef VPSDK_SRC_INTERNAL_H_
#define VPSDK_SRC_INTERNAL_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "vpsdk/tracing.h"

#define VPSDK_LIKELY(x) __builtin_expect(!!(x), 1)
#define VPSDK_UNLIKELY(x) __builtin_expect(!!(x), 0)

namespace vpsdk {

// An append-only table whose entries never move: appends happen under the
// owner's mutex, reads of published indices are lock-free.
template <typename T, size_t kBlockBits = 10, size_t kMaxBlocks = 128>
class StableTable {
 public:
  static constexpr size_t kBlock = size_t{1} << kBlockBits;
  static constexpr size_t kCapacity = kBlock * kMaxBlocks;

  // No destructor on purpose: tables live for the whole process, and threads
  // still tracing during exit must never see them freed.
  // Caller holds the owner's mutex. Returns false when full.
  bool Append(const T& value, uint32_t* index) {
    uint32_t n = size_.load(std::memory_order_relaxed);
    if (n >= kCapacity) return false;
    size_t b = n >> kBlockBits;
    T* block = blocks_[b].load(std::memory_order_relaxed);
    if (!block) {
      block = new T[kBlock]();
      blocks_[b].store(block, std::memory_order_release);
    }
    block[n & (kBlock - 1)] = value;
    size_.store(n + 1, std::memory_order_release);
    *index = n;
    return true;
  }
  uint32_t size() const { return size_.load(std::memory_order_acquire); }
  // i < size() must hold.
  const T& Get(uint32_t i) const {
    return blocks_[i >> kBlockBits].load(std::memory_order_acquire)[i & (kBlock - 1)];
  }

 private:
  std::atomic<T*> blocks_[kMaxBlocks] = {};
  std::atomic<uint32_t> size_{0};
};

struct InternedString {
  uint32_t len;
  char data[1];  // len bytes + NUL, allocated in place
};

// Interned names (event and annotation names). Index 0 is never used.
const InternedString* LookupString(uint32_t id);  // nullptr if unknown

// Category names; nullptr for 0 or an unknown id.
const InternedString* CategoryString(uint32_t id);

enum class TrackKind : int32_t { kProcess, kNamed, kCounter };
struct TrackInfo {
  TrackKind kind;
  uint64_t uuid;        // 0 for the process track: use ProcessUuid()
  uint32_t parent;      // handle
  std::string name;
  uint32_t unit;        // CounterDescriptor.Unit
  std::string unit_name;
  // Tracks of short-lived work (asyncio tasks) sit under a thread's track
  // and their handles are reused once freed: a new serial each time, so
  // that every sequence describes the new track again.
  uint64_t parent_uuid = 0;  // nonzero: the parent's uuid (a thread's track)
  uint32_t serial = 0;
  bool recyclable = false;
};
const TrackInfo* LookupTrack(uint32_t handle);  // nullptr if unknown

// Process identity; pid and uuid change in a forked child.
int32_t ProcessPid();
uint64_t ProcessUuid();
std::string ProcessName();

// --- sessions -----------------------------------------------------------------

class ThreadWriter;

// Bytes committed in a chunk and the number of packets they hold, published
// together in one 64-bit word: bytes << 24 | packets.
constexpr unsigned kPacketBits = 24;

class SessionCore {
 public:
  SessionCore(const SessionConfig& cfg, int fd, uint32_t gen);
  ~SessionCore();

  // All under mu.
  std::mutex mu;
  bool stopped = false;
  uint32_t next_sequence_id = 2;  // cfg.sequence_base + 1 is the session's own
  std::vector<std::shared_ptr<ThreadWriter>> writers;

  const SessionConfig cfg;
  const uint32_t generation;
  const int32_t pid;  // process that started it
  size_t chunk_size;
  size_t buffer_bytes;

  // Hands [data, data+n) holding `packets` packets of sequence `seq` to the
  // buffer or file. Returns false when it was dropped. Caller holds mu.
  bool Commit(const uint8_t* data, size_t n, uint32_t packets);
  // Takes what `w` completed since the last hand-over. Caller holds mu.
  void Scrape(ThreadWriter* w, bool request_reset);

  Status Finish();  // writes the trace; caller holds mu
  bool WriteAll(const void* data, size_t n);  // caller holds mu
  std::string ClockSnapshotPacket();
  std::string TraceConfigPacket();
  Status io_status;  // first I/O error; under mu
  uint64_t Stat(int32_t stat);  // caller holds mu

  // Statistics (under mu).
  uint64_t packets_accepted = 0, bytes_accepted = 0, chunks_accepted = 0;
  uint64_t packets_dropped = 0, chunks_discarded = 0, chunks_overwritten = 0;
  uint64_t packets_overwritten = 0, bytes_overwritten = 0;
  uint64_t sequences = 0;
  uint64_t service_packets = 0;  // the session's own: clock snapshots, stats

 private:
  struct Chunk {
    std::string data;
    uint32_t packets;
  };
  std::string TraceStatsPacket();

  int fd_;
  std::deque<Chunk> ring_;
  size_t ring_bytes_ = 0;
};

// --- the per-thread writer ----------------------------------------------------

class ThreadWriter {
 public:
  ThreadWriter();
  ~ThreadWriter();

  // Identity (owner thread; survives sessions).
  int32_t tid;
  uint64_t uuid;
  std::string name;

  // Binding to a session (owner thread).
  uint32_t generation = 0;
  std::shared_ptr<SessionCore> session;
  uint32_t sequence_id = 0;

  // The chunk. `buf` and `cap` change only under session->mu; the owner
  // writes at [pos, cap) and publishes complete packets through `committed`.
  uint8_t* buf = nullptr;
  size_t cap = 0;
  size_t pos = 0;
  uint32_t packets = 0;                 // complete packets since offset 0
  std::atomic<uint64_t> committed{0};   // pos << kPacketBits | packets
  uint64_t handed = 0;                  // same encoding; under session->mu

  // Incremental state.
  bool need_reset = true;
  bool first_packet = true;
  std::atomic<bool> reset_requested{false};
  std::atomic<bool> packets_lost{false};
  uint32_t epoch = 1;
  // Timestamps (writer_inl.h): the session's encoding, taken at each reset,
  // and the sequence's time so far as a reader adds it up: on the
  // incremental clock a packet carries the delta from it.
  bool incremental_ts = false;
  uint32_t ts_unit = 1;
  uint64_t last_ts = 0;
  std::vector<uint32_t> name_seen, arg_seen, track_seen;
  std::vector<uint32_t> track_serial;  // TrackInfo::serial when described
  uint32_t category_seen[kMaxCategories] = {};

  // Whole-program tracing (profile.cc): the calls entered on this thread,
  // innermost last, and the functions described on this sequence.
  struct Frame {
    uint32_t func;
    uint32_t state;  // kFrame* in profile.cc
    uint64_t ts;     // entry time, for calls still deciding (min duration)
  };
  std::vector<Frame> frames;
  std::vector<uint32_t> func_seen;

  // Slice nesting on the thread track: which begins were recorded.
  static constexpr uint32_t kMaxDepth = 4096;
  uint32_t depth = 0;
  uint64_t recorded[kMaxDepth / 64] = {};

  void Publish(uint8_t* end) {
    pos = static_cast<size_t>(end - buf);
    ++packets;
    committed.store((static_cast<uint64_t>(pos) << kPacketBits) | packets,
                    std::memory_order_release);
  }
};

extern std::atomic<uint32_t> g_generation;
extern thread_local ThreadWriter* t_writer __attribute__((tls_model("initial-exec")));

// Binds the calling thread's writer to the current session; nullptr when no
// session records.
ThreadWriter* BindWriterSlow();

// The calling thread's writer bound to the current session, or nullptr when
// no session records. One TLS load and one compare when already bound.
inline ThreadWriter* CurrentWriter() {
  ThreadWriter* w = t_writer;
  if (VPSDK_LIKELY(w && w->generation == g_generation.load(std::memory_order_relaxed) &&
                   w->session))
    return w;
  return BindWriterSlow();
}

// The calling thread's writer, bound or not (created on first use).
ThreadWriter* ThreadState();

// Makes room for `need` bytes in w's chunk, handing the full chunk to the
// session (or discarding it when the session has stopped).
void MakeRoom(ThreadWriter* w, size_t need);

// Frames entered before this binding belong to another session (or to the
// parent of a forked process): their ends are not written. (profile.cc)
void ForgetFrames(ThreadWriter* w);

// Process-name setter shared by the C++ API (stores only).
void SetProcessNameStored(const char* name);

// Called by the session code.
std::shared_ptr<SessionCore> ActiveSession();

}  // namespace vpsdk

#endif  // VPSDK_SRC_INTERNAL_H_
