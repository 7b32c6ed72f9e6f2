// vpsdk: a compact Perfetto track-event tracing runtime.
//
// One process-wide session at a time; every thread that emits gets its own
// writer sequence (trusted_packet_sequence_id) with per-sequence interning,
// as the Perfetto SDK does. Hot calls never fail and never block on other
// threads: a thread appends to its own chunk and publishes how much of it is
// complete with one release store; chunks go to the session's buffer (ring,
// discard) or file (stream) when full, on flush and on stop.
#ifndef VPSDK_TRACING_H_
#define VPSDK_TRACING_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vpsdk {

// Mirrors vp_status_code in the C ABI.
enum StatusCode : int32_t {
  kOk = 0,
  kInvalidArgument = 1,
  kStateError = 2,
  kIoError = 3,
  kNoMemory = 4,
  kFormatError = 5,
  kUnsupported = 6,
  kInternal = 7,
};

struct Status {
  int32_t code = kOk;
  std::string message;
  bool ok() const { return code == kOk; }
  static Status Ok() { return Status(); }
  static Status Error(int32_t c, std::string m) { return Status{c, std::move(m)}; }
};

enum class BufferMode : int32_t { kRing = 0, kDiscard = 1, kStream = 2 };

struct SessionConfig {
  std::string output_path;
  uint32_t buffer_kb = 16384;
  BufferMode mode = BufferMode::kRing;
  std::vector<std::string> enabled_categories;   // empty: all
  std::vector<std::string> disabled_categories;
  // Sequence ids are sequence_base + 1 (the session's own packets), + 2, ...:
  // processes whose traces are concatenated take disjoint ranges.
  uint32_t sequence_base = 0;
  // Timestamps as deltas on a sequence-scoped incremental clock (id 64,
  // defined by a ClockSnapshot after every incremental-state reset), in units
  // of timestamp_unit_ns; false: absolute CLOCK_BOOTTIME ns on every packet.
  bool incremental_timestamps = true;
  uint32_t timestamp_unit_ns = 1;
  // Chunks live in `<output_path>.vpbuf`, mapped shared, so that a process
  // that dies keeps its trace (RecoverImage); false: anonymous memory.
  bool crash_safe = true;
  // Stream mode: every thread's complete packets go to the file at least
  // this often (0: only when a chunk fills, on flush and at stop).
  uint32_t flush_period_ms = 100;
  // 1..9: at stop, the written trace is rewritten with its packets deflated
  // at this level in TracePacket.compressed_packets (as the tracing service
  // does for TraceConfig.compression_type = DEFLATE); 0: as written.
  uint32_t compression_level = 0;
};

// What a recovery found in a crash image.
struct RecoverReport {
  uint32_t image_version = 0;
  uint32_t pid = 0;             // the process that died
  int32_t mode = 0;             // BufferMode
  uint32_t sequences = 0;       // writer sequences recovered
  uint64_t packets = 0;         // packets recovered (the session's own not counted)
  uint64_t bytes = 0;
  uint64_t chunks = 0;
  uint64_t stream_bytes = 0;    // stream mode: bytes taken from the output file
  uint64_t packets_lost = 0;    // overwritten or dropped while running
  uint64_t packets_skipped = 0; // malformed, or lost their incremental state
  uint64_t chunks_lost = 0;     // gaps in a sequence's chunks
  uint64_t last_timestamp_ns = 0;
  std::string output_path;      // the crashed session's output
};

// Rebuilds a valid trace from the crash image at `image_path` into
// `out_path` (empty: the crashed session's own output path), written to a
// temporary file and renamed. Never crashes on a corrupt or truncated image.
Status RecoverImage(const std::string& image_path, const std::string& out_path,
                    RecoverReport* report);
// The same over an image in memory; `stream_file` is the output file's bytes
// (stream mode). Appends the trace to `out`.
Status RecoverImageBytes(const uint8_t* image, size_t n, const uint8_t* stream_file,
                         size_t stream_n, std::string* out, RecoverReport* report);

enum SessionStat : int32_t {
  kStatPacketsWritten = 0,
  kStatBytesWritten = 1,
  kStatPacketsDropped = 2,
  kStatChunksDiscarded = 3,
  kStatChunksOverwritten = 4,
  kStatSequences = 5,
  kStatBufferBytes = 6,
};

class SessionCore;

class Session {
 public:
  static Status Start(const SessionConfig& config, std::unique_ptr<Session>* out);
  ~Session();
  Status Flush();
  Status Stop();  // idempotent
  bool active() const;
  uint64_t Stat(int32_t stat) const;
  // Where the trace of a crashed earlier session on the same path was
  // recovered to at Start (empty: none).
  const std::string& recovered_path() const;

 private:
  explicit Session(std::shared_ptr<SessionCore> core);
  std::shared_ptr<SessionCore> core_;
};

// --- categories, names, tracks --------------------------------------------

constexpr uint32_t kMaxCategories = 256;
// Per category: 1 while the current session records it. Index 0 is
// "uncategorized" and doubles as the "a session is recording" flag.
extern std::atomic<uint8_t> g_category_enabled[kMaxCategories];

inline bool CategoryEnabled(uint32_t category) {
  return category < kMaxCategories &&
         g_category_enabled[category].load(std::memory_order_acquire);
}
inline bool IsTracing() {
  return g_category_enabled[0].load(std::memory_order_acquire) != 0;
}

uint32_t RegisterCategory(const char* name);        // 0 on failure
uint32_t InternString(const char* s, size_t len);   // 0 when full

constexpr uint32_t kThreadTrack = 0;
constexpr uint32_t kProcessTrack = 1;
Status NewTrack(const char* name, uint32_t parent, uint32_t* out);
Status CounterTrack(const char* name, const char* unit, uint32_t* out);
// A track under the calling thread's track for short-lived work (an asyncio
// task); FreeTrack() hands its handle back for reuse (with a new uuid).
Status NewThreadTrack(const char* name, uint32_t* out);
void FreeTrack(uint32_t track);
uint64_t TrackUuid(uint32_t track);

void SetProcessName(const char* name);
void SetProcessNameDefault(const char* name);  // only while no name is set
std::string ProcessName();
void SetThreadName(const char* name);

// --- events -----------------------------------------------------------------

enum EventType : int32_t { kBegin = 1, kEnd = 2, kInstant = 3, kCounter = 4 };
enum ArgType : int32_t {
  kArgInt = 0, kArgUint = 1, kArgDouble = 2, kArgBool = 3, kArgString = 4,
  kArgPointer = 5,
  kArgDict = 6,   // u: the number of entries that follow and belong to it
  kArgArray = 7,  // u: the number of elements that follow and belong to it
  kArgName = 8,   // s/len: an inline name for the entry that follows
};
// Deepest nesting of dict/array args written; deeper entries are skipped.
constexpr int kMaxArgDepth = 32;

// Same layout as vp_arg / vp_event in the C ABI (checked there).
struct Arg {
  uint32_t name;
  int32_t type;
  int64_t i;
  uint64_t u;
  double d;
  const char* s;
  size_t len;
};

struct Event {
  int32_t type;
  uint32_t category;
  uint32_t name;
  const char* name_str;
  size_t name_len;
  uint32_t track;
  uint64_t timestamp_ns;
  const Arg* args;
  uint32_t nargs;
  const uint64_t* flows;
  uint32_t nflows;
  const uint64_t* terminating_flows;
  uint32_t nterminating_flows;
  int32_t counter_is_double;
  int64_t counter_int;
  double counter_double;
};

void SliceBegin(uint32_t category, uint32_t name);
void SliceBeginStr(uint32_t category, const char* name, size_t len);
void SliceEnd();
void Instant(uint32_t category, uint32_t name);
void InstantStr(uint32_t category, const char* name, size_t len);
void CounterInt(uint32_t track, int64_t value);
void CounterDouble(uint32_t track, double value);
void Emit(const Event& event);

// --- whole-program tracing (profile.cc) ------------------------------------

// A function (name, and a source location unless file is nullptr); 0 when
// the table is full. Thread-safe; ids live for the process.
uint32_t RegisterFunc(const char* name, size_t name_len, const char* file, size_t file_len,
                      uint32_t line);
// A call of `func` begins / the innermost call entered on this thread ends.
// Calls of function 0 are kept for nesting but not written.
void FuncEnter(uint32_t func, const void* key = nullptr);
void FuncExit();
bool FuncExitKeyed(const void* key);  // ends the innermost call if entered with `key`
// 0: no minimum / no limit.
void SetProfileOptions(uint64_t min_duration_ns, uint32_t max_depth);
uint32_t FuncDepth();  // calls entered and not ended on this thread
// Ends now every call this thread entered and has not ended (their real
// ends later write nothing).
void FuncCloseAll();

}  // namespace vpsdk

#endif  // VPSDK_TRACING_H_
