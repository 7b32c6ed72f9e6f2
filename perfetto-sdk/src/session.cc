// The process-wide session: categories, start/flush/stop, the buffer and the
// output file, writer binding and fork handling.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <system_error>

#include "internal.h"
#include "vpsdk/clock.h"
#include "vpsdk/field_numbers.h"
#include "vpsdk/proto_writer.h"
#include "deflate.h"

namespace vpsdk {

std::atomic<uint8_t> g_category_enabled[kMaxCategories];
std::atomic<uint32_t> g_generation{1};
__thread ThreadWriter* t_writer __attribute__((tls_model("initial-exec"))) = nullptr;

void RegistryForkPrepare();
void RegistryForkParent();
void RegistryForkChild();

namespace {

// Guards the current session, the category table and their enabled flags.
std::mutex g_mu;
// Leaked on purpose: never destroyed while a thread may still trace at exit.
std::shared_ptr<SessionCore>& g_current = *new std::shared_ptr<SessionCore>();
const InternedString* g_categories[kMaxCategories];  // written under g_mu
std::atomic<uint32_t> g_num_categories{1};           // 0 is "uncategorized"
std::atomic<uint32_t> g_fork_epoch{0};

InternedString* NewString(const std::string& s) {
  auto* e = static_cast<InternedString*>(std::malloc(sizeof(InternedString) + s.size()));
  e->len = static_cast<uint32_t>(s.size());
  std::memcpy(e->data, s.data(), s.size());
  e->data[s.size()] = 0;
  return e;
}

bool ShouldRecord(const SessionConfig& cfg, const std::string& name) {
  auto has = [&](const std::vector<std::string>& v) {
    return std::find(v.begin(), v.end(), name) != v.end();
  };
  if (has(cfg.disabled_categories)) return false;
  return cfg.enabled_categories.empty() || has(cfg.enabled_categories);
}

// Sets every flag for `cfg` (nullptr: all off). Caller holds g_mu.
void ApplyCategoryFlagsLocked(const SessionConfig* cfg) {
  uint32_t n = g_num_categories.load(std::memory_order_relaxed);
  for (uint32_t i = 1; i < n; i++) {
    bool on = cfg && ShouldRecord(*cfg, std::string(g_categories[i]->data,
                                                     g_categories[i]->len));
    g_category_enabled[i].store(on ? 1 : 0, std::memory_order_release);
  }
  // Flag 0 last: it is also "a session records", checked before the others.
  g_category_enabled[0].store(cfg ? 1 : 0, std::memory_order_release);
}

struct WriterHolder {
  std::shared_ptr<ThreadWriter> writer;
  ~WriterHolder();
};
thread_local WriterHolder t_holder;

int32_t CurrentTid() { return static_cast<int32_t>(syscall(SYS_gettid)); }

// Removes `w` from its session (handing over what it completed) unless the
// session is gone or belongs to the parent of this forked process.
void DetachWriter(ThreadWriter* w, bool hand_over) {
  std::shared_ptr<SessionCore> s = std::move(w->session);
  if (!s || s->pid != ProcessPid()) return;
  std::lock_guard<std::mutex> lock(s->mu);
  if (s->stopped) return;
  if (hand_over) s->ReleaseChunk(w);
  auto& ws = s->writers;
  for (size_t i = 0; i < ws.size(); i++) {
    if (ws[i].get() == w) {
      ws.erase(ws.begin() + static_cast<long>(i));
      break;
    }
  }
}

WriterHolder::~WriterHolder() {
  if (!writer) return;
  t_writer = nullptr;
  DetachWriter(writer.get(), /*hand_over=*/true);
}

// No thread of ours crosses a fork: the recording session's prefaulter
// stops before it (a child of a multi-threaded process inherits the locks
// its other threads held, and Python warns about it) and starts again in
// the parent.
void ForkPrepare() {
  g_mu.lock();
  if (g_current) g_current->StopPrefaulter();
  RegistryForkPrepare();
}
void ForkParent() {
  RegistryForkParent();
  if (g_current) g_current->ResumePrefaulter();
  g_mu.unlock();
}
void ForkChild() {
  RegistryForkChild();
  // The parent's session is not ours: never touch it again (its mutex may be
  // held by a thread that does not exist here). It is kept alive on purpose.
  if (g_current) {
    g_current->ForkChild();
    new std::shared_ptr<SessionCore>(std::move(g_current));
  }
  g_current.reset();
  ApplyCategoryFlagsLocked(nullptr);
  g_fork_epoch.fetch_add(1);
  g_generation.fetch_add(1);
  if (ThreadWriter* w = t_writer) {
    w->tid = CurrentTid();
    w->uuid = UuidLsb();
    if (w->session) new std::shared_ptr<SessionCore>(std::move(w->session));
  }
  g_mu.unlock();
}

std::once_flag g_fork_once;

}  // namespace

// --- categories ----------------------------------------------------------------

uint32_t RegisterCategory(const char* name) {
  if (!name || !*name) return 0;
  std::call_once(g_fork_once, [] { pthread_atfork(ForkPrepare, ForkParent, ForkChild); });
  std::lock_guard<std::mutex> lock(g_mu);
  uint32_t n = g_num_categories.load(std::memory_order_relaxed);
  for (uint32_t i = 1; i < n; i++)
    if (std::strcmp(g_categories[i]->data, name) == 0) return i;
  if (n >= kMaxCategories) return 0;
  g_categories[n] = NewString(name);
  if (g_current) {
    g_category_enabled[n].store(ShouldRecord(g_current->cfg, name) ? 1 : 0,
                                std::memory_order_release);
  }
  g_num_categories.store(n + 1, std::memory_order_release);
  return n;
}

const InternedString* CategoryString(uint32_t id) {
  if (id == 0 || id >= g_num_categories.load(std::memory_order_acquire)) return nullptr;
  return g_categories[id];
}

// --- writers -----------------------------------------------------------------

ThreadWriter::ThreadWriter() : tid(CurrentTid()), uuid(UuidLsb()) {}
ThreadWriter::~ThreadWriter() { std::free(heap); }

ThreadWriter* ThreadState() {
  if (t_writer) return t_writer;
  if (!t_holder.writer) t_holder.writer = std::make_shared<ThreadWriter>();
  t_writer = t_holder.writer.get();
  return t_writer;
}

ThreadWriter* BindWriterSlow() {
  ThreadWriter* w = ThreadState();
  std::shared_ptr<SessionCore> s;
  uint32_t gen;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    s = g_current;
    gen = g_generation.load(std::memory_order_relaxed);
  }
  if (w->generation == gen && w->session == s) return s ? w : nullptr;
  DetachWriter(w, /*hand_over=*/true);
  w->generation = gen;
  if (!s) return nullptr;
  std::lock_guard<std::mutex> lock(s->mu);
  if (s->stopped) return nullptr;
  w->session = s;
  w->sequence_id = s->next_sequence_id++;
  s->sequences++;
  w->next_chunk_index = 0;
  w->chunk = image::kNoChunk;
  s->AcquireChunk(w, 0);
  w->need_reset = true;
  w->first_packet = true;
  w->packets_lost.store(false, std::memory_order_relaxed);
  w->depth = 0;
  ForgetFrames(w);
  s->writers.push_back(t_holder.writer);
  return w;
}

void MakeRoom(ThreadWriter* w, size_t need) {
  SessionCore* s = w->session.get();
  std::lock_guard<std::mutex> lock(s->mu);
  if (!s->stopped) s->ReleaseChunk(w);
  w->chunk = image::kNoChunk;
  s->AcquireChunk(w, need);
  if (s->cfg.mode != BufferMode::kStream) w->need_reset = true;
}

// --- the session core --------------------------------------------------------------

namespace {

constexpr uint64_t kPacketMask = (uint64_t{1} << kPacketBits) - 1;
enum : uint8_t { kNotPopulated = 0, kPopulating = 1, kPopulated = 2 };
// How many chunks the prefaulter keeps ready ahead of the writers.
constexpr size_t kPrefaultAhead = 8;
#ifdef MADV_POPULATE_WRITE
constexpr int kMadvPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kMadvPopulateWrite = 23;
#endif

inline size_t CommittedBytes(uint64_t c) { return static_cast<size_t>(c >> kPacketBits); }
inline uint32_t CommittedPackets(uint64_t c) { return static_cast<uint32_t>(c & kPacketMask); }

std::string ErrnoText(int e) { return std::strerror(e); }

}  // namespace

SessionCore::SessionCore(const SessionConfig& c, int fd, uint32_t gen)
    : cfg(c), generation(gen), pid(ProcessPid()), fd_(fd) {
  next_sequence_id = cfg.sequence_base + 2;
  buffer_bytes = static_cast<size_t>(cfg.buffer_kb) * 1024;
  if (cfg.mode == BufferMode::kStream) {
    chunk_size = 64 * 1024;
    // One chunk per writing thread; more threads write from memory of
    // their own (still streamed, not crash-safe).
    num_chunks = static_cast<uint32_t>(std::min<size_t>(64, std::max<size_t>(8, buffer_bytes / chunk_size)));
  } else {
    chunk_size = std::min<size_t>(64 * 1024, std::max<size_t>(4096, buffer_bytes / 16));
    num_chunks = static_cast<uint32_t>(std::max<size_t>(1, buffer_bytes / chunk_size));
  }
}

SessionCore::~SessionCore() {
  StopPrefaulter();
  if (fd_ >= 0) close(fd_);
  if (image_fd_ >= 0) close(image_fd_);
  // No writer holds the session any more, so none writes into the pool.
  if (map_) munmap(map_, map_size_);
}

Status SessionCore::MapPool(const std::string& image_path) {
  uint64_t data_offset = image::DataOffset(num_chunks);
  map_size_ = static_cast<size_t>(data_offset + uint64_t{num_chunks} * chunk_size);
  if (image_path.empty()) {
    void* m = mmap(nullptr, map_size_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      map_size_ = 0;
      return Status::Error(kNoMemory, "cannot map the trace buffer: " + ErrnoText(errno));
    }
    map_ = static_cast<uint8_t*>(m);
  } else {
    // A new file, locked, then renamed into place: whoever finds the image
    // finds it locked while this process lives.
    std::string tmp = image_path + ".new-" + std::to_string(ProcessPid());
    int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
      return Status::Error(kIoError, "cannot create the crash-safe buffer '" + tmp + "': " +
                                         ErrnoText(errno));
    auto fail = [&](const std::string& what, int e) {
      close(fd);
      unlink(tmp.c_str());
      return Status::Error(kIoError, what + ErrnoText(e));
    };
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) return fail("cannot lock '" + tmp + "': ", errno);
    // Reserved now: a full disk must fail here, not as SIGBUS when a page
    // of the mapping is first written.
    int e = posix_fallocate(fd, 0, static_cast<off_t>(map_size_));
    if (e != 0)
      return fail("cannot reserve " + std::to_string(map_size_ >> 10) +
                      " KiB for the crash-safe buffer '" + image_path + "': ", e);
    void* m = mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return fail("cannot map '" + tmp + "': ", errno);
    if (rename(tmp.c_str(), image_path.c_str()) != 0) {
      int re = errno;
      munmap(m, map_size_);
      return fail("cannot create '" + image_path + "': ", re);
    }
    map_ = static_cast<uint8_t*>(m);
    image_fd_ = fd;
    image_path_ = image_path;
  }
  hdr_ = reinterpret_cast<image::Header*>(map_);
  chunks_ = reinterpret_cast<image::ChunkHeader*>(map_ + image::kHeaderSize);
  data_ = map_ + data_offset;
  // The header (the file reads as zeros until written).
  std::memcpy(hdr_->magic, image::kMagic, sizeof(image::kMagic));
  hdr_->header_size = image::kHeaderSize;
  hdr_->chunk_header_size = image::kChunkHeaderSize;
  hdr_->chunk_size = static_cast<uint32_t>(chunk_size);
  hdr_->num_chunks = num_chunks;
  hdr_->mode = static_cast<uint32_t>(cfg.mode);
  hdr_->data_offset = data_offset;
  hdr_->pid = static_cast<uint32_t>(pid);
  hdr_->sequence_base = cfg.sequence_base;
  hdr_->buffer_bytes = buffer_bytes;
  hdr_->start_boottime_ns = BootTimeNs();
  hdr_->pending_chunk = image::kNoChunk;
  std::string snap = ClockSnapshotPacket();
  if (snap.size() <= image::kMaxClockSnapshot) {
    std::memcpy(hdr_->clock_snapshot, snap.data(), snap.size());
    hdr_->clock_snapshot_len = static_cast<uint32_t>(snap.size());
  }
  char abs[PATH_MAX];
  std::string out = cfg.output_path;
  if (out[0] != '/' && getcwd(abs, sizeof(abs))) out = std::string(abs) + "/" + out;
  if (out.size() < image::kMaxOutputPath) std::memcpy(hdr_->output_path, out.data(), out.size());
  sealed_.assign(num_chunks, 0);
  populated_.assign(num_chunks, 0);
  free_.reserve(num_chunks);
  for (uint32_t i = num_chunks; i-- > 0;) free_.push_back(i);
  // Version and state last: an image is recoverable from here on.
  hdr_->version = image::kVersion;
  hdr_->state.store(image::kImageRunning, std::memory_order_release);
  return Status::Ok();
}

void SessionCore::SyncStats() {
  hdr_->chunks_overwritten = chunks_overwritten;
  hdr_->packets_overwritten = packets_overwritten;
  hdr_->bytes_overwritten = bytes_overwritten;
  hdr_->chunks_discarded = chunks_discarded;
  hdr_->packets_dropped = packets_dropped;
}

void SessionCore::AcquireChunk(ThreadWriter* w, size_t need) {
  uint32_t idx = image::kNoChunk;
  if (!stopped && need <= chunk_size) {
    if (!free_.empty()) {
      idx = free_.back();
      free_.pop_back();
    } else if (cfg.mode == BufferMode::kRing && !complete_.empty()) {
      // The ring takes its oldest chunk back (a big one first if older).
      while (!big_.empty() && big_.front().order < chunks_[complete_.front()].order) {
        Big& b = big_.front();
        chunks_overwritten++;
        packets_overwritten += b.packets;
        bytes_overwritten += b.data.size();
        complete_bytes_ -= b.data.size();
        big_bytes_ -= b.data.size();
        big_.pop_front();
      }
      idx = complete_.front();
      complete_.pop_front();
      image::ChunkHeader& old = chunks_[idx];
      uint64_t c = sealed_[idx];
      old.state.store(image::kChunkFree, std::memory_order_release);
      // A process that dies from here on must find the chunk free before
      // any of its fields change (only the compiler could reorder: a dying
      // process's executed stores all reach the page cache).
      std::atomic_signal_fence(std::memory_order_seq_cst);
      chunks_overwritten++;
      packets_overwritten += CommittedPackets(c);
      bytes_overwritten += CommittedBytes(c);
      complete_bytes_ -= CommittedBytes(c);
      SyncStats();
    }
  }
  w->pos = 0;
  w->packets = 0;
  w->handed = 0;
  uint64_t index = w->next_chunk_index++;
  if (idx != image::kNoChunk) {
    image::ChunkHeader& ch = chunks_[idx];
    ch.committed.store(0, std::memory_order_relaxed);
    ch.sequence_id = w->sequence_id;
    ch.chunk_index = index;
    ch.order = 0;
    ch.flushed = 0;
    ch.state.store(image::kChunkWriting, std::memory_order_release);
    // The chunk's pages faulted in with one call instead of one fault per
    // page on the hot path (Linux 5.14+; elsewhere a no-op error).
    if (populated_[idx] != kPopulated) {  // (the prefaulter may be at it too: harmless)
      madvise(ChunkData(idx), chunk_size, kMadvPopulateWrite);
      populated_[idx] = kPopulated;  // counted once: by whoever marks it populated first
      populated_count_++;
    }
    if (prefault_waiting_) prefault_cv_.notify_one();  // one chunk fewer ahead
    w->chunk = idx;
    w->buf = ChunkData(idx);
    w->cap = chunk_size;
    w->committed = &ch.committed;
    return;
  }
  size_t want = std::max(need, chunk_size);
  if (w->heap_cap < want || w->heap_cap > 4 * want) {
    void* p = std::realloc(w->heap, want);
    if (!p) std::abort();  // out of memory while tracing
    w->heap = static_cast<uint8_t*>(p);
    w->heap_cap = want;
  }
  w->chunk = image::kNoChunk;
  w->buf = w->heap;
  w->cap = w->heap_cap;
  w->own_committed.store(0, std::memory_order_relaxed);
  w->committed = &w->own_committed;
}

void SessionCore::StreamWrite(ThreadWriter* w, size_t from, size_t to) {
  if (to <= from) return;
  uint64_t off = hdr_->stream_bytes.load(std::memory_order_relaxed);
  hdr_->pending_chunk = w->chunk;
  hdr_->pending_offset = off;
  hdr_->pending_from = static_cast<uint32_t>(std::min<size_t>(from, UINT32_MAX));
  hdr_->pending_to = static_cast<uint32_t>(std::min<size_t>(to, UINT32_MAX));
  hdr_->pending.store(1, std::memory_order_release);
  bool ok = WriteAll(w->buf + from, to - from);
  if (w->chunk != image::kNoChunk) chunks_[w->chunk].flushed = static_cast<uint32_t>(to);
  if (ok) hdr_->stream_bytes.store(off + (to - from), std::memory_order_relaxed);
  hdr_->pending.store(0, std::memory_order_release);
}

void SessionCore::Scrape(ThreadWriter* w) {
  if (cfg.mode != BufferMode::kStream) return;
  uint64_t c = w->committed->load(std::memory_order_acquire);
  size_t from = CommittedBytes(w->handed), to = CommittedBytes(c);
  if (to <= from) return;
  uint32_t packets = CommittedPackets(c) - CommittedPackets(w->handed);
  StreamWrite(w, from, to);
  if (io_status.ok()) {
    packets_accepted += packets;
    bytes_accepted += to - from;
    chunks_accepted++;
  } else {
    packets_dropped += packets;
  }
  w->handed = c;
}

void SessionCore::ReleaseChunk(ThreadWriter* w) {
  uint64_t c = w->committed->load(std::memory_order_acquire);
  size_t bytes = CommittedBytes(c);
  uint32_t packets = CommittedPackets(c);
  uint32_t idx = w->chunk;
  w->chunk = image::kNoChunk;
  if (cfg.mode == BufferMode::kStream) {
    Scrape(w);
    if (idx != image::kNoChunk) {
      chunks_[idx].state.store(image::kChunkFree, std::memory_order_release);
      free_.push_back(idx);
    }
    return;
  }
  if (idx != image::kNoChunk) {
    image::ChunkHeader& ch = chunks_[idx];
    if (bytes == 0) {
      ch.state.store(image::kChunkFree, std::memory_order_release);
      free_.push_back(idx);
      return;
    }
    ch.order = next_order_++;
    sealed_[idx] = c;  // a writer racing with stop may add packets after this
    ch.state.store(image::kChunkComplete, std::memory_order_release);
    complete_.push_back(idx);
    complete_bytes_ += bytes;
  } else {
    if (bytes == 0) return;
    bool keep = false;
    if (w->cap > chunk_size) {
      // Larger than a chunk: kept in memory (not in the crash image), up
      // to half the buffer; the ring drops its oldest big ones for it.
      size_t limit = buffer_bytes / 2;
      if (cfg.mode == BufferMode::kRing) {
        while (big_bytes_ + bytes > limit && !big_.empty()) {
          Big& b = big_.front();
          chunks_overwritten++;
          packets_overwritten += b.packets;
          bytes_overwritten += b.data.size();
          complete_bytes_ -= b.data.size();
          big_bytes_ -= b.data.size();
          big_.pop_front();
        }
      }
      keep = big_bytes_ + bytes <= limit;
      if (keep) {
        big_.push_back(Big{std::string(reinterpret_cast<const char*>(w->buf), bytes), packets,
                           next_order_++});
        big_bytes_ += bytes;
        complete_bytes_ += bytes;
      }
    }
    if (!keep) {
      // No free chunk (discard: full; ring: all being written) or too big.
      chunks_discarded++;
      packets_dropped += packets;
      w->packets_lost.store(true, std::memory_order_relaxed);
      SyncStats();
      return;
    }
  }
  packets_accepted += packets;
  bytes_accepted += bytes;
  chunks_accepted++;
}

void SessionCore::ForkChild() {
  // The lock (flock) belongs to the open file, shared with the parent:
  // closing the child's descriptor leaves the parent's lock alone and lets
  // it go when the parent dies.
  if (image_fd_ >= 0) close(image_fd_);
  image_fd_ = -1;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  // The shared mapping holds the open file (and so the lock) too: it is
  // replaced in place by private anonymous memory, so pointers into it
  // stay valid in the child and nothing it does reaches the image.
  if (map_ && !image_path_.empty())
    mmap(map_, map_size_, PROT_READ | PROT_WRITE,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}

// The session's own threads are helpers: where one cannot be started (a
// process or memory limit) tracing goes on without it, said for the flusher.
void SessionCore::StartFlusher() {
  if (cfg.mode != BufferMode::kStream || cfg.flush_period_ms == 0) return;
  try {
    StartFlusherThread();
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "vperfetto: no thread for the periodic flush (%s): full chunks and Flush() still write\n",
                 e.what());
  }
}

void SessionCore::StartPrefaulter() {
  if (num_chunks == 0) return;
  try {
    StartPrefaulterThread();
  } catch (const std::system_error&) {
    // The writers fault their pages in themselves.
  }
}

void SessionCore::StartFlusherThread() {
  flusher_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu);
    auto period = std::chrono::milliseconds(cfg.flush_period_ms);
    while (!flusher_stop_) {
      flush_cv_.wait_for(lock, period);
      if (flusher_stop_ || stopped) break;
      for (auto& w : writers) Scrape(w.get());
    }
  });
}

void SessionCore::StartPrefaulterThread() {
  prefaulter_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu);
    while (!prefault_stop_ && !stopped && populated_count_ < num_chunks) {
      // Writers take free chunks from the back of free_ (and, once a ring
      // has none, the oldest complete one, populated long ago).
      uint32_t idx = image::kNoChunk;
      size_t n = free_.size();
      for (size_t j = 0; j < std::min(n, kPrefaultAhead) && idx == image::kNoChunk; j++)
        if (populated_[free_[n - 1 - j]] == kNotPopulated) idx = free_[n - 1 - j];
      if (idx == image::kNoChunk) {
        prefault_waiting_ = true;
        prefault_cv_.wait(lock);
        prefault_waiting_ = false;
        continue;
      }
      populated_[idx] = kPopulating;
      lock.unlock();
      int r = madvise(ChunkData(idx), chunk_size, kMadvPopulateWrite);
      lock.lock();
      if (r != 0) break;  // not supported here (Linux < 5.14): the writers fault pages in
      if (populated_[idx] == kPopulating) {
        populated_[idx] = kPopulated;
        populated_count_++;
      }
    }
  });
}

// Tells one of the session's threads to stop (its flag, under mu) and joins it.
void SessionCore::StopThread(std::thread* thread, bool* stop, std::condition_variable* cv) {
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(mu);
    *stop = true;
    t = std::move(*thread);
  }
  cv->notify_all();
  if (t.joinable()) t.join();
}

void SessionCore::StopPrefaulter() { StopThread(&prefaulter_, &prefault_stop_, &prefault_cv_); }
void SessionCore::ResumePrefaulter() {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (stopped || prefaulter_.joinable()) return;
    prefault_stop_ = false;
  }
  StartPrefaulter();
}
void SessionCore::StopFlusher() { StopThread(&flusher_, &flusher_stop_, &flush_cv_); }

void SessionCore::SetStreamStart(size_t n) {
  std::lock_guard<std::mutex> lock(mu);
  hdr_->stream_bytes.store(n, std::memory_order_release);
}

bool SessionCore::WriteAll(const void* data, size_t n) {
  if (!io_status.ok()) return false;
  errno = 0;
  if (WriteFully(fd_, data, n)) return true;
  io_status = Status::Error(kIoError, std::string("writing the trace failed: ") +
                                          (errno ? std::strerror(errno) : "short write"));
  return false;
}

namespace {

// Frames a finished TracePacket body as a Trace.packet field.
void AppendPacket(std::string* out, const std::string& body) {
  uint8_t hdr[16];
  uint8_t* p = hdr;
  p = proto::WriteVarint(proto::MakeTag(pf::Trace::kPacket, proto::kLengthDelimited), p);
  p = proto::WriteVarint(body.size(), p);
  out->append(reinterpret_cast<char*>(hdr), static_cast<size_t>(p - hdr));
  out->append(body);
}

// A growable buffer for cold-path packets: reserve, write, trim.
struct PacketBuf {
  std::string s;
  explicit PacketBuf(size_t bound) { s.resize(bound); }
  uint8_t* data() { return reinterpret_cast<uint8_t*>(&s[0]); }
  void Finish(uint8_t* end) { s.resize(static_cast<size_t>(end - data())); }
};

}  // namespace

std::string SessionCore::ClockSnapshotPacket() {
  PacketBuf b(256);
  ProtoWriter pw(b.data());
  uint64_t boot = BootTimeNs();
  struct { uint32_t id; uint64_t ts; } clocks[] = {
      {pf::BuiltinClock::kBoottime, boot},
      {pf::BuiltinClock::kMonotonic, ReadClockNs(CLOCK_MONOTONIC)},
      {pf::BuiltinClock::kRealtime, ReadClockNs(CLOCK_REALTIME)},
      {pf::BuiltinClock::kMonotonicRaw, ReadClockNs(CLOCK_MONOTONIC_RAW)},
      {pf::BuiltinClock::kTsc, ReadTsc()},
  };
  pw.Varint(pf::TracePacket::kTimestamp, boot);
  pw.Varint(pf::TracePacket::kTrustedPacketSequenceId, cfg.sequence_base + 1);
  uint8_t* snap = pw.BeginNested(pf::TracePacket::kClockSnapshot);
  for (auto& c : clocks) {
    if (c.id == pf::BuiltinClock::kTsc && !VPSDK_HAS_TSC) continue;
    uint8_t* cl = pw.BeginNested(pf::ClockSnapshot::kClocks);
    pw.Varint(pf::ClockSnapshot::Clock::kClockId, c.id);
    pw.Varint(pf::ClockSnapshot::Clock::kTimestamp, c.ts);
    pw.EndNested(cl);
  }
  pw.Varint(pf::ClockSnapshot::kPrimaryTraceClock, pf::BuiltinClock::kBoottime);
  pw.EndNested(snap);
  b.Finish(pw.pos());
  std::string out;
  AppendPacket(&out, b.s);
  return out;
}

// The session's settings as the TraceConfig a tracing service would have
// written: the buffer (ring and discard) and the track_event data source,
// whose TrackEventConfig says how its timestamps are encoded.
std::string SessionCore::TraceConfigPacket() {
  size_t bound = 256;
  for (const auto* v : {&cfg.enabled_categories, &cfg.disabled_categories})
    for (const std::string& c : *v) bound += c.size() + 16;
  PacketBuf b(bound);
  ProtoWriter pw(b.data());
  namespace TC = pf::TraceConfig;
  pw.Varint(pf::TracePacket::kTimestamp, BootTimeNs());
  pw.Varint(pf::TracePacket::kTrustedPacketSequenceId, cfg.sequence_base + 1);
  uint8_t* tc = pw.BeginNested(pf::TracePacket::kTraceConfig);
  if (cfg.mode != BufferMode::kStream) {
    uint8_t* buf = pw.BeginNested(TC::kBuffers);
    pw.Varint(TC::BufferConfig::kSizeKb, cfg.buffer_kb);
    pw.Varint(TC::BufferConfig::kFillPolicy, cfg.mode == BufferMode::kRing
                                                 ? TC::BufferConfig::kRingBuffer
                                                 : TC::BufferConfig::kDiscard);
    pw.EndNested(buf);
  }
  uint8_t* ds = pw.BeginNested(TC::kDataSources);
  uint8_t* dsc = pw.BeginNested(TC::DataSource::kConfig);
  pw.String(pf::DataSourceConfig::kName, "track_event", 11);
  uint8_t* te = pw.BeginNested(pf::DataSourceConfig::kTrackEventConfig);
  for (const std::string& c : cfg.disabled_categories)
    pw.String(pf::TrackEventConfig::kDisabledCategories, c.data(), c.size());
  for (const std::string& c : cfg.enabled_categories)
    pw.String(pf::TrackEventConfig::kEnabledCategories, c.data(), c.size());
  pw.Bool(pf::TrackEventConfig::kDisableIncrementalTimestamps, !cfg.incremental_timestamps);
  if (cfg.incremental_timestamps && cfg.timestamp_unit_ns > 1)
    pw.Varint(pf::TrackEventConfig::kTimestampUnitMultiplier, cfg.timestamp_unit_ns);
  pw.EndNested(te);
  pw.EndNested(dsc);
  pw.EndNested(ds);
  if (cfg.compression_level)
    pw.Varint(TC::kCompressionType, TC::kCompressionTypeDeflate);
  pw.EndNested(tc);
  b.Finish(pw.pos());
  std::string out;
  AppendPacket(&out, b.s);
  return out;
}

std::string SessionCore::TraceStatsPacket() {
  PacketBuf b(256);
  ProtoWriter pw(b.data());
  pw.Varint(pf::TracePacket::kTimestamp, BootTimeNs());
  pw.Varint(pf::TracePacket::kTrustedPacketSequenceId, cfg.sequence_base + 1);
  uint8_t* ts = pw.BeginNested(pf::TracePacket::kTraceStats);
  uint8_t* bs = pw.BeginNested(pf::TraceStats::kBufferStats);
  if (cfg.mode != BufferMode::kStream)
    pw.Varint(pf::TraceStats::BufferStats::kBufferSize, buffer_bytes);
  pw.Varint(pf::TraceStats::BufferStats::kBytesWritten, bytes_accepted);
  pw.Varint(pf::TraceStats::BufferStats::kChunksWritten, chunks_accepted);
  pw.Varint(pf::TraceStats::BufferStats::kChunksOverwritten, chunks_overwritten);
  pw.Varint(pf::TraceStats::BufferStats::kBytesOverwritten, bytes_overwritten);
  pw.Varint(pf::TraceStats::BufferStats::kChunksDiscarded, chunks_discarded);
  pw.Varint(pf::TraceStats::BufferStats::kTraceWriterPacketLoss,
            packets_dropped + packets_overwritten);
  pw.EndNested(bs);
  pw.Varint(pf::TraceStats::kChunksDiscarded, chunks_discarded);
  pw.EndNested(ts);
  b.Finish(pw.pos());
  std::string out;
  AppendPacket(&out, b.s);
  return out;
}

uint64_t SessionCore::Stat(int32_t stat) {
  // Packets and bytes being written into chunks count once complete.
  uint64_t live_packets = 0, live_bytes = 0;
  if (!stopped && cfg.mode != BufferMode::kStream) {
    for (auto& w : writers) {
      uint64_t c = w->committed->load(std::memory_order_acquire);
      if (w->chunk == image::kNoChunk && w->cap <= chunk_size) continue;  // to be dropped
      live_packets += CommittedPackets(c);
      live_bytes += CommittedBytes(c);
    }
  }
  switch (stat) {
    case kStatPacketsWritten:
      return packets_accepted + live_packets - packets_overwritten + service_packets;
    case kStatBytesWritten: return bytes_accepted + live_bytes;
    case kStatPacketsDropped: return packets_dropped + packets_overwritten;
    case kStatChunksDiscarded: return chunks_discarded;
    case kStatChunksOverwritten: return chunks_overwritten;
    case kStatSequences: return sequences;
    case kStatBufferBytes: return stopped ? 0 : complete_bytes_ + live_bytes;
    default: return 0;
  }
}

Status SessionCore::Finish() {
  for (auto& w : writers) ReleaseChunk(w.get());
  std::string footer = ClockSnapshotPacket();
  footer += TraceStatsPacket();
  service_packets += 2;
  if (cfg.mode != BufferMode::kStream) {
    // The header went to the file at start; the buffer follows in the order
    // the chunks filled, which keeps each sequence's packets in order.
    std::vector<std::pair<uint64_t, const Big*>> order;
    for (uint32_t idx : complete_) order.emplace_back(chunks_[idx].order, nullptr);
    for (const Big& b : big_) order.emplace_back(b.order, &b);
    std::vector<uint32_t> by_order(complete_.begin(), complete_.end());
    std::sort(by_order.begin(), by_order.end(),
              [&](uint32_t x, uint32_t y) { return chunks_[x].order < chunks_[y].order; });
    std::sort(order.begin(), order.end(),
              [](const std::pair<uint64_t, const Big*>& x, const std::pair<uint64_t, const Big*>& y) {
                return x.first < y.first;
              });
    size_t next_pool = 0;
    for (auto& o : order) {
      if (o.second) {
        WriteAll(o.second->data.data(), o.second->data.size());
      } else {
        uint32_t idx = by_order[next_pool++];
        WriteAll(ChunkData(idx), CommittedBytes(sealed_[idx]));
      }
    }
    complete_.clear();
    big_.clear();
    complete_bytes_ = big_bytes_ = 0;
  }
  WriteAll(footer.data(), footer.size());
  if (fd_ >= 0 && close(fd_) != 0 && io_status.ok())
    io_status = Status::Error(kIoError, std::string("closing the trace failed: ") + std::strerror(errno));
  fd_ = -1;
  if (map_) {
    if (io_status.ok() && hdr_) hdr_->state.store(image::kImageStopped, std::memory_order_release);
    // The trace is written: the image has served (on an I/O error it stays,
    // recoverable). Its memory goes back now; a thread still racing with
    // the stop may write into the mapping until it lets the session go.
    if (!image_path_.empty() && io_status.ok()) unlink(image_path_.c_str());
    size_t data_offset = static_cast<size_t>(data_ - map_);
    madvise(data_, map_size_ - data_offset, image_path_.empty() ? MADV_DONTNEED : MADV_REMOVE);
    if (image_fd_ >= 0) close(image_fd_);
    image_fd_ = -1;
  }
  return io_status;
}

// --- Session -------------------------------------------------------------------------

Session::Session(std::shared_ptr<SessionCore> core) : core_(std::move(core)) {}

Session::~Session() {
  if (core_ && core_->pid == ProcessPid()) Stop();
}

namespace {

// `<stem>.crash-<pid><ext>` beside `path`: where the trace of a crashed
// earlier session on `path` goes.
std::string CrashedTracePath(const std::string& path, uint32_t pid) {
  size_t slash = path.rfind('/');
  size_t dot = path.rfind('.');
  std::string tag = ".crash-" + std::to_string(pid);
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) ||
      dot == (slash == std::string::npos ? 0 : slash + 1))
    return path + tag;
  return path.substr(0, dot) + tag + path.substr(dot);
}

// Before a session starts on `path`: a crash image left there by a process
// that died is recovered (and removed); one still locked is refused.
Status RecoverLeftImage(const std::string& path, const std::string& image_path,
                        std::string* recovered) {
  int fd = open(image_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Status::Ok();  // none (or unreadable: replaced below)
  // A child forked by a process that just died holds the lock until it
  // runs its fork handler (microseconds): a short wait before refusing.
  bool locked = false;
  for (int i = 0; i < 50 && !(locked = flock(fd, LOCK_EX | LOCK_NB) == 0); i++) usleep(10000);
  if (!locked) {
    close(fd);
    return Status::Error(kStateError, "'" + path + "' is being traced by another process (its "
                                      "crash-safe buffer '" + image_path + "' is locked)");
  }
  // Magic, state and pid (offsets 0, 48, 40: the same in every version).
  uint8_t h[64] = {};
  bool empty = pread(fd, h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h));
  uint32_t state = 0, pid = 0;
  std::memcpy(&state, h + 48, 4);
  std::memcpy(&pid, h + 40, 4);
  bool stopped = std::memcmp(h, image::kMagic, 8) == 0 && state == image::kImageStopped;
  if (empty || stopped) {  // nothing to recover
    unlink(image_path.c_str());
    close(fd);
    return Status::Ok();
  }
  RecoverReport rep;
  std::string out = CrashedTracePath(path, pid);
  Status st2 = RecoverImage(image_path, out, &rep);
  if (st2.ok()) {
    unlink(image_path.c_str());
    *recovered = out;
    std::fprintf(stderr,
                 "vperfetto: process %u died while tracing into %s; its trace was recovered "
                 "from the crash-safe buffer into %s (%llu packets; %llu lost)\n",
                 pid, path.c_str(), out.c_str(), static_cast<unsigned long long>(rep.packets),
                 static_cast<unsigned long long>(rep.packets_lost + rep.packets_skipped));
  } else {
    std::string aside = image_path + ".unrecoverable";
    rename(image_path.c_str(), aside.c_str());
    std::fprintf(stderr, "vperfetto: %s is not a recoverable crash image (%s); moved to %s\n",
                 image_path.c_str(), st2.message.c_str(), aside.c_str());
  }
  close(fd);
  return Status::Ok();
}

}  // namespace

Status Session::Start(const SessionConfig& cfg, std::unique_ptr<Session>* out) {
  if (cfg.output_path.empty())
    return Status::Error(kInvalidArgument, "no output path was given");
  if (cfg.mode != BufferMode::kRing && cfg.mode != BufferMode::kDiscard &&
      cfg.mode != BufferMode::kStream)
    return Status::Error(kInvalidArgument, "unknown buffer mode");
  if (cfg.buffer_kb < 4 || cfg.buffer_kb > (64u << 20))
    return Status::Error(kInvalidArgument, "buffer size must be 4 KiB .. 64 GiB");
  if (cfg.output_path.size() >= image::kMaxOutputPath)
    return Status::Error(kInvalidArgument, "the output path is too long");
  if (cfg.compression_level > 9)
    return Status::Error(kInvalidArgument, "compression level must be 0 .. 9");
  if (cfg.compression_level && !DeflateAvailable())
    return Status::Error(kUnsupported, "this build of vperfetto has no zlib: traces cannot be compressed");
  std::call_once(g_fork_once, [] { pthread_atfork(ForkPrepare, ForkParent, ForkChild); });
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_current)
    return Status::Error(kStateError, "a tracing session is already active in this process");
  // A crashed session's image is recovered before its output (a stream
  // session's first part) is truncated.
  // Only a regular file (or a new one) has a crash-safe buffer beside it: a
  // device, FIFO or socket output (/dev/stdout, a pipe) keeps it in memory.
  struct stat out_st;
  bool regular = stat(cfg.output_path.c_str(), &out_st) != 0 || S_ISREG(out_st.st_mode);
  bool crash_safe = cfg.crash_safe && regular;
  std::string image_path = cfg.output_path + image::kSuffix;
  std::string recovered;
  if (regular) {
    Status rs = RecoverLeftImage(cfg.output_path, image_path, &recovered);
    if (!rs.ok()) return rs;
  }
  int fd = open(cfg.output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return Status::Error(kIoError, "cannot open '" + cfg.output_path + "' for writing: " +
                                       std::strerror(errno));
  uint32_t gen = g_generation.fetch_add(1) + 1;
  auto core = std::make_shared<SessionCore>(cfg, fd, gen);
  if (cfg.compression_level && regular) {  // a pipe or device is written as it is
    // Compressed at stop by path: made absolute now, in case the program
    // changes its directory meanwhile.
    core->compress_path = cfg.output_path;
    char cwd[PATH_MAX];
    if (cfg.output_path[0] != '/' && getcwd(cwd, sizeof(cwd)))
      core->compress_path = std::string(cwd) + "/" + cfg.output_path;
  }
  core->recovered_path = recovered;
  Status ms = core->MapPool(crash_safe ? image_path : std::string());
  if (!ms.ok() && crash_safe) {
    // Tracing goes on without the crash-safe buffer (a tracer must not stop
    // the program for it), and says so.
    std::fprintf(stderr, "vperfetto: %s; tracing into %s with the buffer in memory (not crash-safe)\n",
                 ms.message.c_str(), cfg.output_path.c_str());
    ms = core->MapPool(std::string());
  }
  if (!ms.ok()) return ms;
  std::string header = core->ClockSnapshotPacket();
  header += core->TraceConfigPacket();
  {
    std::lock_guard<std::mutex> cl(core->mu);
    if (!core->WriteAll(header.data(), header.size())) return core->io_status;
    core->service_packets = 2;
  }
  core->SetStreamStart(header.size());
  core->StartFlusher();
  core->StartPrefaulter();
  g_current = core;
  ApplyCategoryFlagsLocked(&core->cfg);
  out->reset(new Session(std::move(core)));
  return Status::Ok();
}

bool Session::active() const {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_current == core_;
}

const std::string& Session::recovered_path() const { return core_->recovered_path; }

Status Session::Flush() {
  if (core_->pid != ProcessPid())
    return Status::Error(kStateError, "this session belongs to the parent process");
  std::lock_guard<std::mutex> lock(core_->mu);
  if (core_->stopped) return Status::Error(kStateError, "the session has stopped");
  // Ring and discard chunks are in the buffer as they are written.
  for (auto& w : core_->writers) core_->Scrape(w.get());
  return core_->io_status;
}

Status Session::Stop() {
  if (core_->pid != ProcessPid())
    return Status::Error(kStateError,
                         "this session was started by process " + std::to_string(core_->pid) +
                             " and cannot be stopped in a forked child");
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_current == core_) {
      ApplyCategoryFlagsLocked(nullptr);
      g_current.reset();
    }
  }
  core_->StopFlusher();
  core_->StopPrefaulter();
  std::lock_guard<std::mutex> lock(core_->mu);
  if (core_->stopped) return core_->io_status;
  core_->stopped = true;
  Status st = core_->Finish();
  core_->writers.clear();  // breaks the session <-> writer cycle
  if (st.ok() && !core_->compress_path.empty())
    st = DeflateTraceFile(core_->compress_path, static_cast<int>(core_->cfg.compression_level));
  return st;
}

uint64_t Session::Stat(int32_t stat) const {
  std::lock_guard<std::mutex> lock(core_->mu);
  return core_->Stat(stat);
}

}  // namespace vpsdk
