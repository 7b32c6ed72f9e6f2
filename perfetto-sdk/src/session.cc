// The process-wide session: categories, start/flush/stop, the buffer and the
// output file, writer binding and fork handling.
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "internal.h"
#include "vpsdk/clock.h"
#include "vpsdk/field_numbers.h"
#include "vpsdk/proto_writer.h"

namespace vpsdk {

std::atomic<uint8_t> g_category_enabled[kMaxCategories];
std::atomic<uint32_t> g_generation{1};
thread_local ThreadWriter* t_writer __attribute__((tls_model("initial-exec"))) = nullptr;

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
  if (hand_over) s->Scrape(w, false);
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

void ForkPrepare() {
  g_mu.lock();
  RegistryForkPrepare();
}
void ForkParent() {
  RegistryForkParent();
  g_mu.unlock();
}
void ForkChild() {
  RegistryForkChild();
  // The parent's session is not ours: never touch it again (its mutex may be
  // held by a thread that does not exist here). It is kept alive on purpose.
  if (g_current) new std::shared_ptr<SessionCore>(std::move(g_current));
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
ThreadWriter::~ThreadWriter() { std::free(buf); }

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
  size_t want = s->chunk_size;
  if (w->cap < want || w->cap > 4 * want) {
    void* p = std::realloc(w->buf, want);
    if (!p) return nullptr;
    w->buf = static_cast<uint8_t*>(p);
    w->cap = want;
  }
  w->session = s;
  w->sequence_id = s->next_sequence_id++;
  s->sequences++;
  w->pos = 0;
  w->packets = 0;
  w->committed.store(0, std::memory_order_relaxed);
  w->handed = 0;
  w->need_reset = true;
  w->first_packet = true;
  w->reset_requested.store(false, std::memory_order_relaxed);
  w->packets_lost.store(false, std::memory_order_relaxed);
  w->depth = 0;
  ForgetFrames(w);
  s->writers.push_back(t_holder.writer);
  return w;
}

void MakeRoom(ThreadWriter* w, size_t need) {
  SessionCore* s = w->session.get();
  std::lock_guard<std::mutex> lock(s->mu);
  if (!s->stopped) s->Scrape(w, false);
  w->pos = 0;
  w->packets = 0;
  w->committed.store(0, std::memory_order_relaxed);
  w->handed = 0;
  if (s->cfg.mode != BufferMode::kStream) w->need_reset = true;
  if (w->cap < need) {
    size_t want = std::max(need, s->chunk_size);
    void* p = std::realloc(w->buf, want);
    if (!p) std::abort();  // out of memory while tracing
    w->buf = static_cast<uint8_t*>(p);
    w->cap = want;
  }
}

// --- the session core --------------------------------------------------------------

SessionCore::SessionCore(const SessionConfig& c, int fd, uint32_t gen)
    : cfg(c), generation(gen), pid(ProcessPid()), fd_(fd) {
  next_sequence_id = cfg.sequence_base + 2;
  buffer_bytes = static_cast<size_t>(cfg.buffer_kb) * 1024;
  if (cfg.mode == BufferMode::kStream) {
    chunk_size = 64 * 1024;
  } else {
    chunk_size = std::min<size_t>(64 * 1024, std::max<size_t>(4096, buffer_bytes / 16));
  }
}

SessionCore::~SessionCore() {
  if (fd_ >= 0) close(fd_);
}

bool SessionCore::WriteAll(const void* data, size_t n) {
  if (!io_status.ok()) return false;
  const char* p = static_cast<const char*>(data);
  while (n) {
    ssize_t r = write(fd_, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      io_status = Status::Error(kIoError, std::string("writing the trace failed: ") +
                                                (r < 0 ? std::strerror(errno) : "short write"));
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool SessionCore::Commit(const uint8_t* data, size_t n, uint32_t packets) {
  if (n == 0) return true;
  bool ok = true;
  switch (cfg.mode) {
    case BufferMode::kStream:
      ok = WriteAll(data, n);
      break;
    case BufferMode::kDiscard:
      ok = ring_bytes_ + n <= buffer_bytes;
      if (ok) {
        ring_.push_back(Chunk{std::string(reinterpret_cast<const char*>(data), n), packets});
        ring_bytes_ += n;
      } else {
        chunks_discarded++;
      }
      break;
    case BufferMode::kRing:
      if (n > buffer_bytes) {
        ok = false;
        chunks_discarded++;
        break;
      }
      while (ring_bytes_ + n > buffer_bytes && !ring_.empty()) {
        Chunk& old = ring_.front();
        ring_bytes_ -= old.data.size();
        bytes_overwritten += old.data.size();
        packets_overwritten += old.packets;
        chunks_overwritten++;
        ring_.pop_front();
      }
      ring_.push_back(Chunk{std::string(reinterpret_cast<const char*>(data), n), packets});
      ring_bytes_ += n;
      break;
  }
  if (ok) {
    packets_accepted += packets;
    bytes_accepted += n;
    chunks_accepted++;
  } else {
    packets_dropped += packets;
  }
  return ok;
}

void SessionCore::Scrape(ThreadWriter* w, bool request_reset) {
  uint64_t c = w->committed.load(std::memory_order_acquire);
  size_t from = static_cast<size_t>(w->handed >> kPacketBits);
  size_t to = static_cast<size_t>(c >> kPacketBits);
  uint32_t packets = static_cast<uint32_t>((c & ((1u << kPacketBits) - 1)) -
                                           (w->handed & ((1u << kPacketBits) - 1)));
  if (to <= from) return;
  if (!Commit(w->buf + from, to - from, packets)) {
    w->packets_lost.store(true, std::memory_order_relaxed);
    request_reset = true;
  }
  w->handed = c;
  if (request_reset && cfg.mode != BufferMode::kStream)
    w->reset_requested.store(true, std::memory_order_relaxed);
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
  switch (stat) {
    case kStatPacketsWritten: return packets_accepted - packets_overwritten + service_packets;
    case kStatBytesWritten: return bytes_accepted;
    case kStatPacketsDropped: return packets_dropped + packets_overwritten;
    case kStatChunksDiscarded: return chunks_discarded;
    case kStatChunksOverwritten: return chunks_overwritten;
    case kStatSequences: return sequences;
    case kStatBufferBytes: return ring_bytes_;
    default: return 0;
  }
}

Status SessionCore::Finish() {
  std::string footer = ClockSnapshotPacket();
  footer += TraceStatsPacket();
  service_packets += 2;
  if (cfg.mode != BufferMode::kStream) {
    // The header went to the file at start; the buffer follows in commit
    // order, which keeps each sequence's packets in order.
    for (const Chunk& c : ring_) WriteAll(c.data.data(), c.data.size());
    ring_.clear();
    ring_bytes_ = 0;
  }
  WriteAll(footer.data(), footer.size());
  if (fd_ >= 0 && close(fd_) != 0 && io_status.ok())
    io_status = Status::Error(kIoError, std::string("closing the trace failed: ") + std::strerror(errno));
  fd_ = -1;
  return io_status;
}

// --- Session -------------------------------------------------------------------------

Session::Session(std::shared_ptr<SessionCore> core) : core_(std::move(core)) {}

Session::~Session() {
  if (core_ && core_->pid == ProcessPid()) Stop();
}

Status Session::Start(const SessionConfig& cfg, std::unique_ptr<Session>* out) {
  if (cfg.output_path.empty())
    return Status::Error(kInvalidArgument, "no output path was given");
  if (cfg.mode != BufferMode::kRing && cfg.mode != BufferMode::kDiscard &&
      cfg.mode != BufferMode::kStream)
    return Status::Error(kInvalidArgument, "unknown buffer mode");
  if (cfg.buffer_kb < 4 || cfg.buffer_kb > (64u << 20))
    return Status::Error(kInvalidArgument, "buffer size must be 4 KiB .. 64 GiB");
  std::call_once(g_fork_once, [] { pthread_atfork(ForkPrepare, ForkParent, ForkChild); });
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_current)
    return Status::Error(kStateError, "a tracing session is already active in this process");
  int fd = open(cfg.output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return Status::Error(kIoError, "cannot open '" + cfg.output_path + "' for writing: " +
                                       std::strerror(errno));
  uint32_t gen = g_generation.fetch_add(1) + 1;
  auto core = std::make_shared<SessionCore>(cfg, fd, gen);
  std::string header = core->ClockSnapshotPacket();
  header += core->TraceConfigPacket();
  {
    std::lock_guard<std::mutex> cl(core->mu);
    if (!core->WriteAll(header.data(), header.size())) return core->io_status;
    core->service_packets = 2;
  }
  g_current = core;
  ApplyCategoryFlagsLocked(&core->cfg);
  out->reset(new Session(std::move(core)));
  return Status::Ok();
}

bool Session::active() const {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_current == core_;
}

Status Session::Flush() {
  if (core_->pid != ProcessPid())
    return Status::Error(kStateError, "this session belongs to the parent process");
  std::lock_guard<std::mutex> lock(core_->mu);
  if (core_->stopped) return Status::Error(kStateError, "the session has stopped");
  for (auto& w : core_->writers) core_->Scrape(w.get(), /*request_reset=*/true);
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
  std::lock_guard<std::mutex> lock(core_->mu);
  if (core_->stopped) return core_->io_status;
  core_->stopped = true;
  for (auto& w : core_->writers) core_->Scrape(w.get(), false);
  core_->writers.clear();  // breaks the session <-> writer cycle
  return core_->Finish();
}

uint64_t Session::Stat(int32_t stat) const {
  std::lock_guard<std::mutex> lock(core_->mu);
  return core_->Stat(stat);
}

}  // namespace vpsdk
