// Shared internals of the vpsdk runtime: the registries, the per-thread
// writer and the session core. Not installed.
#ifndef VPSDK_SRC_INTERNAL_H_
#define VPSDK_SRC_INTERNAL_H_

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "crash_image.h"
#include "vpsdk/tracing.h"

#define VPSDK_LIKELY(x) __builtin_expect(!!(x), 1)
#define VPSDK_UNLIKELY(x) __builtin_expect(!!(x), 0)

namespace vpsdk {

// Writes all of [data, data + n) to `fd`, resuming after signal
// interruptions and short writes; false on an error (errno says which) or
// a write that wrote nothing.
inline bool WriteFully(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

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
constexpr unsigned kPacketBits = image::kPacketBits;

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
  uint32_t num_chunks = 0;

  // Maps the chunk pool: the crash image `image_path` (created, locked and
  // initialised) or anonymous memory. Before the session is published.
  Status MapPool(const std::string& image_path);

  // Gives `w` a chunk with room for `need` bytes: one of the pool's (the
  // ring takes its oldest complete one back) or, when none is free, when
  // the packet is larger than a chunk or after stop, memory of its own.
  // Caller holds mu; w has no chunk.
  void AcquireChunk(ThreadWriter* w, size_t need);
  // Hands w's chunk over: complete in the buffer, or written to the file
  // (stream). Caller holds mu.
  void ReleaseChunk(ThreadWriter* w);
  // Stream mode: writes what `w` completed since the last hand-over. Caller
  // holds mu.
  void Scrape(ThreadWriter* w);

  Status Finish();  // writes the trace; caller holds mu
  bool WriteAll(const void* data, size_t n);  // caller holds mu
  std::string ClockSnapshotPacket();
  std::string TraceConfigPacket();
  Status io_status;  // first I/O error; under mu
  uint64_t Stat(int32_t stat);  // caller holds mu
  void ForkChild();  // in a forked child: let go of the image's lock
  void StartFlusher();
  void StopFlusher();  // not under mu
  // Faults in the pool chunks the writers take next, on a thread of its own,
  // so that a writer seldom takes a chunk whose pages still have to be
  // faulted in (the first pass over a ring: ~2-5 us per page on a VM).
  void StartPrefaulter();
  void StartFlusherThread();
  void StartPrefaulterThread();
  void StopPrefaulter();    // not under mu
  void ResumePrefaulter();  // after StopPrefaulter(), unless stopped; not under mu
  void SetStreamStart(size_t n);  // the output file's first n bytes are written

  // Statistics (under mu).
  uint64_t packets_accepted = 0, bytes_accepted = 0, chunks_accepted = 0;
  uint64_t packets_dropped = 0, chunks_discarded = 0, chunks_overwritten = 0;
  uint64_t packets_overwritten = 0, bytes_overwritten = 0;
  uint64_t sequences = 0;
  uint64_t service_packets = 0;  // the session's own: clock snapshots, stats
  std::string compress_path;  // absolute; deflated at stop (compression_level)
  std::string recovered_path;    // set by Session::Start

 private:
  struct Big {  // a chunk larger than the pool's (ring/discard): in memory
    std::string data;
    uint32_t packets;
    uint64_t order;
  };
  std::string TraceStatsPacket();
  void SyncStats();
  void StopThread(std::thread* thread, bool* stop, std::condition_variable* cv);  // not under mu
  // Stream mode: writes [from, to) of w's chunk to the file, announced in
  // the image first.
  void StreamWrite(ThreadWriter* w, size_t from, size_t to);
  uint8_t* ChunkData(uint32_t i) { return data_ + static_cast<size_t>(i) * chunk_size; }

  int fd_;
  uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  image::Header* hdr_ = nullptr;
  image::ChunkHeader* chunks_ = nullptr;
  uint8_t* data_ = nullptr;
  int image_fd_ = -1;
  std::string image_path_;
  std::vector<uint32_t> free_;       // free pool chunks
  std::vector<uint64_t> sealed_;     // committed word of each complete chunk
  std::vector<uint8_t> populated_;   // kNotPopulated, kPopulating, kPopulated per chunk
  uint32_t populated_count_ = 0;     // chunks populated
  std::thread prefaulter_;
  std::condition_variable prefault_cv_;
  bool prefault_stop_ = false;       // under mu
  bool prefault_waiting_ = false;    // under mu
  std::deque<uint32_t> complete_;    // complete pool chunks, oldest first
  std::deque<Big> big_;
  size_t big_bytes_ = 0;
  uint64_t next_order_ = 0;
  uint64_t complete_bytes_ = 0;      // bytes in complete_ and big_
  std::thread flusher_;
  std::condition_variable flush_cv_;
  bool flusher_stop_ = false;        // under mu
};

// --- the per-thread writer ----------------------------------------------------

// A call entered on a thread (whole-program tracing, profile.cc).
struct CallFrame {
  uint32_t func;
  uint32_t state;   // kFrame* in profile.cc
  uint64_t ts;      // entry time, for calls still deciding (min duration)
  const void* key;  // vp_func_enter_keyed's (nullptr: none)
};

// The calls entered on a thread, innermost last. Unlike a std::vector, a
// push where there is room (Room(), PushInRoom()) has no growth path in it:
// profile.cc's fused enter makes no call at all.
class CallStack {
 public:
  CallStack() = default;
  CallStack(const CallStack&) = delete;
  CallStack& operator=(const CallStack&) = delete;
  ~CallStack() { std::free(data_); }
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  bool Room() const { return size_ < cap_; }
  CallFrame& back() { return data_[size_ - 1]; }
  CallFrame& operator[](size_t i) { return data_[i]; }
  CallFrame* begin() { return data_; }
  CallFrame* end() { return data_ + size_; }
  void pop_back() { size_--; }
  CallFrame& PushInRoom() { return data_[size_++]; }
  // Grows when full; nullptr (nothing pushed) when out of memory.
  CallFrame* Push() {
    if (size_ == cap_) {
      size_t cap = cap_ ? 2 * size_t{cap_} : 64;
      if (cap > UINT32_MAX) return nullptr;
      void* p = std::realloc(data_, cap * sizeof(CallFrame));
      if (!p) return nullptr;
      data_ = static_cast<CallFrame*>(p);
      cap_ = static_cast<uint32_t>(cap);
    }
    return &data_[size_++];
  }

 private:
  CallFrame* data_ = nullptr;
  uint32_t size_ = 0;
  uint32_t cap_ = 0;
};

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

  // The chunk. `buf`, `cap` and `committed` change only under session->mu;
  // the owner writes at [pos, cap) and publishes complete packets through
  // `*committed`: the chunk's header in the pool (the crash image), or
  // `own_committed` for memory of its own (`heap`).
  uint8_t* buf = nullptr;
  size_t cap = 0;
  size_t pos = 0;
  uint32_t packets = 0;                 // complete packets since offset 0
  std::atomic<uint64_t> own_committed{0};
  std::atomic<uint64_t>* committed = &own_committed;  // pos << kPacketBits | packets
  uint64_t handed = 0;                  // stream: same encoding; under session->mu
  uint32_t chunk = image::kNoChunk;     // the pool chunk `buf` is, or kNoChunk
  uint64_t next_chunk_index = 0;        // of this sequence
  uint8_t* heap = nullptr;              // owned; `buf` when not in the pool
  size_t heap_cap = 0;

  // Incremental state.
  bool need_reset = true;
  bool first_packet = true;
  std::atomic<bool> packets_lost{false};
  uint32_t epoch = 1;
  // Timestamps (writer_inl.h): the session's encoding, taken at each reset,
  // and the sequence's time so far as a reader adds it up: on the
  // incremental clock a packet carries the delta from it.
  bool incremental_ts = false;
  uint32_t ts_unit = 1;
  bool plain_ts = false;  // incremental_ts in units of 1 ns: profile.cc's fused path
  uint64_t last_ts = 0;
  std::vector<uint32_t> name_seen, arg_seen, track_seen;
  std::vector<uint32_t> track_serial;  // TrackInfo::serial when described
  uint32_t category_seen[kMaxCategories] = {};

  // Whole-program tracing (profile.cc): the calls entered on this thread,
  // innermost last, and the functions described on this sequence.
  using Frame = CallFrame;
  CallStack frames;
  std::vector<uint32_t> func_seen;

  // Slice nesting on the thread track: which begins were recorded.
  static constexpr uint32_t kMaxDepth = 4096;
  uint32_t depth = 0;
  uint64_t recorded[kMaxDepth / 64] = {};

  void Publish(uint8_t* end) {
    pos = static_cast<size_t>(end - buf);
    ++packets;
    committed->store((static_cast<uint64_t>(pos) << kPacketBits) | packets,
                     std::memory_order_release);
  }
};

extern std::atomic<uint32_t> g_generation;
// `__thread`: no initialisation check at each use (a pointer, zero at start).
extern __thread ThreadWriter* t_writer __attribute__((tls_model("initial-exec")));

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
