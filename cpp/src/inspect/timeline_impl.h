// The state of the timeline model while it is built (timeline.h): shared by
// timeline.cc (packets, track events), timeline_system.cc (ftrace, process
// tree and stats) and timeline_output.cc (caps, attribution, JSON).
#ifndef VPERFETTO_INSPECT_TIMELINE_IMPL_H_
#define VPERFETTO_INSPECT_TIMELINE_IMPL_H_

#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "inspect/clocks.h"
#include "inspect/timeline.h"
#include "merge/byte_buffer.h"

namespace vpinspect {
namespace tl {

// A time on the trace clock (never negative: trace_processor drops those), or
// -(i + 1): the i-th timestamp whose clock no snapshot seen so far relates to
// the trace clock; trace_processor converts those once it has seen them all,
// and so does Finish().
using Time = int64_t;

// Where the merge moves a guest's pids (a multiple of this) without machine ids.
constexpr int64_t kPidStep = 1000000;

enum Kind : uint8_t { kNone, kProcess, kThread, kCustom, kCounter, kCpu };

struct Value {
  double d = 0;
  int64_t i = 0;
  bool is_int = false;
  double AsDouble() const { return is_int ? static_cast<double>(i) : d; }
};

struct Point {
  Time ts;
  Value v;
};

struct Slice {
  int64_t ts, dur;
  uint32_t name, depth;
  uint64_t serial;
};

struct Open {
  Time ts;
  uint32_t name;
};

// A slice with an end or a start still to be converted.
struct PendingSlice {
  uint32_t track;
  Time ts, end;
  int64_t dur;  // added to `end`: a legacy complete event's duration
  uint32_t name, depth;
};

struct Track {
  uint64_t uuid = 0;
  bool synthetic = false;  // printed negated: tracks the trace does not describe
  Kind kind = kNone;
  bool desc = false;
  uint32_t machine = 0;
  std::string name, pname, tname;
  bool has_name = false, has_pname = false, has_tname = false;
  uint64_t parent = 0;
  bool has_parent = false;
  int64_t pid = 0, tid = 0;
  bool has_pid = false, has_tid = false;
  bool owns = false;     // synthetic: `pid` is its owner process
  int64_t cpu = -1;      // CPU rows and CPU counters
  bool counter_incremental = false;
  double counter_total = 0;
  std::vector<Slice> slices;
  std::vector<Point> counter;
  std::vector<Open> stack;
  std::unordered_map<int64_t, uint64_t> runs;  // CPU rows: tid -> times switched in
};

struct Seq {
  std::unordered_map<uint64_t, uint32_t> names;  // interned event names: iid -> name id
  std::unordered_map<uint64_t, std::string> anames;  // interned annotation names (instant_args)
  bool has_default_track = false, has_default_clock = false;
  uint64_t default_track = 0;
  uint32_t default_clock = 0;
  std::vector<uint64_t> extra_counters, extra_double_counters;
  SequenceClocks clocks;
  // Its incremental state is valid (cleared since the start, and no packet
  // lost since): trace_processor skips what needs it otherwise.
  bool state_valid = false;
  void Clear() {
    state_valid = true;
    names.clear();
    anames.clear();
    has_default_track = has_default_clock = false;
    extra_counters.clear();
    extra_double_counters.clear();
  }
};

// An atrace begin ('B'), end ('E') or instant ('I') of a thread's track.
struct AtraceEvent {
  Time ts;
  uint32_t track, name;
  char phase;
  size_t order;
};

struct PendingTime {
  uint32_t machine, clock;
  uint64_t value;
  int64_t resolved;  // set by Finish: the trace time, or -1 when it has none
};

using MachinePid = std::pair<uint32_t, int64_t>;

// An instant event's int debug annotations (TimelineOptions::instant_args).
struct InstantArgs {
  Time ts;
  uint32_t name;
  std::vector<std::pair<std::string, int64_t>> args;
};

}  // namespace tl

struct Timeline::Impl {
  explicit Impl(const TimelineOptions& o);
  bool want_instant_args = false;
  std::vector<tl::InstantArgs> instant_args;

  // timeline.cc
  void Packet(const uint8_t* data, size_t size, int depth);
  tl::Time ToTime(uint32_t machine, tl::Seq* seq, uint32_t clock, uint64_t ts, bool* ok);
  bool Resolve(tl::Time t, int64_t* out) const;
  void Seen(tl::Time t, int64_t add = 0);
  uint32_t TrackOf(uint64_t uuid);
  uint32_t SyntheticTrack(int kind, uint32_t machine, int64_t a, const std::string& b);
  uint32_t Name(const char* p, size_t n);
  uint32_t Name(const std::string& s) { return Name(s.data(), s.size()); }
  uint32_t Name(const char* s) { return Name(s, std::strlen(s)); }
  void AddSlice(uint32_t track, int64_t ts, int64_t dur, uint32_t name, uint32_t depth);
  void AddSliceAt(uint32_t track, tl::Time ts, tl::Time end, int64_t dur, uint32_t name,
                  uint32_t depth);
  void Prune();
  void AddPoint(uint32_t track, tl::Time ts, tl::Value v);
  void Descriptor(const uint8_t* data, size_t size, uint32_t machine);
  void TrackEvent(tl::Seq& seq, uint64_t seq_key, const uint8_t* data, size_t size, tl::Time ts,
                  uint32_t machine);

  // timeline_system.cc
  void Ftrace(const uint8_t* data, size_t size, uint32_t machine);
  void FtraceEvent(const uint8_t* data, size_t size, uint32_t machine, int64_t cpu);
  void CompactSched(const uint8_t* data, size_t size, uint32_t machine, int64_t cpu);
  void Switch(uint32_t machine, int64_t cpu, tl::Time ts, int64_t next_tid, const char* comm,
              size_t comm_size);
  void Print(const char* p, size_t n, uint32_t machine, int64_t tid, tl::Time ts);
  void ProcessTree(const uint8_t* data, size_t size, uint32_t machine);
  void ProcessStats(const uint8_t* data, size_t size, uint32_t machine, tl::Time ts);
  void AtraceSlices();

  // timeline_output.cc
  void Finish(bool truncated, std::string* tracks, std::string* rows);

  uint64_t max_slices, max_points;
  std::vector<tl::Track> tracks;
  std::unordered_map<uint64_t, uint32_t> by_uuid;
  std::map<std::pair<uint64_t, uint32_t>, uint32_t> by_seq;  // (sequence key, machine)
  std::map<std::pair<std::pair<int, uint32_t>, std::pair<int64_t, std::string>>, uint32_t> synthetic;
  uint64_t next_synthetic = 0;
  std::unordered_map<uint64_t, tl::Seq> seqs;  // machine << 32 | sequence id
  ClockGraph clocks;
  std::vector<tl::PendingTime> pending;
  std::vector<std::pair<tl::Time, int64_t>> pending_seen;
  std::vector<tl::PendingSlice> pending_slices;
  std::vector<tl::AtraceEvent> atrace;
  // Process names from track descriptors (the model's), and from process
  // trees and ftrace (system traces); thread names and owners likewise.
  std::map<tl::MachinePid, std::string> process_names, tree_names, thread_names;
  std::map<tl::MachinePid, int64_t> thread_pid;
  // The running slice of each CPU row: (machine, cpu) -> track.
  std::map<std::pair<uint32_t, int64_t>, uint32_t> cpus;
  bool has_start = false;
  int64_t start = 0, end = 0;
  uint64_t slices_total = 0, slices_kept = 0, serial = 0, packets = 0, damaged = 0;
  int64_t threshold = -1;
  std::unordered_map<std::string_view, uint32_t> name_ids;  // views into `names`
  std::deque<std::string> names;
  vpmerge::ByteBuffer inflated;
};

}  // namespace vpinspect

#endif  // VPERFETTO_INSPECT_TIMELINE_IMPL_H_
