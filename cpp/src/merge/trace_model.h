// What the merge learns about an input in its first pass, and the clock
// conversions it derives from the input's clock snapshots.
#ifndef VPERFETTO_MERGE_TRACE_MODEL_H_
#define VPERFETTO_MERGE_TRACE_MODEL_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "task_state.h"
#include "vpsdk/field_numbers.h"

namespace vpmerge {

// Clock ids: the built-in ones as the tracer writes them (field_numbers.h),
// plus the range Perfetto reserves for sequence-scoped clocks.
namespace clk {
constexpr uint32_t kRealtime = vpsdk::pf::BuiltinClock::kRealtime;
constexpr uint32_t kMonotonic = vpsdk::pf::BuiltinClock::kMonotonic;
constexpr uint32_t kMonotonicRaw = vpsdk::pf::BuiltinClock::kMonotonicRaw;
constexpr uint32_t kBoottime = vpsdk::pf::BuiltinClock::kBoottime;
constexpr uint32_t kTsc = vpsdk::pf::BuiltinClock::kTsc;
constexpr uint32_t kFirstSequenceScoped = 64;
constexpr uint32_t kLastSequenceScoped = 127;
inline bool IsSequenceScoped(uint32_t c) { return c >= kFirstSequenceScoped && c <= kLastSequenceScoped; }
}  // namespace clk

// One global clock snapshot: (clock id, timestamp) pairs.
using Snapshot = std::vector<std::pair<uint32_t, uint64_t>>;

// Converts timestamps between the global clocks of one trace, the way the
// trace processor does: through the snapshot whose `from` value is the latest
// not after the timestamp (the first one for earlier timestamps).
class ClockConverter {
 public:
  void Add(const Snapshot& s) {
    snapshots_.push_back(s);
    index_.clear();
  }
  bool Has(uint32_t clock) const;
  // True when some snapshot holds both clocks.
  bool Relates(uint32_t a, uint32_t b) const;
  // False when no snapshot relates the two clocks.
  bool Convert(uint32_t from, uint32_t to, uint64_t t, uint64_t* out) const;
  const std::vector<Snapshot>& snapshots() const { return snapshots_; }

 private:
  // (value on `from`, value on `to`) of each snapshot holding both clocks,
  // sorted by the first; built on first use per target clock (scan.cc).
  using Points = std::vector<std::pair<uint64_t, uint64_t>>;
  const Points* Find(uint32_t from, uint32_t to) const;

  std::vector<Snapshot> snapshots_;
  // Built lazily, and read by the rewrite's threads at once: under a lock
  // (a copy gets a lock of its own).
  struct Lock {
    std::mutex m;
    Lock() = default;
    Lock(const Lock&) {}
    Lock& operator=(const Lock&) { return *this; }
  };
  mutable Lock lock_;
  mutable std::unordered_map<uint32_t, std::unordered_map<uint32_t, Points>> index_;
};

// A clock-sync marker: a guest_clock_sync TrackEvent with its annotations.
struct SyncMarker {
  uint64_t packet_ts = 0;
  uint64_t boottime = 0, monotonic = 0, tsc = 0;
  bool has_boottime = false, has_monotonic = false, has_tsc = false;
};

// One round of the guest<->host link's clock sync (vperfetto.vm): guest send,
// host receive, host send, guest receive; t1 and t4 on the guest's BOOTTIME,
// t2 and t3 on the host's. Recorded as "vperfetto_clock_sync_round" events.
struct LinkRound {
  std::string peer;  // the guest's name
  uint64_t t1 = 0, t2 = 0, t3 = 0, t4 = 0;
};

struct InputSummary {
  std::string path;
  bool gzip = false;
  uint64_t packets = 0;
  uint64_t bytes = 0;
  // Trace.packet fields at its top level (a compressed_packets container
  // counts once) and their bytes: when these are all of the input, an
  // unchanged side can be copied as a byte range.
  uint64_t top_level_packets = 0, packet_bytes = 0;
  bool truncated = false;
  uint64_t truncated_at = 0;

  uint32_t max_sequence_id = 0;
  uint64_t max_uid = 0;
  int64_t max_pid = 0;  // pids and tids
  uint32_t max_cpu = 0;
  bool has_cpu = false;

  // First and last timestamped packet, on the clock they were written in.
  bool has_ts = false;
  uint32_t first_clock = clk::kBoottime, last_clock = clk::kBoottime;
  uint64_t first_ts = 0, last_ts = 0;

  ClockConverter clocks;
  std::vector<SyncMarker> markers;
  std::vector<LinkRound> link_rounds;
  std::unordered_set<uint64_t> uuids;
  std::unordered_set<uint64_t> flow_ids;  // every flow id its track events use
  uint64_t compressed_packets = 0;

  // The last tracing_started service event (trace_processor drops the
  // machine's ftrace data before it), on its clock (BOOTTIME unless given).
  std::string trace_stats;  // the last TraceStats payload, as written
  uint32_t trace_stats_buffers = 0;  // its buffer_stats entries
  uint32_t primary_trace_clock = 0;  // from its snapshots; 0: BOOTTIME (the default)
  bool has_ftrace = false;
  // Its kernel (the last SystemInfo's), as trace_processor reads
  // sched_switch states by it.
  KernelEra kernel_era = KernelEra::kBefore4_8;
  bool has_system_info = false;
  std::string kernel_release, machine_arch;  // utsname's
  bool has_tracing_start = false;
  uint64_t tracing_start = 0;
  uint32_t tracing_start_clock = clk::kBoottime;
};

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_TRACE_MODEL_H_
