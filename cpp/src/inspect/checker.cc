#include "inspect/checker.h"
#include "inspect/checker_state.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "merge/proto_fields.h"
#include "merge/scan.h"
#include "merge/trace_io.h"

namespace vpinspect {
namespace {

using vpmerge::Field;
using vpmerge::ProtoDecoder;
namespace pf = vpsdk::pf;
namespace proto = vpsdk::proto;
namespace fld = vpmerge::fld;

constexpr Severity kInfo = Severity::kInfo, kNotice = Severity::kNotice,
                   kError = Severity::kError, kDataLoss = Severity::kDataLoss;
constexpr Effect kNone = Effect::kNone, kMisread = Effect::kMisread, kDropped = Effect::kDropped;

// The rules, by trace_processor's stat names and severities.
const Rule kSkippedNeedsState{"packet_skipped_seq_needs_incremental_state_invalid", kNotice, kNone,
                              "a packet that needs incremental state came before its sequence "
                              "cleared it (or after packet loss): skipped"};
const Rule kSkippedEvent{"packet_skipped_seq_needs_incremental_state_invalid", kNotice, kDropped,
                         "a packet that needs incremental state came before its sequence "
                         "cleared it (or after packet loss): skipped, and what it held is lost"};
const Rule kInternedSkipped{"interned_data_skipped_incremental_state_invalid", kNotice, kNone,
                            "interned data before its sequence cleared its state: ignored"};
const Rule kInternedMissing{"interned_data_tokenizer_errors", kInfo, kMisread,
                            "an interned id used before its definition on the sequence: the "
                            "event shows without that name or category"};
const Rule kParserErrors{"track_event_parser_errors", kInfo, kDropped,
                         "the viewer cannot import the track event and drops it"};
const Rule kCounterInvalid{"track_event_counter_invalid_track_uuid", kError, kDropped,
                           "a counter event on a track not (yet) described as a counter "
                           "track: dropped"};
const Rule kCounterMissing{"track_event_counter_missing_track_uuid", kError, kDropped,
                           "a counter event without a track: dropped"};
const Rule kTrackEventNegative{"track_event_invalid_timestamp", kError, kDropped,
                               "a track event before the trace clock's zero: dropped"};
const Rule kSorterNegative{"trace_sorter_negative_timestamp_dropped", kError, kDropped,
                           "data before the trace clock's zero: dropped"};
const Rule kUnknownClock{"clock_sync_failure_unknown_source_clock", kError, kDropped,
                         "a timestamp on a clock no snapshot (of its machine) mentions: dropped"};
const Rule kUndeferrable{"clock_sync_failure_undeferrable_packet_loss", kDataLoss, kDropped,
                         "a packet on a clock not related to the trace clock after others were "
                         "sorted already: dropped"};
const Rule kNoPath{"clock_sync_failure_no_path", kError, kDropped,
                   "a timestamp on a clock no snapshot path relates to the trace clock: "
                   "dropped"};
const Rule kFtraceBeforeStart{"ftrace_packet_before_tracing_start", kInfo, kDropped,
                              "ftrace data before the (last) tracing-start service event of "
                              "its machine: dropped"};
const Rule kNeverDescribed{"vperfetto_track_never_described", kInfo, kMisread,
                           "events on a track no descriptor describes: the viewer shows them on "
                           "a global track named after the event, not where they belong"};
const Rule kHierarchyMissing{"track_hierarchy_missing_uuid", kInfo, kDropped,
                             "a track whose parent is never described: its events are dropped"};
const Rule kEndWithoutBegin{"vperfetto_slice_end_without_begin", kInfo, kNone,
                            "a slice end with no open slice on its track (ignored by the "
                            "viewer; normal after a ring buffer lost the begin)"};
const Rule kUuidRedescribed{"track_descriptor_conflicting_reservation", kError, kMisread,
                            "one track uuid described as two different tracks (parent, "
                            "process, thread, counter): the viewer ignores the later"};
const Rule kCorrupt{"vperfetto_trace_corrupt", kError, kDropped,
                    "a packet that does not decode: the viewer stops loading the trace"};

constexpr size_t kMaxFindingsPerRule = 100;
constexpr uint32_t kRemoteClockSync = 107;  // TracePacket.remote_clock_sync
constexpr uint32_t kAndroidLog = 39;
constexpr uint32_t kPerfSample = 66;
// TrackDescriptor: state, sibling_merge_behavior .. sibling_merge_key_int
constexpr uint32_t kStateField = 18, kSiblingMergeBehavior = 15, kSiblingMergeKeyInt = 17;
constexpr int kMaxAnnotationDepth = 32;

const char* SeverityName(Severity s) {
  switch (s) {
    case Severity::kInfo: return "info";
    case Severity::kNotice: return "notice";
    case Severity::kError: return "error";
    case Severity::kDataLoss: return "data_loss";
  }
  return "?";
}
const char* EffectName(Effect e) {
  return e == kDropped ? "dropped" : e == kMisread ? "misread" : "none";
}

bool IsTracingStarted(const uint8_t* data, size_t size) {
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g))
    if (g.id == 2 && g.int_value) return true;  // TracingServiceEvent.tracing_started
  return false;
}


}  // namespace


Checker::Checker() = default;
Checker::~Checker() = default;

void Checker::Find(const Rule& r, std::string msg) {
  if (++counts_[&r] > kMaxFindingsPerRule) return;
  findings_.push_back({&r, index_, offset_, std::move(msg)});
}

Checker::Seq& Checker::SeqOf(uint32_t machine, uint32_t seq) {
  auto& p = seqs_[(static_cast<uint64_t>(machine) << 32) | seq];
  if (!p) p.reset(new Seq());
  return *p;
}

Checker::MachineState& Checker::Machine(uint32_t machine) {
  auto& p = machines_[machine];
  if (!p) p.reset(new MachineState());
  return *p;
}

void Checker::Learn(const uint8_t* data, size_t size, int depth) {
  ProtoDecoder d(data, size);
  Field g;
  uint32_t machine = 0, seq = 0, clock = pf::BuiltinClock::kBoottime;
  uint64_t ts = 0;
  bool started = false;
  const uint8_t* snap = nullptr;
  size_t snap_size = 0;
  std::vector<std::pair<const uint8_t*, size_t>> remote;
  Field sysinfo{};
  bool has_sysinfo = false;
  while (d.Next(&g)) {
    switch (g.id) {
      case pf::TracePacket::kMachineId: machine = static_cast<uint32_t>(g.int_value); break;
      case pf::TracePacket::kTrustedPacketSequenceId: seq = static_cast<uint32_t>(g.int_value); break;
      case pf::TracePacket::kSystemInfo:
        if (g.type == proto::kLengthDelimited) sysinfo = g, has_sysinfo = true;
        break;
      case pf::TracePacket::kTimestamp: ts = g.int_value; break;
      case pf::TracePacket::kTimestampClockId: clock = static_cast<uint32_t>(g.int_value); break;
      case pf::TracePacket::kClockSnapshot:
        if (g.type == proto::kLengthDelimited) snap = g.data, snap_size = g.size;
        break;
      case kRemoteClockSync:  // its client clocks are its machine's
        if (g.type == proto::kLengthDelimited) remote.emplace_back(g.data, g.size);
        break;
      case pf::TracePacket::kServiceEvent:
        if (g.type == proto::kLengthDelimited) started = IsTracingStarted(g.data, g.size);
        break;
      case pf::TracePacket::kCompressedPackets: {
        if (g.type != proto::kLengthDelimited || depth > 0) break;
        if (!vpmerge::Inflate(g.data, g.size, vpmerge::kMaxInflatedPacket, &inflated_).ok()) break;
        vpmerge::ByteBuffer inner;
        inner.Append(inflated_.data(), inflated_.size());
        ProtoDecoder e(inner.data(), inner.size());
        Field h;
        while (e.Next(&h))
          if (h.id == 1 && h.type == proto::kLengthDelimited) Learn(h.data, h.size, depth + 1);
        break;
      }
      default:
        break;
    }
  }
  if (snap) {
    uint32_t primary = 0;
    std::vector<ClockValue> c = ReadSnapshot(snap, snap_size, &primary);
    if (primary) clocks_.SetTraceClock(primary);
    LearnSnapshot(machine, seq, c);
  }
  if (has_sysinfo) LearnSystemInfo(sysinfo.data, sysinfo.size, machine);
  if (!remote.empty()) Machine(machine).remote_sync = true;
  for (auto& r : remote)
    for (auto& client : ReadRemoteSnapshots(r.first, r.second)) LearnSnapshot(machine, seq, client);
  if (started) {
    MachineState& m = Machine(machine);
    m.has_start = true;
    m.start_clock = clock;
    m.start_raw = ts;
  }
}

bool Checker::ToTrace(uint32_t machine, Seq& seq, uint32_t clock, uint64_t t, bool has_clock,
                      int64_t* out, bool track_event) {
  // Without one: the sequence's default, else the trace's (its primary
  // clock, on every machine).
  if (!has_clock) clock = seq.default_clock ? seq.default_clock : clocks_.trace_clock();
  uint64_t v = t;
  if (clock >= 64 && clock < 128) {
    uint32_t global;
    if (!seq.clocks.Resolve(clock, t, &global, &v)) {
      unconverted_ = true;
      Find(kUnknownClock, "timestamp on sequence-scoped clock " + std::to_string(clock) +
                              ", which its sequence never defined");
      return false;
    }
    clock = global;
  }
  Conversion c = clocks_.ToTraceTime(machine, clock, v, out);
  if (c != Conversion::kOk) {
    unconverted_ = true;
    Find(c == Conversion::kUnknownClock ? kUnknownClock : kNoPath,
         "timestamp on clock " + std::to_string(clock) + (machine ? " of machine " + std::to_string(machine) : "") +
             (c == Conversion::kUnknownClock ? ", which no clock snapshot mentions"
                                             : ", which no snapshot relates to the trace clock"));
    return false;
  }
  if (*out < 0) {
    Find(track_event ? kTrackEventNegative : kSorterNegative,
         "timestamp " + std::to_string(*out) + " ns: before the trace clock's zero");
    return false;
  }
  return true;
}

void Checker::Interned(const uint8_t* data, size_t size, Seq& seq) {
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g)) {
    if (g.type != proto::kLengthDelimited) continue;
    std::unordered_set<uint64_t>* set =
        g.id == pf::InternedData::kEventCategories ? &seq.cats
        : g.id == pf::InternedData::kEventNames    ? &seq.names
        : g.id == pf::InternedData::kDebugAnnotationNames ? &seq.anames
                                                   : nullptr;
    if (!set) continue;
    ProtoDecoder e(g.data, g.size);
    Field h;
    while (e.Next(&h))
      if (h.id == pf::InternedString::kIid) set->insert(h.int_value);
  }
}

// False (with the reason) when trace_processor cannot import an annotation:
// it and every dictionary entry in it need a name (array values do not).
bool Checker::Annotations(const uint8_t* data, size_t size, Seq& seq, int depth, std::string* why) {
  bool needs_name = depth >= 0;  // -1: an array value
  if (depth < 0) depth = -depth;
  if (depth > kMaxAnnotationDepth) return true;
  ProtoDecoder d(data, size);
  Field h;
  bool named = false;
  while (d.Next(&h)) {
    if (h.id == pf::DebugAnnotation::kNameIid && h.type == proto::kVarint) {
      if (!seq.anames.count(h.int_value)) {
        *why = "debug annotation name iid " + std::to_string(h.int_value) + " is not defined";
        Find(kInternedMissing, *why + " on the sequence");
        return false;
      }
      named = true;
    } else if (h.id == pf::DebugAnnotation::kName && h.type == proto::kLengthDelimited) {
      named = true;
    } else if (h.id == 11 && h.type == proto::kLengthDelimited) {  // dict_entries
      if (!Annotations(h.data, h.size, seq, depth + 1, why)) return false;
    } else if (h.id == 12 && h.type == proto::kLengthDelimited) {  // array_values
      if (!Annotations(h.data, h.size, seq, -(depth + 1), why)) return false;
    }
  }
  if (needs_name && !named) {
    *why = depth ? "dictionary entry of a debug annotation without a name"
                 : "debug annotation without a name";
    return false;
  }
  return true;
}

void Checker::TrackEvent(const uint8_t* data, size_t size, uint32_t machine, Seq& seq, int64_t ts,
                         bool ts_ok) {
  ProtoDecoder d(data, size);
  Field g;
  uint32_t type = 0;
  uint64_t track = 0;
  bool has_track = false;
  std::string why;
  FlowRefs flows;
  while (d.Next(&g)) {
    ReadFlows(g, &flows);
    switch (g.id) {
      case pf::TrackEvent::kType: type = static_cast<uint32_t>(g.int_value); break;
      case pf::TrackEvent::kTrackUuid: track = g.int_value, has_track = true; break;
      case pf::TrackEvent::kNameIid:
        if (!seq.names.count(g.int_value))
          Find(kInternedMissing, "event name iid " + std::to_string(g.int_value) +
                                     " used before its definition on the sequence");
        break;
      case pf::TrackEvent::kCategoryIids:
        vpmerge::ForEachVarint(g, [&](uint64_t v) {
          if (!seq.cats.count(v))
            Find(kInternedMissing, "category iid " + std::to_string(v) +
                                       " used before its definition on the sequence");
        });
        break;
      case pf::TrackEvent::kDebugAnnotations:
        if (g.type == proto::kLengthDelimited && why.empty()) Annotations(g.data, g.size, seq, 0, &why);
        break;
      default:
        break;
    }
  }
  if (!ts_ok) return;  // dropped already (and said so)
  if (!has_track) track = seq.default_track, has_track = seq.has_default_track;
  MachineState& m = Machine(machine);
  if (type == pf::TrackEvent::kTypeCounter) {
    if (!has_track) {
      Find(kCounterMissing, "counter event without a track uuid");
      return;
    }
    auto it = m.tracks.find(track);
    if (it == m.tracks.end() || !it->second) {
      Find(kCounterInvalid, "counter event on track " + std::to_string(track) +
                                (it == m.tracks.end() ? ", not described before it"
                                                      : ", which is not a counter track"));
      return;
    }
  }
  if (!why.empty()) {
    Find(kParserErrors, why + ": the event is dropped");
    return;
  }
  if (type != pf::TrackEvent::kTypeCounter) Flows(machine, flows);
  if (!track) return;  // legacy thread association
  if (!m.used.count(track)) m.used.emplace(track, std::make_pair(index_, offset_));
  if (type == pf::TrackEvent::kTypeSliceBegin) {
    // A begin at or before an end that came earlier in the file (from another
    // sequence) pairs with that end, as it does once the viewer sorts by time.
    auto o = m.orphans.find(track);
    if (o != m.orphans.end() && !o->second.empty()) {
      auto& v = o->second;
      auto it = std::find_if(v.begin(), v.end(), [&](const Orphan& x) { return ts <= x.ts; });
      if (it != v.end()) {
        v.erase(it);
        m.orphan_count--;
        return;
      }
    }
    m.open[track].push_back(ts);
  } else if (type == pf::TrackEvent::kTypeSliceEnd) {
    auto& st = m.open[track];
    if (!st.empty()) {
      st.pop_back();
    } else if (m.orphan_count < (1u << 20)) {
      m.orphans[track].push_back({ts, index_, offset_});
      m.orphan_count++;
    }
  }
}

void Checker::Descriptor(const uint8_t* data, size_t size, uint32_t machine) {
  ProtoDecoder d(data, size);
  Field g;
  uint64_t uuid = 0, parent = 0;
  bool counter = false;
  int32_t pid = 0, tid = 0;
  // What trace_processor compares between two descriptors of one uuid
  // (besides parent, process and thread): counter details, state, merging.
  std::string same;
  while (d.Next(&g)) {
    if (g.id == pf::TrackDescriptor::kUuid) uuid = g.int_value;
    else if (g.id == pf::TrackDescriptor::kParentUuid) parent = g.int_value;
    else if (g.id == pf::TrackDescriptor::kCounter) counter = true;
    if (g.id == pf::TrackDescriptor::kCounter || g.id == kStateField ||
        (g.id >= kSiblingMergeBehavior && g.id <= kSiblingMergeKeyInt))
      same.append(reinterpret_cast<const char*>(g.begin), static_cast<size_t>(g.end - g.begin));
    else if ((g.id == pf::TrackDescriptor::kProcess || g.id == pf::TrackDescriptor::kThread) &&
             g.type == proto::kLengthDelimited) {
      ProtoDecoder e(g.data, g.size);
      Field h;
      while (e.Next(&h)) {
        if (h.id == 1 && h.type == proto::kVarint) pid = static_cast<int32_t>(h.int_value);
        if (h.id == 2 && h.type == proto::kVarint && g.id == pf::TrackDescriptor::kThread)
          tid = static_cast<int32_t>(h.int_value);
      }
      if (g.id == pf::TrackDescriptor::kThread && !tid) tid = -1;
    }
  }
  if (!uuid) {
    if (parent) DefaultTrackParent(uuid, parent);
    return;
  }
  MachineState& m = Machine(machine);
  same += "|" + std::to_string(parent) + "|" + std::to_string(pid) + "|" + std::to_string(tid);
  auto k = m.kinds.find(uuid);
  if (k != m.kinds.end() && k->second != same)
    Find(kUuidRedescribed, "track uuid " + std::to_string(uuid) +
                               " described again as another track (parent, process, thread or counter)");
  else if (k == m.kinds.end())
    m.kinds.emplace(uuid, same);
  auto& c = m.tracks[uuid];
  c = c || counter;
  if (parent) {
    m.parent_of.emplace(uuid, parent);
    if (!m.parents.count(parent)) m.parents.emplace(parent, std::make_pair(index_, offset_));
  }
}

void Checker::Ftrace(const uint8_t* data, size_t size, uint32_t machine) {
  MachineState& m = Machine(machine);
  if (m.has_start && m.start == INT64_MIN) {
    int64_t t;
    m.start = clocks_.ToTraceTime(machine, m.start_clock, m.start_raw, &t) == Conversion::kOk
                  ? t
                  : static_cast<int64_t>(m.start_raw);
  }
  ProtoDecoder d(data, size);
  Field g;
  uint64_t before = 0, negative = 0, unconverted = 0;
  int64_t first_before = 0;
  auto check = [&](uint64_t raw) {
    int64_t t;
    if (clocks_.ToTraceTime(machine, pf::BuiltinClock::kBoottime, raw, &t) != Conversion::kOk) {
      unconverted++;
      return;
    }
    if (t < 0) negative++;
    else if (m.has_start && t < m.start && !before++) first_before = t;
  };
  while (d.Next(&g)) {
    if (g.id == fld::FtraceEventBundle::kFtraceClock && g.int_value != 0) return;  // not BOOTTIME
    if (g.id == fld::FtraceEventBundle::kEvent && g.type == proto::kLengthDelimited) {
      ProtoDecoder e(g.data, g.size);
      Field h;
      while (e.Next(&h))
        if (h.id == fld::FtraceEvent::kTimestamp && h.type == proto::kVarint) check(h.int_value);
    } else if (g.id == fld::FtraceEventBundle::kCompactSched && g.type == proto::kLengthDelimited) {
      ProtoDecoder e(g.data, g.size);
      Field h;
      uint64_t sw = 0, wk = 0;
      while (e.Next(&h)) {
        if (h.id == fld::CompactSched::kSwitchTimestamp)
          vpmerge::ForEachVarint(h, [&](uint64_t v) { check(sw += v); });
        else if (h.id == fld::CompactSched::kWakingTimestamp)
          vpmerge::ForEachVarint(h, [&](uint64_t v) { check(wk += v); });
      }
    }
  }
  if (negative)
    Find(kSorterNegative, std::to_string(negative) + " ftrace event(s) before the trace clock's zero");
  if (before)
    Find(kFtraceBeforeStart, std::to_string(before) + " ftrace event(s) from " +
                                 std::to_string(first_before) + " ns, before tracing started at " +
                                 std::to_string(m.start) + " ns");
  if (unconverted) Find(kNoPath, std::to_string(unconverted) + " ftrace timestamp(s) not convertible");
}

void Checker::Packet(const uint8_t* data, size_t size, uint64_t index, uint64_t offset, int depth) {
  index_ = index;
  offset_ = offset;
  ProtoDecoder d(data, size);
  Field g;
  Field te{}, interned{}, desc{}, defaults{}, snap{}, ftrace{};
  bool has_te = false, has_interned = false, has_desc = false, has_defaults = false;
  bool has_snap = false, has_ftrace = false, has_ts = false, has_clock = false;
  bool has_log = false, has_remote_sync = false, has_config = false, has_perf = false;
  bool has_stats = false;
  Field log{}, remote_sync{}, config{}, perf{}, stats{};
  bool cleared = false, needs = false, dropped = false, other_payload = false;
  uint64_t ts = 0;
  uint32_t seq_id = 0, machine = 0, clock = 0;
  while (d.Next(&g)) {
    bool len = g.type == proto::kLengthDelimited;
    switch (g.id) {
      case pf::TracePacket::kTimestamp: ts = g.int_value, has_ts = true; break;
      case pf::TracePacket::kTimestampClockId: clock = static_cast<uint32_t>(g.int_value), has_clock = true; break;
      case pf::TracePacket::kTrustedPacketSequenceId: seq_id = static_cast<uint32_t>(g.int_value); break;
      case pf::TracePacket::kMachineId: machine = static_cast<uint32_t>(g.int_value); break;
      case pf::TracePacket::kSequenceFlags:
        cleared |= (g.int_value & pf::TracePacket::kSeqIncrementalStateCleared) != 0;
        needs |= (g.int_value & pf::TracePacket::kSeqNeedsIncrementalState) != 0;
        break;
      case pf::TracePacket::kIncrementalStateCleared: cleared |= g.int_value != 0; break;
      case pf::TracePacket::kPreviousPacketDropped: dropped |= g.int_value != 0; break;
      case pf::TracePacket::kTrackEvent: te = g, has_te = len; break;
      case pf::TracePacket::kInternedData: interned = g, has_interned = len; break;
      case pf::TracePacket::kTrackDescriptor: desc = g, has_desc = len; break;
      case pf::TracePacket::kTracePacketDefaults: defaults = g, has_defaults = len; break;
      case pf::TracePacket::kClockSnapshot: snap = g, has_snap = len; break;
      case pf::TracePacket::kFtraceEvents: ftrace = g, has_ftrace = len; break;
      case kAndroidLog: log = g, has_log = len; break;
      case kRemoteClockSync: remote_sync = g, has_remote_sync = len; break;
      case pf::TracePacket::kTraceConfig: config = g, has_config = len; break;
      case pf::TracePacket::kTraceStats: stats = g, has_stats = len; break;
      case kPerfSample: perf = g, has_perf = len; break;
      case pf::TracePacket::kTrustedUid: case pf::TracePacket::kTrustedPid:
      case pf::TracePacket::kFirstPacketOnSequence:
        break;
      case pf::TracePacket::kCompressedPackets: {
        if (!len || depth > 0) break;
        if (!vpmerge::Inflate(g.data, g.size, vpmerge::kMaxInflatedPacket, &inflated_).ok()) {
          Find(kCorrupt, "compressed_packets that do not inflate");
          break;
        }
        vpmerge::ByteBuffer inner;
        inner.Append(inflated_.data(), inflated_.size());
        ProtoDecoder e(inner.data(), inner.size());
        Field h;
        while (e.Next(&h))
          if (h.id == 1 && h.type == proto::kLengthDelimited) Packet(h.data, h.size, index, offset, 1);
        if (e.error()) Find(kCorrupt, "compressed_packets that do not decode");
        index_ = index;
        offset_ = offset;
        return;
      }
      default:
        other_payload = true;
        break;
    }
  }
  if (d.error()) {
    Find(kCorrupt, "the packet does not decode");
    return;
  }
  Seq& seq = SeqOf(machine, seq_id);
  if (cleared) {
    seq.valid = true;
    seq.names.clear();
    seq.cats.clear();
    seq.anames.clear();
    seq.default_clock = 0;
    seq.default_track = 0;
    seq.has_default_track = false;
  } else if (dropped) {
    seq.valid = false;
  }
  if (has_defaults) {
    ProtoDecoder e(defaults.data, defaults.size);
    Field h;
    while (e.Next(&h)) {
      if (h.id == pf::TracePacketDefaults::kTimestampClockId)
        seq.default_clock = static_cast<uint32_t>(h.int_value);
      if (h.id == pf::TracePacketDefaults::kTrackEventDefaults && h.type == proto::kLengthDelimited) {
        ProtoDecoder t(h.data, h.size);
        Field k;
        while (t.Next(&k))
          if (k.id == pf::TrackEventDefaults::kTrackUuid)
            seq.default_track = k.int_value, seq.has_default_track = true;
      }
    }
  }
  if (has_interned) {
    if (seq.valid) Interned(interned.data, interned.size, seq);
    else Find(kInternedSkipped, "interned data on sequence " + std::to_string(seq_id) +
                                    " while its incremental state is invalid");
  }
  if (has_config) TraceConfig(config.data, config.size, machine);
  if (has_stats) TraceStats(stats.data, stats.size, machine);
  if (has_remote_sync)  // its client clocks are snapshots of its machine
    for (auto& client : ReadRemoteSnapshots(remote_sync.data, remote_sync.size)) Snapshot(machine, seq_id, client);
  if (has_snap) {
    uint32_t primary = 0;
    std::vector<ClockValue> c = ReadSnapshot(snap.data, snap.size, &primary);
    Snapshot(machine, seq_id, c);
    if (std::any_of(c.begin(), c.end(), [](const ClockValue& v) { return v.clock >= 64 && v.clock < 128; }))
      seq.clocks.Define(c);
    return;  // trace_processor reads nothing else of a snapshot packet
  }
  if (needs && !seq.valid) {
    if (has_te || other_payload || has_ftrace) {
      Find(kSkippedEvent, "sequence " + std::to_string(seq_id) +
                              ": an event before the sequence cleared its incremental state");
    } else if (has_desc) {
      // Harmless when the track is described again later (SDK v7 does so).
      ProtoDecoder e(desc.data, desc.size);
      Field h;
      uint64_t uuid = 0;
      while (e.Next(&h))
        if (h.id == pf::TrackDescriptor::kUuid) uuid = h.int_value;
      Machine(machine).skipped_descriptors.push_back({uuid, Orphan{0, index_, offset_}});
    }
    return;
  }
  int64_t trace_ts = 0;
  bool ts_ok = true;
  if (has_ts && !Machine(machine).converted) FirstConversion(machine);
  unconverted_ = false;
  if (has_ts) ts_ok = ToTrace(machine, seq, clock, ts, has_clock, &trace_ts, has_te);
  if (unconverted_ && pushed_any_)
    Find(kUndeferrable, "a packet on a clock not related to the trace clock, after others");
  pushed_any_ |= !unconverted_;
  if (has_desc) Descriptor(desc.data, desc.size, machine);
  if (has_te) TrackEvent(te.data, te.size, machine, seq, trace_ts, ts_ok);
  if (has_ftrace) Ftrace(ftrace.data, ftrace.size, machine);
  if (has_ftrace) TaskStates(ftrace.data, ftrace.size, machine);
  if (has_log) AndroidLog(log.data, log.size, machine);
  if (has_perf) PerfSample(perf.data, perf.size);
}

// Android log times are CLOCK_REALTIME; trace_processor converts them through
// their machine's own REALTIME when a RemoteClockSync ties that machine to the
// host, else through the host machine's REALTIME when it has one, else
// through their own machine's.
void Checker::AndroidLog(const uint8_t* data, size_t size, uint32_t machine) {
  ProtoDecoder d(data, size);
  Field g;
  uint64_t failed = 0, negative = 0;
  int64_t probe;
  uint32_t via = machine && !Machine(machine).remote_sync &&
                         clocks_.ToTraceTime(0, pf::BuiltinClock::kRealtime, 0, &probe) !=
                             Conversion::kUnknownClock
                     ? 0
                     : machine;
  while (d.Next(&g)) {
    if (g.id != 1 || g.type != proto::kLengthDelimited) continue;  // events
    ProtoDecoder e(g.data, g.size);
    Field h;
    while (e.Next(&h)) {
      if (h.id != 5 || h.type != proto::kVarint) continue;  // timestamp
      int64_t t;
      Conversion c = clocks_.ToTraceTime(via, pf::BuiltinClock::kRealtime, h.int_value, &t);
      if (c != Conversion::kOk) failed++;
      else if (t < 0) negative++;
    }
  }
  if (failed)
    Find(kUnknownClock, std::to_string(failed) + " android log event(s) on REALTIME, which no "
                                                 "snapshot relates to the trace clock");
  if (negative)
    Find(kSorterNegative, std::to_string(negative) + " android log event(s) before the trace clock's zero");
}

void Checker::Finish() {
  for (auto& mp : machines_) {
    SessionFinish(mp.first);
    MachineState& m = *mp.second;
    std::string on = mp.first ? " of machine " + std::to_string(mp.first) : "";
    for (auto& kv : m.skipped_descriptors) {
      if (kv.first && m.tracks.count(kv.first)) {
        index_ = kv.second.packet, offset_ = kv.second.offset;
        Find(kSkippedNeedsState, "track descriptor " + std::to_string(kv.first) +
                                     " before its sequence cleared its state (described again later)");
      } else {
        index_ = kv.second.packet, offset_ = kv.second.offset;
        Find(kSkippedEvent, "track descriptor " + std::to_string(kv.first) +
                                " before its sequence cleared its state, never described again");
      }
    }
    for (auto& kv : m.used) {
      index_ = kv.second.first, offset_ = kv.second.second;
      if (!m.tracks.count(kv.first)) {
        Find(kNeverDescribed, "events on track " + std::to_string(kv.first) + on +
                                  ", which is never described");
        continue;
      }
      // A track under a parent that is never described cannot be resolved:
      // trace_processor drops its events.
      uint64_t t = kv.first;
      for (size_t hops = 0; hops < 64; hops++) {
        auto p = m.parent_of.find(t);
        if (p == m.parent_of.end()) break;
        if (!m.tracks.count(p->second)) {
          Find(kParserErrors, "events on track " + std::to_string(kv.first) + on + ", under parent " +
                                  std::to_string(p->second) + ", which is never described: they are dropped");
          break;
        }
        t = p->second;
      }
    }
    for (auto& kv : m.parents) {
      if (m.tracks.count(kv.first)) continue;
      index_ = kv.second.first, offset_ = kv.second.second;
      Find(kHierarchyMissing, "parent track " + std::to_string(kv.first) + on + " is never described");
    }
    for (auto& kv : m.orphans)
      for (const Orphan& o : kv.second) {
        index_ = o.packet, offset_ = o.offset;
        Find(kEndWithoutBegin, "slice end on track " + std::to_string(kv.first) + on +
                                   " with no slice open on it");
      }
  }
  std::stable_sort(findings_.begin(), findings_.end(),
                   [](const Finding& a, const Finding& b) { return a.packet < b.packet; });
}

bool Checker::Fails() const {
  for (auto& kv : counts_)
    if (kv.first->severity == Severity::kError || kv.first->severity == Severity::kDataLoss ||
        kv.first->effect != kNone)
      return true;
  return false;
}

void Checker::Json(vpmerge::Json* j) const {
  j->Key("findings");
  j->Open('[');
  for (const Finding& f : findings_) {
    j->Open('{');
    j->Key("stat"); j->String(f.rule->stat);
    j->Key("severity"); j->String(SeverityName(f.rule->severity));
    j->Key("effect"); j->String(EffectName(f.rule->effect));
    j->Key("packet"); j->UInt(f.packet);
    j->Key("offset"); j->UInt(f.offset);
    j->Key("message"); j->String(f.message);
    j->Close('}');
  }
  j->Close(']');
  // Per stat (the same stat can have two effects: merged, the worse one wins).
  std::map<std::string, std::pair<uint64_t, const Rule*>> by;
  for (auto& kv : counts_) {
    auto& e = by[kv.first->stat];
    e.first += kv.second;
    if (!e.second || kv.first->effect > e.second->effect) e.second = kv.first;
  }
  j->Key("stats");
  j->Open('{');
  for (auto& kv : by) {
    j->Key(kv.first.c_str());
    j->Open('{');
    j->Key("count"); j->UInt(kv.second.first);
    j->Key("severity"); j->String(SeverityName(kv.second.second->severity));
    j->Key("effect"); j->String(EffectName(kv.second.second->effect));
    j->Key("meaning"); j->String(kv.second.second->meaning);
    j->Close('}');
  }
  j->Close('}');
  j->Key("fails"); j->Bool(Fails());
}

}  // namespace vpinspect
