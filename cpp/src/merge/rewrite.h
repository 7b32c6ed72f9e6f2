// The merge's second pass: rewriting one input's packets so that they live on
// the main trace's clock and never collide with another input's ids.
#ifndef VPERFETTO_MERGE_REWRITE_H_
#define VPERFETTO_MERGE_REWRITE_H_

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "trace_io.h"
#include "trace_model.h"

#define VPMERGE_UNLIKELY(x) __builtin_expect(!!(x), 0)

namespace vpmerge {

// One side's renumbering of ids (track uuids, flow ids): a deterministic
// bijection into ids no other side uses. Computed up front from the ids the
// scan found, in ascending order, so the result depends neither on the order
// the rewrite meets them nor on how many threads rewrite; read concurrently by
// a side's rewriters. An id the scan did not see is added under a lock.
class IdRemap {
 public:
  // `reserved`: ids taken (the main side's, every earlier side's new ones);
  // this side's new ids are added to it.
  void Init(const std::unordered_set<uint64_t>& ids, uint64_t salt, std::unordered_set<uint64_t>* reserved);
  uint64_t Get(uint64_t id) {
    auto it = fixed_.find(id);
    return it != fixed_.end() ? it->second : Extra(id);
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return fixed_.size() + extra_.size();
  }

 private:
  uint64_t Pick(uint64_t id);
  uint64_t Extra(uint64_t id);
  uint64_t salt_ = 0;
  std::unordered_set<uint64_t>* reserved_ = nullptr;
  std::unordered_map<uint64_t, uint64_t> fixed_;
  std::mutex mu_;
  std::unordered_map<uint64_t, uint64_t> extra_;
};

struct Transform {
  bool shift_time = false;
  int64_t shift_ns = 0;                 // added to reference-clock timestamps
  // When set (2 points or more): the shift as a piecewise-linear function of
  // the moved side's reference-clock time (drift corrected between clock
  // syncs; constant beyond the first and last point).
  std::vector<std::pair<uint64_t, int64_t>> shift_points;
  uint32_t ref_clock = clk::kBoottime;  // the clock alignment is expressed in
  // The clock trace_processor takes a packet without one to be on, in the
  // output (the main side's trace clock; on another machine too, which
  // inherits it): a moved packet whose own default differs is labelled
  // (0: the output has none, timestamps are taken as they are).
  uint32_t out_default_clock = 0;
  const ClockConverter* clocks = nullptr;
  const ClockConverter* main_clocks = nullptr;  // the main side's (for REALTIME)
  bool logs_own_realtime = false;  // log times stay: its machine's REALTIME converts them
  uint32_t seq_offset = 0;
  uint64_t uid_offset = 0;
  int64_t pid_offset = 0;
  uint64_t cpu_offset = 0;
  uint64_t frame_id_offset = 0;         // frame timeline cookies and tokens
  // sched_switch states re-encoded from the side's kernel to the one
  // trace_processor reads them with (the main's, on its machine).
  bool translate_states = false;
  KernelEra states_from = KernelEra::kBefore4_8, states_to = KernelEra::kBefore4_8;
  // Flow ids renumbered apart from every other side's (one machine's flows
  // share one namespace in the viewer; flows do not cross machines).
  bool remap_flows = false;
  std::unordered_set<uint64_t>* reserved_flows = nullptr;
  bool remap_uuids = false;
  uint64_t uuid_salt = 0;
  // Uuids taken (the main side's and every remapped one so far); shared by
  // the rewriters of one merge so no two tracks ever share a uuid.
  std::unordered_set<uint64_t>* reserved_uuids = nullptr;
  // The side's renumberings (set up from the reserved sets before it is
  // rewritten; required when remap_uuids / remap_flows).
  IdRemap* uuid_remap = nullptr;
  IdRemap* flow_remap = nullptr;
  std::string name_prefix;              // prepended to process names
  bool drop_session_packets = false;    // trace_config, trace_stats, sync markers, system_info
  bool drop_global_snapshots = false;   // its clocks are re-expressed instead
  // Keep global snapshots, with the reference clock's entries shifted (a side
  // on a machine of its own: trace_processor converts its other clocks
  // through them).
  bool shift_global_snapshots = false;
  uint32_t machine_id = 0;              // TracePacket.machine_id, 0: leave
  // Tracing-start service events (tracing_started, all_data_sources_started)
  // dropped: trace_processor drops all ftrace data before the last one it
  // reads, so in one machine only the earliest side's may stay.
  bool drop_tracing_start = false;
  // Ftrace events before this (the side's own BOOTTIME) dropped, as
  // trace_processor would have dropped them before the side's own tracing
  // start (0: none).
  uint64_t ftrace_valid_from = 0;

  bool Identity() const { return NamesOnly() && name_prefix.empty() && !Filters(); }
  // True when at most process names change and tracing-start events or stale
  // ftrace data go (the main side of a merge): only packets that hold such
  // things are decoded.
  bool NamesOnly() const {
    return !shift_time && !seq_offset && !uid_offset && !pid_offset && !cpu_offset && !frame_id_offset &&
           !translate_states && !remap_flows &&
           !remap_uuids && !drop_session_packets && !drop_global_snapshots &&
           !shift_global_snapshots && !machine_id;
  }
  bool Filters() const { return drop_tracing_start || ftrace_valid_from; }
};

struct RewriteStats {
  uint64_t packets_read = 0;
  uint64_t packets_written = 0;
  uint64_t packets_dropped = 0;  // emptied by the rewrite (snapshots, config, stats)
  uint64_t snapshots_dropped = 0;
  uint64_t session_packets_dropped = 0;
  uint64_t timestamps_shifted = 0;
  uint64_t unconvertible_timestamps = 0;
  uint64_t compressed_rewritten = 0;
  // Shifted timestamps that land before the main clock's zero (or beyond
  // INT64_MAX): trace_processor drops what carries them.
  uint64_t timestamps_below_zero = 0;
  uint64_t zero_timestamps_kept = 0;   // 0 means "no time": left at 0
  uint64_t tracing_start_events_dropped = 0;
  uint64_t stale_ftrace_events_dropped = 0;
  // Android log events whose REALTIME cannot be re-expressed in the main's
  // (a side without REALTIME in its snapshots, or a main without): the
  // viewer cannot place them right.
  uint64_t unplaced_log_events = 0;
  uint64_t task_states_translated = 0;   // re-encoded for another kernel
  uint64_t task_states_approximated = 0; // that kernel cannot say all of them
  uint64_t packets_below_zero = 0;  // packets with at least one of them
  int64_t earliest_below_zero = 0;  // the most negative, as trace_processor reads it

  void Add(const RewriteStats& o);  // counts summed, the earliest kept
};

class Rewriter {
 public:
  // What the rewrite keeps of a sequence from packet to packet.
  struct Seq {
    uint32_t default_clock = clk::kBoottime;
    bool explicit_default = false;  // TracePacketDefaults give it
    // Its incremental clock (a ClockSnapshot's sequence-scoped clock marked
    // is_incremental, as SDKs write after each reset): timestamps on it are
    // deltas. The snapshot moves with the side's shift at its time; when the
    // shift varies with time (drift) or the clock conversion is not a plain
    // offset, the deltas change too, so that each packet lands where its own
    // time's shift puts it.
    uint32_t inc_clock = 0;         // none: 0
    uint32_t inc_global = 0;        // the snapshot's global clock
    uint64_t inc_unit = 1;          // ns per unit
    uint64_t inc_base = 0;          // the clock's value at the snapshot (units)
    uint64_t inc_global_base = 0;   // the global clock's there
    uint64_t inc_value = 0;         // its value now, as read (units)
    // The rewriter's own, worked out again where a batch starts:
    bool inc_out_known = false;
    uint64_t inc_out0 = 0;          // the snapshot's global time, moved
    uint64_t inc_out_value = 0;     // the clock's value now, as written
    bool IsDefault() const {
      return default_clock == clk::kBoottime && !explicit_default && !inc_clock;
    }
    // Takes the incremental clock a snapshot defines (IncrementalClockOf()).
    void DefineIncremental(const Seq& snapshot) {
      inc_clock = snapshot.inc_clock, inc_global = snapshot.inc_global, inc_unit = snapshot.inc_unit;
      inc_base = inc_value = snapshot.inc_base, inc_global_base = snapshot.inc_global_base;
      inc_out_known = false;
    }
    // The global clock's time at the incremental clock's `value`.
    uint64_t IncrementalAt(uint64_t value) const { return inc_global_base + (value - inc_base) * inc_unit; }
    // Whether a packet timestamp on `clock` (its own, else the default) is a
    // delta on the incremental clock.
    bool OnIncremental(bool has_clock, uint32_t clock) const {
      return inc_clock && (has_clock ? clock : default_clock) == inc_clock;
    }
  };
  using SeqStates = std::vector<std::pair<uint32_t, Seq>>;

  explicit Rewriter(const Transform& t) : t_(t) {}
  // Appends the packet, rewritten, as a Trace.packet field; nothing when the
  // rewrite leaves it without content.
  Status Packet(const PacketView& pv, ByteBuffer* out);
  // Continues at another point of the input: the sequences' state there
  // (those not listed are as after a reset).
  void SetSequences(const SeqStates& seqs);
  const RewriteStats& stats() const { return stats_; }

 private:
  // What a packet says about its sequence and clock, read while rewriting it.
  struct PacketInfo {
    uint32_t seq_id = 0, clock = 0, default_clock = 0;
    bool has_clock = false, has_default_clock = false, cleared = false;
    bool has_timestamp = false, malformed = false;
    uint64_t timestamp = 0;  // as read
    bool has_snapshot = false;  // (trace_processor reads no timestamp of its packet)
    bool has_inc = false;    // a snapshot defining an incremental clock
    Seq inc;                 // (its inc_* fields)
  };
  // Writes the rewritten TracePacket body; returns false when it is empty.
  bool Body(const uint8_t* data, size_t size, ByteBuffer* o, int depth, Status* st);
  // One pass of Body() with the packet's timestamp taken to be on ts_clock.
  bool Rewrite(const uint8_t* data, size_t size, ByteBuffer* o, int depth, Status* st,
               uint32_t ts_clock, PacketInfo* info);
  uint64_t Uuid(uint64_t u);
  uint64_t Flow(uint64_t id);
  void Flows(const Field& f, ByteBuffer* o);
  uint64_t Pid(uint64_t v) const;
  uint64_t Cpu(uint64_t v) const { return v + t_.cpu_offset; }
  uint64_t TaskState(uint64_t raw) {
    StateLoss loss;
    uint64_t r = TranslateTaskState(raw, t_.states_from, t_.states_to, &loss);
    stats_.task_states_translated += r != raw;
    stats_.task_states_approximated += loss != StateLoss::kNone;
    return r;
  }
  uint64_t Time(uint32_t clock, uint64_t t, bool* to_ref);
  uint64_t TimeQuiet(uint32_t clock, uint64_t t);  // the same, counting nothing
  // The delta to write for a packet `delta` units on its sequence's
  // incremental clock (and the clock's values, read and written, advanced).
  uint64_t IncrementalDelta(Seq* seq, uint64_t delta);
  uint64_t IncrementalOut(const Seq& seq, uint64_t value);
  bool has_ts_override_ = false;
  uint64_t ts_override_ = 0;  // the timestamp to write, when has_ts_override_
  // True when timestamps on `clock` move to the reference clock (and so
  // must be labelled with it): every global clock but the reference itself.
  bool Converts(uint32_t clock) const {
    return t_.shift_time && clock != t_.ref_clock && !clk::IsSequenceScoped(clock);
  }
  uint64_t RefTime(uint64_t t) {
    if (VPMERGE_UNLIKELY(t == 0)) {  // a packet without a time (Android's GPU counter specs)
      stats_.zero_timestamps_kept++;
      return 0;
    }
    stats_.timestamps_shifted++;
    uint64_t r = t + static_cast<uint64_t>(t_.shift_points.size() < 2 ? t_.shift_ns : ShiftAt(t));
    if (VPMERGE_UNLIKELY(static_cast<int64_t>(r) < 0)) BelowZero(static_cast<int64_t>(r));
    return r;
  }
  void BelowZero(int64_t r) {
    stats_.timestamps_below_zero++;
    stats_.earliest_below_zero = std::min(stats_.earliest_below_zero, r);
    packet_below_zero_ = true;
  }
  bool packet_below_zero_ = false;
  bool bad_ = false;  // a nested message of the packet did not decode
  int64_t ShiftAt(uint64_t t);
  size_t segment_ = 0;  // the last interpolation segment (timestamps mostly ascend)

  void TrackDescriptor(const Field& f, ByteBuffer* o);
  void ProcessOrThread(const Field& f, ByteBuffer* o, bool process);
  void TrackEvent(const Field& f, ByteBuffer* o);
  void Defaults(const Field& f, ByteBuffer* o);
  void Snapshot(const Field& f, ByteBuffer* o, bool* dropped);
  void Ftrace(const Field& f, ByteBuffer* o);
  void FtraceEvent(const Field& f, ByteBuffer* o, bool shift);
  enum class FastEvent { kWritten, kStale, kGeneral };
  FastEvent FtraceEventFast(const Field& f, ByteBuffer* o, bool shift, bool drop_stale);
  bool StaleFtrace(const Field& f) const;
  void CompactSched(const Field& f, ByteBuffer* o, bool shift);
  void CompactSchedFiltered(const Field& f, ByteBuffer* o, bool shift);
  bool ServiceEvent(const Field& f);  // false: drop it
  void ProcessTree(const Field& f, ByteBuffer* o);
  void ProcessStats(const Field& f, ByteBuffer* o);
  void AndroidLog(const Field& f, ByteBuffer* o);
  uint64_t LogTime(uint64_t realtime);
  void PerfSample(const Field& f, ByteBuffer* o);
  void FrameTimeline(const Field& f, ByteBuffer* o);
  void Print(const Field& f, ByteBuffer* o);
  void Uuids(const Field& f, ByteBuffer* o);
  void PrefixedString(const Field& f, ByteBuffer* o);
  bool Compressed(const Field& f, ByteBuffer* o, int depth, Status* st);

  Transform t_;
  RewriteStats stats_;
  std::unordered_map<uint32_t, Seq> seqs_;
  uint32_t last_seq_id_ = 0;
  Seq* last_seq_ = nullptr;  // seqs_[last_seq_id_] (node addresses are stable)
  uint32_t ts_clock_guess_ = clk::kBoottime;  // the clock of the last packet's timestamp
};

// Follows what Rewriter keeps of each sequence, reading only packets' top
// levels (and inside compressed_packets), so that a rewrite can start
// anywhere: Rewriter::SetSequences(tracker.State()).
class SeqTracker {
 public:
  explicit SeqTracker(uint32_t ref_clock) : ref_clock_(ref_clock) {}
  void Packet(const uint8_t* data, size_t size, int depth = 0);
  Rewriter::SeqStates State() const;  // the sequences not as after a reset

 private:
  uint32_t ref_clock_;
  std::unordered_map<uint32_t, Rewriter::Seq> seqs_;
  ByteBuffer inflated_;
};

// The incremental clock a ClockSnapshot defines (the first sequence-scoped
// one marked is_incremental) and the global entry that ties it (the
// reference clock's, else the first global one): into seq's inc_* fields.
bool IncrementalClockOf(const uint8_t* data, size_t size, uint32_t ref_clock, Rewriter::Seq* seq);

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_REWRITE_H_
