#include "scan.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "ftrace_ids.h"
#include "progress.h"
#include "proto_fields.h"

namespace vpmerge {

bool ClockConverter::Has(uint32_t clock) const {
  for (const Snapshot& s : snapshots_)
    for (auto& c : s)
      if (c.first == clock) return true;
  return false;
}

// One pass over the snapshots per target clock (in practice only the
// reference clock), instead of one per converted timestamp: with many
// snapshots and many timestamps the merge was quadratic (a 1 MB trace of
// 20k snapshots and 20k timestamps took seconds, 40k four times that).
const ClockConverter::Points* ClockConverter::Find(uint32_t from, uint32_t to) const {
  // (What it returns stays valid: nodes of the maps never move, and a
  // target's points are complete before the lock is let go.)
  std::lock_guard<std::mutex> guard(lock_.m);
  auto t = index_.find(to);
  if (t == index_.end()) {
    auto& by_from = index_[to];
    std::vector<std::pair<uint32_t, uint64_t>> last;  // each clock's last value
    for (const Snapshot& s : snapshots_) {
      bool ht = false;
      uint64_t vt = 0;
      for (auto& c : s)
        if (c.first == to) ht = true, vt = c.second;
      if (!ht) continue;
      last.assign(s.begin(), s.end());
      std::reverse(last.begin(), last.end());
      std::stable_sort(last.begin(), last.end(),
                       [](const std::pair<uint32_t, uint64_t>& a,
                          const std::pair<uint32_t, uint64_t>& b) { return a.first < b.first; });
      for (size_t i = 0; i < last.size(); i++)
        if (i == 0 || last[i].first != last[i - 1].first)
          by_from[last[i].first].emplace_back(last[i].second, vt);
    }
    // By the `from` value; snapshot order among equal ones.
    for (auto& p : by_from)
      std::stable_sort(p.second.begin(), p.second.end(),
                       [](const std::pair<uint64_t, uint64_t>& a,
                          const std::pair<uint64_t, uint64_t>& b) { return a.first < b.first; });
    t = index_.find(to);
  }
  auto f = t->second.find(from);
  return f == t->second.end() ? nullptr : &f->second;
}

bool ClockConverter::Relates(uint32_t a, uint32_t b) const { return Find(a, b) != nullptr; }

// Through the snapshot whose `from` value is the latest not after t (the
// last such snapshot among equal values), else the one with the earliest
// `from` value (the first among equal ones).
bool ClockConverter::Convert(uint32_t from, uint32_t to, uint64_t t, uint64_t* out) const {
  if (from == to) {
    *out = t;
    return true;
  }
  const Points* p = Find(from, to);
  if (!p || p->empty()) return false;
  auto it = std::upper_bound(p->begin(), p->end(), t,
                             [](uint64_t v, const std::pair<uint64_t, uint64_t>& e) { return v < e.first; });
  const auto& e = it == p->begin() ? p->front() : *(it - 1);
  *out = t - e.first + e.second;
  return true;
}

namespace {

constexpr char kMarkerName[] = "guest_clock_sync";
constexpr char kLinkRoundName[] = "vperfetto_clock_sync_round";
enum EventKind : uint8_t { kPlainEvent = 0, kClockMarker = 1, kLinkRoundEvent = 2 };
enum MarkerAnnotation {
  kNotMarker = 0, kBoot, kMono, kTsc, kPeer, kT1, kT2, kT3, kT4,
};

bool Is(const uint8_t* s, size_t n, const char* lit) {
  return n == std::strlen(lit) && std::memcmp(s, lit, n) == 0;
}

EventKind NameKind(const uint8_t* s, size_t n) {
  if (Is(s, n, kMarkerName)) return kClockMarker;
  if (Is(s, n, kLinkRoundName)) return kLinkRoundEvent;
  return kPlainEvent;
}

MarkerAnnotation AnnotationKind(const uint8_t* s, size_t n) {
  if (Is(s, n, "clock_sync_boottime")) return kBoot;
  if (Is(s, n, "clock_sync_monotonic")) return kMono;
  if (Is(s, n, "clock_sync_cputime")) return kTsc;
  if (Is(s, n, "sync_peer")) return kPeer;
  if (Is(s, n, "sync_t1")) return kT1;
  if (Is(s, n, "sync_t2")) return kT2;
  if (Is(s, n, "sync_t3")) return kT3;
  if (Is(s, n, "sync_t4")) return kT4;
  return kNotMarker;
}

struct SequenceScan {
  uint32_t default_clock = clk::kBoottime;
  std::unordered_map<uint64_t, EventKind> marker_names;   // iids naming sync events
  std::unordered_map<uint64_t, MarkerAnnotation> annotations;
};

class Scanner {
 public:
  explicit Scanner(InputSummary* s) : s_(s) {}
  Status Packet(const uint8_t* data, size_t size, int depth);

 private:
  void Pid(int64_t v) { s_->max_pid = std::max(s_->max_pid, v); }
  void Cpu(uint64_t v) {
    s_->has_cpu = true;
    s_->max_cpu = std::max<uint32_t>(s_->max_cpu, static_cast<uint32_t>(v));
  }
  void Uuid(uint64_t v) {
    if (v) s_->uuids.insert(v);
  }
  void TrackDescriptor(const Field& f);
  void TrackEvent(const Field& f, SequenceScan& seq, uint64_t ts);
  void Interned(const Field& f, SequenceScan& seq);
  void Snapshot(const Field& f);
  void SystemInfo(const Field& f);
  void Ftrace(const Field& f);
  void PidsIn(const Field& f, uint32_t pid_field, uint32_t nested_field, uint32_t nested_pid);

  InputSummary* s_;
  std::unordered_map<uint32_t, SequenceScan> seqs_;
  uint32_t last_seq_id_ = 0;
  SequenceScan* last_seq_ = nullptr;  // seqs_[last_seq_id_] (node addresses are stable)
  ByteBuffer inflated_;
};

// trace_processor reads the machine's kernel version (for sched_switch
// states) and architecture (for syscall numbers) from each SystemInfo.
void Scanner::SystemInfo(const Field& f) {
  ProtoDecoder d(f.data, f.size);
  Field g;
  while (d.Next(&g)) {
    if (g.id != fld::SystemInfo::kUtsname || g.type != proto::kLengthDelimited) continue;
    std::string sysname, release, machine;
    ProtoDecoder e(g.data, g.size);
    Field h;
    while (e.Next(&h)) {
      if (h.type != proto::kLengthDelimited) continue;
      std::string v(reinterpret_cast<const char*>(h.data), h.size);
      if (h.id == fld::Utsname::kSysname) sysname = v;
      else if (h.id == fld::Utsname::kRelease) release = v;
      else if (h.id == fld::Utsname::kMachine) machine = v;
    }
    s_->has_system_info = true;
    s_->kernel_era = EraOfKernel(sysname, release);
    s_->kernel_release = release;
    s_->machine_arch = machine;
  }
}

void Scanner::TrackDescriptor(const Field& f) {
  ProtoDecoder d(f.data, f.size);
  Field g;
  while (d.Next(&g)) {
    if (g.id == pf::TrackDescriptor::kUuid || g.id == pf::TrackDescriptor::kParentUuid) {
      Uuid(g.int_value);
    } else if ((g.id == pf::TrackDescriptor::kProcess || g.id == pf::TrackDescriptor::kThread) &&
               g.type == proto::kLengthDelimited) {
      ProtoDecoder e(g.data, g.size);
      Field h;
      while (e.Next(&h))
        if (h.type == proto::kVarint && (h.id == 1 || h.id == 2))  // pid, tid
          Pid(static_cast<int32_t>(h.int_value));
    }
  }
}

void Scanner::Interned(const Field& f, SequenceScan& seq) {
  ProtoDecoder d(f.data, f.size);
  Field g;
  while (d.Next(&g)) {
    if (g.type != proto::kLengthDelimited) continue;
    if (g.id != pf::InternedData::kEventNames && g.id != pf::InternedData::kDebugAnnotationNames)
      continue;
    ProtoDecoder e(g.data, g.size);
    Field h;
    uint64_t iid = 0;
    const uint8_t* name = nullptr;
    size_t len = 0;
    while (e.Next(&h)) {
      if (h.id == pf::InternedString::kIid) iid = h.int_value;
      if (h.id == pf::InternedString::kName && h.type == proto::kLengthDelimited)
        name = h.data, len = h.size;
    }
    if (!name) continue;
    if (g.id == pf::InternedData::kEventNames) {
      EventKind k = NameKind(name, len);
      if (k != kPlainEvent) seq.marker_names[iid] = k;
      else seq.marker_names.erase(iid);
    } else {
      MarkerAnnotation k = AnnotationKind(name, len);
      if (k != kNotMarker) seq.annotations[iid] = k;
      else seq.annotations.erase(iid);
    }
  }
}

void Scanner::TrackEvent(const Field& f, SequenceScan& seq, uint64_t ts) {
  ProtoDecoder d(f.data, f.size);
  Field g;
  EventKind marker = kPlainEvent;
  bool annotated = false;
  while (d.Next(&g)) {
    switch (g.id) {
      case pf::TrackEvent::kTrackUuid:
        Uuid(g.int_value);
        break;
      case pf::TrackEvent::kExtraCounterTrackUuids:
      case fld::TrackEvent::kExtraDoubleCounterTrackUuids:
        ForEachVarint(g, [&](uint64_t v) { Uuid(v); });
        break;
      case pf::TrackEvent::kNameIid:
        if (!seq.marker_names.empty()) {
          auto it = seq.marker_names.find(g.int_value);
          marker = it == seq.marker_names.end() ? kPlainEvent : it->second;
        }
        break;
      case pf::TrackEvent::kName:
        if (g.type == proto::kLengthDelimited) marker = NameKind(g.data, g.size);
        break;
      case pf::TrackEvent::kDebugAnnotations:
        annotated |= g.type == proto::kLengthDelimited;
        break;
      case fld::TrackEvent::kFlowIds:
      case fld::TrackEvent::kTerminatingFlowIds:
      case fld::TrackEvent::kFlowIdsOld:
      case fld::TrackEvent::kTerminatingFlowIdsOld:
        ForEachFlowId(g, [&](uint64_t v) { s_->flow_ids.insert(v); });
        break;
      case fld::TrackEvent::kLegacyEvent:
        if (g.type == proto::kLengthDelimited) {
          uint64_t id = 0, phase = 0;
          bool has_id = false;
          ProtoDecoder e(g.data, g.size);
          Field h;
          while (e.Next(&h)) {
            if (h.type != proto::kVarint) continue;
            if (h.id == fld::TrackEvent::Legacy::kBindId) s_->flow_ids.insert(h.int_value);
            if (h.id == fld::TrackEvent::Legacy::kUnscopedId) id = h.int_value, has_id = true;
            if (h.id == fld::TrackEvent::Legacy::kPhase) phase = h.int_value;
          }
          if (has_id && fld::TrackEvent::Legacy::IsFlowPhase(phase)) s_->flow_ids.insert(id);
        }
        break;
      default:
        break;
    }
  }
  if (marker == kPlainEvent || !annotated) return;
  // A clock-sync marker or link round: read its annotations.
  SyncMarker m;
  m.packet_ts = ts;
  LinkRound round;
  int round_fields = 0;
  ProtoDecoder d2(f.data, f.size);
  while (d2.Next(&g)) {
    if (g.id != pf::TrackEvent::kDebugAnnotations || g.type != proto::kLengthDelimited) continue;
    ProtoDecoder e(g.data, g.size);
    Field h;
    MarkerAnnotation kind = kNotMarker;
    bool has_value = false;
    uint64_t value = 0;
    std::string peer;
    while (e.Next(&h)) {
      if (h.id == pf::DebugAnnotation::kNameIid) {
        auto it = seq.annotations.find(h.int_value);
        if (it != seq.annotations.end()) kind = it->second;
      } else if (h.id == pf::DebugAnnotation::kName && h.type == proto::kLengthDelimited) {
        kind = AnnotationKind(h.data, h.size);
      } else if ((h.id == pf::DebugAnnotation::kUintValue ||
                  h.id == pf::DebugAnnotation::kIntValue) && h.type == proto::kVarint) {
        has_value = true;
        value = h.int_value;
      } else if (h.id == pf::DebugAnnotation::kStringValue && h.type == proto::kLengthDelimited) {
        peer.assign(reinterpret_cast<const char*>(h.data), std::min<size_t>(h.size, 64));
      }
    }
    if (kind == kPeer) round.peer = peer;
    if (!has_value) continue;
    switch (kind) {
      case kT1: round.t1 = value, round_fields |= 1; break;
      case kT2: round.t2 = value, round_fields |= 2; break;
      case kT3: round.t3 = value, round_fields |= 4; break;
      case kT4: round.t4 = value, round_fields |= 8; break;
      default: break;
    }
    if (kind == kBoot) m.boottime = value, m.has_boottime = true;
    if (kind == kMono) m.monotonic = value, m.has_monotonic = true;
    if (kind == kTsc) m.tsc = value, m.has_tsc = true;
  }
  if (marker == kLinkRoundEvent) {
    // Bounded: a trace cannot make the merge keep more than this many rounds.
    if (round_fields == 15 && s_->link_rounds.size() < (1u << 20)) s_->link_rounds.push_back(round);
    return;
  }
  if (m.has_tsc || m.has_boottime) s_->markers.push_back(m);
}

void Scanner::Snapshot(const Field& f) {
  vpmerge::Snapshot snap;
  bool scoped = false;
  ProtoDecoder d(f.data, f.size);
  Field g;
  while (d.Next(&g)) {
    if (g.id == pf::ClockSnapshot::kPrimaryTraceClock && g.type == proto::kVarint)
      s_->primary_trace_clock = static_cast<uint32_t>(g.int_value);
    if (g.id != pf::ClockSnapshot::kClocks || g.type != proto::kLengthDelimited) continue;
    ProtoDecoder e(g.data, g.size);
    Field h;
    uint32_t id = 0;
    uint64_t ts = 0;
    while (e.Next(&h)) {
      if (h.id == pf::ClockSnapshot::Clock::kClockId) id = static_cast<uint32_t>(h.int_value);
      if (h.id == pf::ClockSnapshot::Clock::kTimestamp) ts = h.int_value;
    }
    if (clk::IsSequenceScoped(id)) scoped = true;
    snap.emplace_back(id, ts);
  }
  if (!scoped && !snap.empty()) s_->clocks.Add(snap);
}

void Scanner::PidsIn(const Field& f, uint32_t pid_field, uint32_t nested_field, uint32_t nested_pid) {
  ProtoDecoder d(f.data, f.size);
  Field g;
  while (d.Next(&g)) {
    if (g.type != proto::kLengthDelimited) continue;
    ProtoDecoder e(g.data, g.size);
    Field h;
    while (e.Next(&h)) {
      if (h.id == pid_field && h.type == proto::kVarint) Pid(static_cast<int32_t>(h.int_value));
      if (nested_field && h.id == nested_field && h.type == proto::kLengthDelimited) {
        ProtoDecoder t(h.data, h.size);
        Field k;
        while (t.Next(&k))
          if (k.id == nested_pid && k.type == proto::kVarint) Pid(static_cast<int32_t>(k.int_value));
      }
    }
  }
}

// The hot loop of the scan over ftrace: a lean walk of one message's fields
// that decodes only the varints `want(id)` asks for (the values go to
// `got`), skips the rest without decoding them and hands length-delimited
// fields to `nested(id, data, size)`. It stops at malformed input (the
// rewrite reports that).
template <typename Want, typename Got, typename Nested>
inline void WalkFields(const uint8_t* p, const uint8_t* end, Want&& want, Got&& got, Nested&& nested) {
  while (p < end) {
    uint64_t tag;
    p = proto::ReadVarint(p, end, &tag);
    if (!p) return;
    uint32_t id = static_cast<uint32_t>(tag >> 3);
    switch (tag & 7) {
      case proto::kVarint:
        if (want(id)) {
          uint64_t v;
          p = proto::ReadVarint(p, end, &v);
          if (!p) return;
          got(v);
        } else {
          const uint8_t* q = p;
          while (q < end && (*q & 0x80)) q++;
          if (q >= end || q - p >= 10) return;
          p = q + 1;
        }
        break;
      case proto::kLengthDelimited: {
        uint64_t len;
        p = proto::ReadVarint(p, end, &len);
        if (!p || len > static_cast<uint64_t>(end - p)) return;
        nested(id, p, static_cast<size_t>(len));
        p += len;
        break;
      }
      case proto::kFixed64:
        if (end - p < 8) return;
        p += 8;
        break;
      case proto::kFixed32:
        if (end - p < 4) return;
        p += 4;
        break;
      default:
        return;
    }
  }
}

void Scanner::Ftrace(const Field& f) {
  auto pid = [this](uint64_t v) { Pid(static_cast<int32_t>(v)); };
  auto none = [](uint32_t, const uint8_t*, size_t) {};
  // An event's own pid, and every pid the rewrite offsets in its payload
  // (they count for the offset's base).
  auto payload = [&](uint32_t id, const uint8_t* data, size_t size) {
    uint64_t pids = FtraceMasks(id).pids;
    if (pids) WalkFields(data, data + size, [pids](uint32_t k) { return InMask(pids, k); }, pid, none);
  };
  auto event = [&](const uint8_t* data, size_t size) {
    WalkFields(data, data + size, [](uint32_t k) { return k == fld::FtraceEvent::kPid; }, pid, payload);
  };
  ProtoDecoder d(f.data, f.size);
  Field g;
  while (d.Next(&g)) {
    if (g.id == fld::FtraceEventBundle::kCpu) {
      Cpu(g.int_value);
    } else if (g.id == fld::FtraceEventBundle::kEvent && g.type == proto::kLengthDelimited) {
      event(g.data, g.size);
    } else if (g.id == fld::FtraceEventBundle::kCompactSched && g.type == proto::kLengthDelimited) {
      ProtoDecoder e(g.data, g.size);
      Field h;
      while (e.Next(&h))
        if (h.id == fld::CompactSched::kSwitchNextPid || h.id == fld::CompactSched::kWakingPid)
          ForEachVarint(h, [&](uint64_t v) { Pid(static_cast<int32_t>(v)); });
    }
  }
}

Status Scanner::Packet(const uint8_t* data, size_t size, int depth) {
  ProtoDecoder d(data, size);
  Field g;
  Field te{}, interned{};
  bool has_te = false, has_interned = false, has_ts = false, cleared = false;
  bool tracing_started = false;
  uint64_t ts = 0;
  uint32_t seq_id = 0, clock = 0;
  bool has_clock = false, has_default_clock = false;
  uint32_t default_clock = 0;
  s_->packets++;
  while (d.Next(&g)) {
    switch (g.id) {
      case pf::TracePacket::kTimestamp: ts = g.int_value, has_ts = true; break;
      case pf::TracePacket::kTrustedPacketSequenceId:
        seq_id = static_cast<uint32_t>(g.int_value);
        s_->max_sequence_id = std::max(s_->max_sequence_id, seq_id);
        break;
      case pf::TracePacket::kTrustedUid: s_->max_uid = std::max(s_->max_uid, g.int_value); break;
      case pf::TracePacket::kTrustedPid: Pid(static_cast<int32_t>(g.int_value)); break;
      case pf::TracePacket::kSequenceFlags:
        if (g.int_value & pf::TracePacket::kSeqIncrementalStateCleared) cleared = true;
        break;
      case pf::TracePacket::kIncrementalStateCleared: if (g.int_value) cleared = true; break;
      case pf::TracePacket::kTimestampClockId:
        clock = static_cast<uint32_t>(g.int_value), has_clock = true;
        break;
      case pf::TracePacket::kTracePacketDefaults: {
        if (g.type != proto::kLengthDelimited) break;
        ProtoDecoder e(g.data, g.size);
        Field h;
        while (e.Next(&h)) {
          if (h.id == pf::TracePacketDefaults::kTimestampClockId)
            default_clock = static_cast<uint32_t>(h.int_value), has_default_clock = true;
          if (h.id == pf::TracePacketDefaults::kTrackEventDefaults && h.type == proto::kLengthDelimited) {
            ProtoDecoder t(h.data, h.size);
            Field k;
            while (t.Next(&k)) {
              if (k.id == pf::TrackEventDefaults::kTrackUuid) Uuid(k.int_value);
              if (k.id == fld::TrackEventDefaults::kExtraCounterTrackUuids ||
                  k.id == fld::TrackEventDefaults::kExtraDoubleCounterTrackUuids)
                ForEachVarint(k, [&](uint64_t v) { Uuid(v); });
            }
          }
        }
        break;
      }
      case pf::TracePacket::kClockSnapshot: if (g.type == proto::kLengthDelimited) Snapshot(g); break;
      case pf::TracePacket::kTraceStats:
        if (g.type == proto::kLengthDelimited && g.size < (1u << 20)) {
          s_->trace_stats.assign(reinterpret_cast<const char*>(g.data), g.size);
          s_->trace_stats_buffers = 0;
          ProtoDecoder e(g.data, g.size);
          Field h;
          while (e.Next(&h)) s_->trace_stats_buffers += h.id == pf::TraceStats::kBufferStats;
        }
        break;
      case pf::TracePacket::kServiceEvent:
        if (g.type == proto::kLengthDelimited) {
          ProtoDecoder e(g.data, g.size);
          Field h;
          while (e.Next(&h))
            if (h.id == 2 && h.type == proto::kVarint && h.int_value) tracing_started = true;
        }
        break;
      case pf::TracePacket::kSystemInfo:
        if (g.type == proto::kLengthDelimited) SystemInfo(g);
        break;
      case pf::TracePacket::kTrackDescriptor: if (g.type == proto::kLengthDelimited) TrackDescriptor(g); break;
      case pf::TracePacket::kTrackEvent: if (g.type == proto::kLengthDelimited) te = g, has_te = true; break;
      case pf::TracePacket::kInternedData: if (g.type == proto::kLengthDelimited) interned = g, has_interned = true; break;
      case pf::TracePacket::kFtraceEvents:
        if (g.type == proto::kLengthDelimited) Ftrace(g), s_->has_ftrace = true;
        break;
      case pf::TracePacket::kProcessTree:
        if (g.type == proto::kLengthDelimited) {
          ProtoDecoder e(g.data, g.size);
          Field h;
          while (e.Next(&h)) {
            if (h.type != proto::kLengthDelimited) continue;
            ProtoDecoder t(h.data, h.size);
            Field k;
            while (t.Next(&k))
              if (k.type == proto::kVarint && (k.id == 1 || (h.id == fld::ProcessTree::kProcesses ? k.id == 2 : k.id == 3)))
                Pid(static_cast<int32_t>(k.int_value));
          }
        }
        break;
      case pf::TracePacket::kProcessStats:
        if (g.type == proto::kLengthDelimited)
          PidsIn(g, fld::ProcessStats::Process::kPid, fld::ProcessStats::Process::kThreads,
                 fld::ProcessStats::Thread::kTid);
        break;
      case fld::kFrameTimelineEvent:
        if (g.type == proto::kLengthDelimited) {
          ProtoDecoder e(g.data, g.size);
          Field h;
          while (e.Next(&h)) {
            if (h.type != proto::kLengthDelimited) continue;
            ProtoDecoder x(h.data, h.size);
            Field k;
            while (x.Next(&k))
              if (k.type == proto::kVarint && k.id == fld::FrameTimeline::PidField(h.id))
                Pid(static_cast<int32_t>(k.int_value));
          }
        }
        break;
      case fld::kPerfSample:
        if (g.type == proto::kLengthDelimited) {
          ProtoDecoder e(g.data, g.size);
          Field h;
          while (e.Next(&h)) {
            if (h.id == fld::PerfSample::kCpu) Cpu(h.int_value);
            if (h.id == fld::PerfSample::kPid || h.id == fld::PerfSample::kTid)
              Pid(static_cast<int32_t>(h.int_value));
          }
        }
        break;
      case pf::TracePacket::kCompressedPackets: {
        if (g.type != proto::kLengthDelimited) break;
        if (depth > 0) return Status::Error(vpsdk::kFormatError, "nested compressed_packets");
        s_->compressed_packets++;
        Status st = Inflate(g.data, g.size, kMaxInflatedPacket, &inflated_);
        if (!st.ok()) return st;
        ByteBuffer inner;
        inner.Append(inflated_.data(), inflated_.size());
        ProtoDecoder e(inner.data(), inner.size());
        Field h;
        s_->packets--;  // the container is not a packet of its own
        while (e.Next(&h)) {
          if (h.id != 1 || h.type != proto::kLengthDelimited)
            return Status::Error(vpsdk::kFormatError, "malformed compressed_packets");
          st = Packet(h.data, h.size, depth + 1);
          if (!st.ok()) return st;
        }
        if (e.error()) return Status::Error(vpsdk::kFormatError, "malformed compressed_packets");
        break;
      }
      default:
        break;
    }
  }
  if (d.error()) return Status::Error(vpsdk::kFormatError, "malformed packet");
  if (!last_seq_ || seq_id != last_seq_id_) {
    last_seq_ = &seqs_[seq_id];
    last_seq_id_ = seq_id;
  }
  SequenceScan& seq = *last_seq_;
  if (cleared) {
    seq.marker_names.clear();
    seq.annotations.clear();
    seq.default_clock = clk::kBoottime;
  }
  if (has_default_clock) seq.default_clock = default_clock;
  if (has_interned) Interned(interned, seq);
  if (has_te) TrackEvent(te, seq, ts);
  if (tracing_started && has_ts) {
    s_->has_tracing_start = true;
    s_->tracing_start = ts;
    s_->tracing_start_clock = has_clock ? clock : clk::kBoottime;  // service events: BOOTTIME
  }
  if (has_ts) {
    uint32_t c = has_clock ? clock : seq.default_clock;
    if (!s_->has_ts) s_->first_ts = ts, s_->first_clock = c, s_->has_ts = true;
    s_->last_ts = ts;
    s_->last_clock = c;
  }
  return Status::Ok();
}

}  // namespace

Status ScanInput(const std::string& path, InputSummary* s, Progress* progress) {
  s->path = path;
  TraceReader r;
  Status st = r.Open(path);
  if (!st.ok()) return st;
  s->gzip = r.gzip();
  Scanner scanner(s);
  Progress::Local shown(progress);
  PacketView pv;
  int rc;
  uint64_t n = 0;
  while ((rc = r.Next(&pv)) == 1) {
    n++;
    s->packet_bytes += pv.raw_size;
    shown.Add(pv.raw_size);
    st = scanner.Packet(pv.data, pv.size, 0);
    if (!st.ok())
      return Status::Error(st.code, path + ": packet " + std::to_string(n - 1) + " at byte " +
                                        std::to_string(pv.offset) + ": " + st.message);
  }
  if (rc < 0) return r.status();
  s->bytes = r.bytes_read();
  s->top_level_packets = n;
  s->truncated = r.truncated();
  s->truncated_at = r.truncated_at();
  if (n == 0)
    return Status::Error(vpsdk::kFormatError,
                         path + (s->truncated ? ": no complete packet (truncated or not a trace)"
                                              : ": empty trace (no packets)"));
  return Status::Ok();
}

}  // namespace vpmerge
