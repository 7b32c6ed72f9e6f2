#include "rewrite.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ftrace_ids.h"
#include "proto_fields.h"
#include "scan.h"

namespace vpmerge {
namespace {

uint64_t Mix(uint64_t z) {  // splitmix64 finaliser: a bijection on 64 bits
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool IsLen(const Field& f) { return f.type == proto::kLengthDelimited; }

constexpr uint32_t kRemoteClockSync = 107;  // TracePacket.remote_clock_sync

// A decoder that reports, when it goes out of scope, whether the message it
// read was malformed: a nested message that does not decode is an input
// error, not something to truncate silently.
class Decoder : public ProtoDecoder {
 public:
  Decoder(const uint8_t* p, size_t n, bool* bad) : ProtoDecoder(p, n), bad_(bad) {}
  ~Decoder() {
    if (error()) *bad_ = true;
  }

 private:
  bool* bad_;
};

// Re-encodes the message in field `f`: each of its fields goes to `fn`, which
// writes it to `o` (changed, or as it was).
template <typename Fn>
void Nested(const Field& f, ByteBuffer* o, bool* bad, Fn&& fn) {
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, bad);
  Field g;
  while (d.Next(&g)) fn(g);
  o->EndNested(n, f.size);
}

// A TracingServiceEvent saying tracing (or all data sources) started.
bool IsTracingStart(const Field& f) {
  ProtoDecoder d(f.data, f.size);
  Field g;
  while (d.Next(&g))
    if ((g.id == 1 || g.id == 2) && g.type == proto::kVarint && g.int_value) return true;
  return false;
}

// Fields of TracePacket that carry no content of their own.
bool IsEnvelope(uint32_t id) {
  switch (id) {
    case pf::TracePacket::kTimestamp:
    case pf::TracePacket::kTrustedPacketSequenceId:
    case pf::TracePacket::kTrustedUid:
    case pf::TracePacket::kTimestampClockId:
    case pf::TracePacket::kTrustedPid:
    case pf::TracePacket::kMachineId:
    case pf::TracePacket::kPreviousPacketDropped:
    case pf::TracePacket::kFirstPacketOnSequence:
      return true;
    default:
      return false;
  }
}

}  // namespace

void IdRemap::Init(const std::unordered_set<uint64_t>& ids, uint64_t salt,
                   std::unordered_set<uint64_t>* reserved) {
  salt_ = salt;
  reserved_ = reserved;
  fixed_.clear();
  extra_.clear();
  std::vector<uint64_t> sorted(ids.begin(), ids.end());
  std::sort(sorted.begin(), sorted.end());
  fixed_.reserve(sorted.size());
  for (uint64_t id : sorted)
    if (id) fixed_.emplace(id, Pick(id));
}

uint64_t IdRemap::Pick(uint64_t id) {
  uint64_t x = Mix(id ^ salt_);
  while (x == 0 || (reserved_ && reserved_->count(x))) x = Mix(x + 1);
  if (reserved_) reserved_->insert(x);
  return x;
}

uint64_t IdRemap::Extra(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = extra_.find(id);
  if (it != extra_.end()) return it->second;
  uint64_t x = Pick(id);
  extra_.emplace(id, x);
  return x;
}

void RewriteStats::Add(const RewriteStats& o) {
  packets_read += o.packets_read;
  packets_written += o.packets_written;
  packets_dropped += o.packets_dropped;
  snapshots_dropped += o.snapshots_dropped;
  session_packets_dropped += o.session_packets_dropped;
  timestamps_shifted += o.timestamps_shifted;
  unconvertible_timestamps += o.unconvertible_timestamps;
  compressed_rewritten += o.compressed_rewritten;
  timestamps_below_zero += o.timestamps_below_zero;
  zero_timestamps_kept += o.zero_timestamps_kept;
  tracing_start_events_dropped += o.tracing_start_events_dropped;
  stale_ftrace_events_dropped += o.stale_ftrace_events_dropped;
  unplaced_log_events += o.unplaced_log_events;
  task_states_translated += o.task_states_translated;
  task_states_approximated += o.task_states_approximated;
  packets_below_zero += o.packets_below_zero;
  earliest_below_zero = std::min(earliest_below_zero, o.earliest_below_zero);
}

uint64_t Rewriter::Uuid(uint64_t u) {
  if (!t_.remap_uuids || u == 0) return u;
  return t_.uuid_remap->Get(u);
}

uint64_t Rewriter::Flow(uint64_t id) {
  if (!t_.remap_flows) return id;
  return t_.flow_remap->Get(id);
}

void Rewriter::Flows(const Field& g, ByteBuffer* o) {
  if (!IsLen(g)) {
    o->ScalarField(g, Flow(g.int_value));
    return;
  }
  bool fixed = g.id == fld::TrackEvent::kFlowIds || g.id == fld::TrackEvent::kTerminatingFlowIds;
  size_t n = o->BeginNested(g.id, g.size);  // packed
  if (!ForEachFlowId(g, [&](uint64_t v) {
        uint64_t w = Flow(v);
        if (fixed) o->Append(&w, 8);
        else o->Varint(w);
      }))
    bad_ = true;
  o->EndNested(n, g.size);
}

int64_t Rewriter::ShiftAt(uint64_t t) {
  const auto& p = t_.shift_points;
  if (t <= p.front().first) return p.front().second;
  if (t >= p.back().first) return p.back().second;
  if (segment_ + 1 >= p.size() || t < p[segment_].first || t >= p[segment_ + 1].first) {
    segment_ = static_cast<size_t>(
        std::upper_bound(p.begin(), p.end(), t,
                         [](uint64_t x, const std::pair<uint64_t, int64_t>& e) { return x < e.first; }) -
        p.begin() - 1);
  }
  const auto& a = p[segment_];
  const auto& b = p[segment_ + 1];
  double f = static_cast<double>(t - a.first) / static_cast<double>(b.first - a.first);
  return a.second + static_cast<int64_t>(std::llround(f * static_cast<double>(b.second - a.second)));
}

uint64_t Rewriter::Pid(uint64_t v) const {
  int64_t p = static_cast<int32_t>(v);
  if (p <= 0 || !t_.pid_offset) return v;
  return static_cast<uint64_t>(p + t_.pid_offset);
}

// Moves a timestamp on `clock` to the reference clock of the main trace.
// Sequence-scoped clocks stay as they are (their snapshots move instead).
uint64_t Rewriter::Time(uint32_t clock, uint64_t t, bool* to_ref) {
  *to_ref = false;
  if (!t_.shift_time || clk::IsSequenceScoped(clock)) return t;
  if (clock != t_.ref_clock) {
    *to_ref = true;
    uint64_t r;
    if (t_.clocks && t_.clocks->Convert(clock, t_.ref_clock, t, &r)) {
      t = r;
    } else {
      // No snapshot relates this clock to the reference one (a MONOTONIC-only
      // trace): it is taken as the reference, as the alignment took it.
      stats_.unconvertible_timestamps++;
    }
  }
  return RefTime(t);
}

uint64_t Rewriter::TimeQuiet(uint32_t clock, uint64_t t) {
  const RewriteStats saved = stats_;
  const bool below = packet_below_zero_;
  bool to_ref;
  uint64_t r = Time(clock, t, &to_ref);
  stats_ = saved;
  packet_below_zero_ = below;
  return r;
}

// The incremental clock's value to write for `value` read: the snapshot's
// value plus the moved distance from the snapshot's moved time, in units
// (rounded to the nearest).
uint64_t Rewriter::IncrementalOut(const Seq& seq, uint64_t value) {
  int64_t moved = static_cast<int64_t>(TimeQuiet(seq.inc_global, seq.IncrementalAt(value)) - seq.inc_out0);
  uint64_t unit = seq.inc_unit ? seq.inc_unit : 1;
  if (unit == 1) return seq.inc_base + static_cast<uint64_t>(moved);
  uint64_t mag = moved >= 0 ? static_cast<uint64_t>(moved) : 0 - static_cast<uint64_t>(moved);
  uint64_t units = mag / unit + (mag % unit >= (unit + 1) / 2 ? 1 : 0);
  return moved >= 0 ? seq.inc_base + units : seq.inc_base - units;
}

uint64_t Rewriter::IncrementalDelta(Seq* seq, uint64_t delta) {
  if (!seq->inc_out_known) {  // (a batch's first packet on it)
    seq->inc_out0 = TimeQuiet(seq->inc_global, seq->inc_global_base);
    seq->inc_out_value = IncrementalOut(*seq, seq->inc_value);
    seq->inc_out_known = true;
  }
  uint64_t value = seq->inc_value + delta;
  uint64_t out = IncrementalOut(*seq, value);
  uint64_t written = out - seq->inc_out_value;
  seq->inc_value = value;
  seq->inc_out_value = out;
  return written;
}

bool IncrementalClockOf(const uint8_t* data, size_t size, uint32_t ref_clock, Rewriter::Seq* seq) {
  bool have_inc = false, have_global = false;
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g)) {
    if (g.id != pf::ClockSnapshot::kClocks || !IsLen(g)) continue;
    ProtoDecoder e(g.data, g.size);
    Field h;
    uint32_t id = 0;
    uint64_t ts = 0, unit = 1;
    bool incremental = false;
    while (e.Next(&h)) {
      if (IsLen(h)) continue;
      if (h.id == pf::ClockSnapshot::Clock::kClockId) id = static_cast<uint32_t>(h.int_value);
      if (h.id == pf::ClockSnapshot::Clock::kTimestamp) ts = h.int_value;
      if (h.id == pf::ClockSnapshot::Clock::kIsIncremental) incremental = h.int_value != 0;
      if (h.id == pf::ClockSnapshot::Clock::kUnitMultiplierNs) unit = h.int_value ? h.int_value : 1;
    }
    if (clk::IsSequenceScoped(id)) {
      if (incremental && !have_inc) {
        have_inc = true;
        seq->inc_clock = id, seq->inc_base = ts, seq->inc_unit = unit;
      }
    } else if (!have_global || id == ref_clock) {  // as Snapshot() picks it
      have_global = true;
      seq->inc_global = id, seq->inc_global_base = ts;
    }
  }
  return have_inc && have_global && !d.error();
}

void Rewriter::PrefixedString(const Field& f, ByteBuffer* o) {
  std::string s = t_.name_prefix;
  s.append(reinterpret_cast<const char*>(f.data), f.size);
  o->BytesField(f.id, s.data(), s.size());
}

void Rewriter::ProcessOrThread(const Field& f, ByteBuffer* o, bool process) {
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  while (d.Next(&g)) {
    bool pid = g.id == 1 || (!process && g.id == 2);  // pid; tid for threads
    if (pid && !IsLen(g)) o->ScalarField(g, Pid(g.int_value));
    else if (process && g.id == pf::ProcessDescriptor::kProcessName && IsLen(g) && !t_.name_prefix.empty())
      PrefixedString(g, o);
    else o->AppendRaw(g);
  }
  o->EndNested(n, f.size);
}

void Rewriter::TrackDescriptor(const Field& f, ByteBuffer* o) {
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  while (d.Next(&g)) {
    switch (g.id) {
      case pf::TrackDescriptor::kUuid:
      case pf::TrackDescriptor::kParentUuid:
        if (!IsLen(g)) o->ScalarField(g, Uuid(g.int_value));
        else o->AppendRaw(g);
        break;
      case pf::TrackDescriptor::kProcess:
      case pf::TrackDescriptor::kThread:
        if (IsLen(g)) ProcessOrThread(g, o, g.id == pf::TrackDescriptor::kProcess);
        else o->AppendRaw(g);
        break;
      default:
        o->AppendRaw(g);
    }
  }
  o->EndNested(n, f.size);
}

void Rewriter::Uuids(const Field& g, ByteBuffer* o) {
  if (!IsLen(g)) {
    o->ScalarField(g, Uuid(g.int_value));
    return;
  }
  size_t n = o->BeginNested(g.id);  // packed
  if (!ForEachVarint(g, [&](uint64_t v) { o->Varint(Uuid(v)); })) bad_ = true;
  o->EndNested(n);
}

void Rewriter::TrackEvent(const Field& f, ByteBuffer* o) {
  // Most track events (on the thread's default track) need no change.
  bool touch = false;
  {
    Decoder d(f.data, f.size, &bad_);
    Field g;
    while (d.Next(&g) && !touch) {
      switch (g.id) {
        case pf::TrackEvent::kTrackUuid:
        case pf::TrackEvent::kExtraCounterTrackUuids:
        case fld::TrackEvent::kExtraDoubleCounterTrackUuids:
          touch = t_.remap_uuids;
          break;
        case fld::TrackEvent::kTimestampAbsoluteUs:
          touch = t_.shift_time;
          break;
        case fld::TrackEvent::kLegacyEvent:
          touch = t_.pid_offset != 0 || t_.remap_flows;
          break;
        case fld::TrackEvent::kFlowIds:
        case fld::TrackEvent::kTerminatingFlowIds:
        case fld::TrackEvent::kFlowIdsOld:
        case fld::TrackEvent::kTerminatingFlowIdsOld:
          touch = t_.remap_flows;
          break;
        default:
          break;
      }
    }
  }
  if (!touch) {
    o->AppendRaw(f);
    return;
  }
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  while (d.Next(&g)) {
    switch (g.id) {
      case pf::TrackEvent::kTrackUuid:
      case pf::TrackEvent::kExtraCounterTrackUuids:
      case fld::TrackEvent::kExtraDoubleCounterTrackUuids:
        Uuids(g, o);
        break;
      case fld::TrackEvent::kTimestampAbsoluteUs:
        // Modulo 2^64 like every shifted timestamp (int64 + int64 could overflow).
        o->ScalarField(g, g.int_value + static_cast<uint64_t>(t_.shift_ns / 1000));
        break;
      case fld::TrackEvent::kFlowIds:
      case fld::TrackEvent::kTerminatingFlowIds:
      case fld::TrackEvent::kFlowIdsOld:
      case fld::TrackEvent::kTerminatingFlowIdsOld:
        if (t_.remap_flows) Flows(g, o);
        else o->AppendRaw(g);
        break;
      case fld::TrackEvent::kLegacyEvent: {
        if (!IsLen(g)) {
          o->AppendRaw(g);
          break;
        }
        namespace L = fld::TrackEvent::Legacy;
        bool v1_flow = false;  // a flow event (phase s, t, f): its unscoped_id is the flow's
        if (t_.remap_flows) {
          ProtoDecoder p(g.data, g.size);
          Field h;
          while (p.Next(&h))
            if (h.id == L::kPhase && h.type == proto::kVarint) v1_flow = L::IsFlowPhase(h.int_value);
        }
        size_t m = o->BeginNested(g.id, g.size);
        Decoder e(g.data, g.size, &bad_);
        Field h;
        while (e.Next(&h)) {
          if ((h.id == L::kPidOverride || h.id == L::kTidOverride) && !IsLen(h))
            o->ScalarField(h, Pid(h.int_value));
          else if (t_.remap_flows && !IsLen(h) && (h.id == L::kBindId || (v1_flow && h.id == L::kUnscopedId)))
            o->ScalarField(h, Flow(h.int_value));
          else
            o->AppendRaw(h);
        }
        o->EndNested(m, g.size);
        break;
      }
      default:
        o->AppendRaw(g);
    }
  }
  o->EndNested(n, f.size);
}

void Rewriter::Defaults(const Field& f, ByteBuffer* o) {
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  while (d.Next(&g)) {
    if (g.id == pf::TracePacketDefaults::kTimestampClockId && !IsLen(g) &&
        Converts(static_cast<uint32_t>(g.int_value))) {
      // Its packets are converted to the reference clock one by one.
      o->ScalarField(g, t_.ref_clock);
    } else if (g.id == pf::TracePacketDefaults::kTrackEventDefaults && IsLen(g) && t_.remap_uuids) {
      size_t m = o->BeginNested(g.id, g.size);
      Decoder e(g.data, g.size, &bad_);
      Field h;
      while (e.Next(&h)) {
        if (h.id == pf::TrackEventDefaults::kTrackUuid ||
            h.id == fld::TrackEventDefaults::kExtraCounterTrackUuids ||
            h.id == fld::TrackEventDefaults::kExtraDoubleCounterTrackUuids)
          Uuids(h, o);
        else
          o->AppendRaw(h);
      }
      o->EndNested(m, g.size);
    } else {
      o->AppendRaw(g);
    }
  }
  o->EndNested(n, f.size);
}

// A global snapshot of the moved side is dropped: its clocks are expressed in
// the main trace's clock instead. A snapshot that defines sequence-scoped
// clocks (64..127) is kept with their entries untouched (deltas stay deltas)
// and one reference-clock entry that carries the shift.
void Rewriter::Snapshot(const Field& f, ByteBuffer* o, bool* dropped) {
  *dropped = false;
  if (!t_.shift_time) {
    o->AppendRaw(f);
    return;
  }
  bool scoped = false;
  bool have_global = false;
  uint32_t gclock = 0;
  uint64_t gts = 0;
  {
    Decoder d(f.data, f.size, &bad_);
    Field g;
    while (d.Next(&g)) {
      if (g.id != pf::ClockSnapshot::kClocks || !IsLen(g)) continue;
      Decoder e(g.data, g.size, &bad_);
      Field h;
      uint32_t id = 0;
      uint64_t ts = 0;
      while (e.Next(&h)) {
        if (h.id == pf::ClockSnapshot::Clock::kClockId) id = static_cast<uint32_t>(h.int_value);
        if (h.id == pf::ClockSnapshot::Clock::kTimestamp) ts = h.int_value;
      }
      if (clk::IsSequenceScoped(id)) scoped = true;
      else if (!have_global || id == t_.ref_clock) have_global = true, gclock = id, gts = ts;
    }
  }
  if (!scoped && t_.shift_global_snapshots) {
    // Its own machine's clocks, as a RemoteClockSync (TracePacket field 107):
    // trace_processor adds its client clocks to that machine's clock graph
    // (a ClockSnapshot from a remote machine would make that machine's
    // BOOTTIME the trace clock). Every entry stays, the reference clock's
    // moves, and the host side of the pair holds the same value.
    uint64_t ref_value = 0;
    bool have_ref = false;
    ByteBuffer client;
    Decoder d(f.data, f.size, &bad_);
    Field g;
    while (d.Next(&g)) {
      if (g.id == pf::ClockSnapshot::kPrimaryTraceClock) continue;  // the main's decides
      if (g.id != pf::ClockSnapshot::kClocks || !IsLen(g)) {
        client.AppendRaw(g);
        continue;
      }
      Decoder e(g.data, g.size, &bad_);
      Field h;
      uint32_t id = 0;
      while (e.Next(&h))
        if (h.id == pf::ClockSnapshot::Clock::kClockId) id = static_cast<uint32_t>(h.int_value);
      if (id != t_.ref_clock) {
        client.AppendRaw(g);
        continue;
      }
      size_t m = client.BeginNested(g.id, g.size);
      Decoder e2(g.data, g.size, &bad_);
      while (e2.Next(&h)) {
        if (h.id == pf::ClockSnapshot::Clock::kTimestamp && !IsLen(h)) {
          ref_value = RefTime(h.int_value);
          have_ref = true;
          client.ScalarField(h, ref_value);
        } else {
          client.AppendRaw(h);
        }
      }
      client.EndNested(m, g.size);
    }
    if (!have_ref) {  // nothing ties it to the main clock
      *dropped = true;
      stats_.snapshots_dropped++;
      return;
    }
    // Twice: trace_processor derives a machine's offset from consecutive
    // pairs (0 here: the times are already the main's), and that real
    // cross-machine edge keeps it from aligning the machines by their wall
    // clocks (REALTIME), which it would do otherwise.
    size_t rcs = o->BeginNested(kRemoteClockSync);
    for (int round = 0; round < 2; round++) {
      size_t sc = o->BeginNested(1);  // synced_clocks
      o->BytesField(2, client.data(), client.size());  // client_clocks
      size_t host = o->BeginNested(3);                 // host_clocks
      size_t c = o->BeginNested(pf::ClockSnapshot::kClocks);
      o->VarintField(pf::ClockSnapshot::Clock::kClockId, t_.ref_clock);
      o->VarintField(pf::ClockSnapshot::Clock::kTimestamp, ref_value);
      o->EndNested(c);
      o->EndNested(host);
      o->EndNested(sc);
    }
    o->EndNested(rcs);
    return;
  }
  if (!scoped && !t_.drop_global_snapshots) {
    o->AppendRaw(f);
    return;
  }
  if (!scoped || !have_global) {  // re-expressed through the reference clock instead
    *dropped = true;
    stats_.snapshots_dropped++;
    return;
  }
  bool to_ref;
  uint64_t ref = Time(gclock, gts, &to_ref);
  size_t n = o->BeginNested(f.id);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  bool wrote_ref = false;
  while (d.Next(&g)) {
    if (g.id != pf::ClockSnapshot::kClocks || !IsLen(g)) {
      if (g.id != pf::ClockSnapshot::kPrimaryTraceClock) o->AppendRaw(g);
      continue;
    }
    Decoder e(g.data, g.size, &bad_);
    Field h;
    uint32_t id = 0;
    while (e.Next(&h))
      if (h.id == pf::ClockSnapshot::Clock::kClockId) id = static_cast<uint32_t>(h.int_value);
    if (clk::IsSequenceScoped(id)) {
      o->AppendRaw(g);
    } else if (!wrote_ref) {
      size_t m = o->BeginNested(pf::ClockSnapshot::kClocks);
      o->VarintField(pf::ClockSnapshot::Clock::kClockId, t_.ref_clock);
      o->VarintField(pf::ClockSnapshot::Clock::kTimestamp, ref);
      o->EndNested(m);
      wrote_ref = true;
    }
  }
  o->EndNested(n);
}

void Rewriter::Print(const Field& g, ByteBuffer* o) {
  // atrace markers: "B|pid|name", "C|pid|name|value", "S|pid|...", "E|pid".
  const char* s = reinterpret_cast<const char*>(g.data);
  size_t n = g.size;
  if (t_.pid_offset && n >= 3 && s[1] == '|' && std::strchr("BECSFGHINTU", s[0]) && s[0]) {
    size_t i = 2;
    int64_t pid = 0;
    while (i < n && i < 14 && s[i] >= '0' && s[i] <= '9') pid = pid * 10 + (s[i++] - '0');
    if (i > 2 && (i == n || s[i] == '|' || s[i] == '\n') && pid > 0) {
      std::string out(s, 2);
      out += std::to_string(pid + t_.pid_offset);
      out.append(s + i, n - i);
      o->BytesField(g.id, out.data(), out.size());
      return;
    }
  }
  o->AppendRaw(g);
}

// True when the bundle's event `f` comes before the side's own tracing start.
bool Rewriter::StaleFtrace(const Field& f) const {
  if (!t_.ftrace_valid_from) return false;
  ProtoDecoder d(f.data, f.size);  // (FtraceEvent() reads it again, checked)
  Field g;
  while (d.Next(&g))
    if (g.id == fld::FtraceEvent::kTimestamp && !IsLen(g)) return g.int_value < t_.ftrace_valid_from;
  return false;
}

void Rewriter::FtraceEvent(const Field& f, ByteBuffer* o, bool shift) {
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  while (d.Next(&g)) {
    if (IsLen(g) && g.id == fld::FtraceEvent::kPrint) {
      size_t m = o->BeginNested(g.id, g.size);
      Decoder e(g.data, g.size, &bad_);
      Field h;
      while (e.Next(&h)) {
        if (h.id == 2 && IsLen(h)) Print(h, o);  // buf
        else o->AppendRaw(h);
      }
      o->EndNested(m, g.size);
      continue;
    }
    if (IsLen(g)) {
      FtraceFieldMasks masks = FtraceMasks(g.id);
      if (!t_.pid_offset) masks.pids = 0;
      if (!t_.cpu_offset) masks.cpus = 0;
      bool states = t_.translate_states && g.id == fld::FtraceEvent::kSchedSwitch;
      if (!states && !masks.pids && !masks.cpus) {
        o->AppendRaw(g);
        continue;
      }
      size_t m = o->BeginNested(g.id, g.size);
      Decoder e(g.data, g.size, &bad_);
      Field h;
      while (e.Next(&h)) {
        if (IsLen(h)) o->AppendRaw(h);
        else if (states && h.id == fld::SchedSwitch::kPrevState) o->ScalarField(h, TaskState(h.int_value));
        else if (InMask(masks.pids, h.id)) o->ScalarField(h, Pid(h.int_value));
        else if (InMask(masks.cpus, h.id)) o->ScalarField(h, Cpu(h.int_value));
        else o->AppendRaw(h);
      }
      o->EndNested(m, g.size);
      continue;
    }
    if (g.id == fld::FtraceEvent::kTimestamp && shift) {
      bool to_ref;
      o->ScalarField(g, Time(clk::kBoottime, g.int_value, &to_ref));
    } else if (g.id == fld::FtraceEvent::kPid) {
      o->ScalarField(g, Pid(g.int_value));
    } else {
      o->AppendRaw(g);
    }
  }
  o->EndNested(n, f.size);
}

// FtraceEvent() and the StaleFtrace() check before it for the common event
// (varint timestamp and pid, a payload whose pid, cpu and state fields are
// varints, no print), in two steps: a walk that checks the event and notes
// the fields to change, with no effect if it gives up (kGeneral: the general
// path then does it all); then the new event, the bytes between the changed
// fields copied as runs. The bytes are the general path's.
Rewriter::FastEvent Rewriter::FtraceEventFast(const Field& f, ByteBuffer* o, bool shift, bool drop_stale) {
  enum Kind : uint8_t { kTime, kPidField, kCpuField, kState, kOpen, kClose };
  struct Edit {
    const uint8_t* begin;  // the field's first byte (kOpen: its tag; kClose: the payload's end)
    const uint8_t* end;    // the byte after it (kOpen: the payload's first)
    uint64_t value;        // kOpen: the payload's size
    uint32_t id;
    Kind kind;
  };
  constexpr size_t kMaxEdits = 24;
  Edit edits[kMaxEdits];
  size_t n = 0;
  auto note = [&](const uint8_t* b, const uint8_t* e, uint64_t v, uint32_t id, Kind k) {
    if (n == kMaxEdits) return false;
    edits[n++] = Edit{b, e, v, id, k};
    return true;
  };
  const uint8_t* end = f.data + f.size;
  bool seen_ts = false;
  ProtoDecoder d(f.data, f.size);
  Field g;
  while (d.Next(&g)) {
    if (!IsLen(g)) {
      bool ts = g.id == fld::FtraceEvent::kTimestamp, pid = g.id == fld::FtraceEvent::kPid;
      if ((ts || pid) && g.type != proto::kVarint) return FastEvent::kGeneral;
      if (ts && !seen_ts) {
        seen_ts = true;
        if (drop_stale && g.int_value < t_.ftrace_valid_from) return FastEvent::kStale;
      }
      if ((ts && shift) || pid)
        if (!note(g.begin, g.end, g.int_value, g.id, ts ? kTime : kPidField)) return FastEvent::kGeneral;
      continue;
    }
    if (g.id == fld::FtraceEvent::kPrint) return FastEvent::kGeneral;
    FtraceFieldMasks masks = FtraceMasks(g.id);
    if (!t_.pid_offset) masks.pids = 0;
    if (!t_.cpu_offset) masks.cpus = 0;
    bool states = t_.translate_states && g.id == fld::FtraceEvent::kSchedSwitch;
    if (!states && !masks.pids && !masks.cpus) continue;
    if (!note(g.begin, g.data, g.size, g.id, kOpen)) return FastEvent::kGeneral;
    ProtoDecoder e(g.data, g.size);
    Field h;
    while (e.Next(&h)) {
      if (IsLen(h)) continue;
      Kind k;
      if (states && h.id == fld::SchedSwitch::kPrevState) k = kState;
      else if (InMask(masks.pids, h.id)) k = kPidField;
      else if (InMask(masks.cpus, h.id)) k = kCpuField;
      else continue;
      if (h.type != proto::kVarint || !note(h.begin, h.end, h.int_value, h.id, k)) return FastEvent::kGeneral;
    }
    if (e.error() || !note(g.data + g.size, g.data + g.size, 0, g.id, kClose)) return FastEvent::kGeneral;
  }
  if (d.error()) return FastEvent::kGeneral;

  // The new event: at most 10 bytes per changed field, 5 per length and 5
  // per tag more than the input.
  size_t start = o->size();
  o->Reserve(start + f.size + 24 * (n + 2));
  uint8_t* w = o->data() + start;
  auto open = [&](uint32_t id, size_t hint) {
    w = proto::WriteVarint(proto::MakeTag(id, proto::kLengthDelimited), w);
    uint8_t* len_at = w;
    w += ByteBuffer::LenWidth(hint);
    return len_at;
  };
  auto close = [&](uint8_t* len_at, size_t hint) {
    size_t wid = ByteBuffer::LenWidth(hint);
    size_t len = static_cast<size_t>(w - len_at) - wid;
    size_t need = ByteBuffer::LenWidth(len);
    if (need != wid) {
      std::memmove(len_at + need, len_at + wid, len);
      w = w + need - wid;
    }
    proto::WriteVarint(len, len_at);
  };
  auto copy = [&](const uint8_t* a, const uint8_t* b) {
    size_t k = static_cast<size_t>(b - a);
    std::memcpy(w, a, k);
    w += k;
  };
  uint8_t* outer = open(f.id, f.size);
  uint8_t* inner = nullptr;
  size_t inner_hint = 0;
  const uint8_t* run = f.data;
  for (size_t i = 0; i < n; i++) {
    const Edit& e = edits[i];
    if (e.kind == kOpen) {
      copy(run, e.begin);
      inner_hint = static_cast<size_t>(e.value);
      inner = open(e.id, inner_hint);
      run = e.end;
      continue;
    }
    if (e.kind == kClose) {
      copy(run, e.begin);
      close(inner, inner_hint);
      run = e.begin;
      continue;
    }
    copy(run, e.begin);
    uint64_t v;
    bool to_ref;
    switch (e.kind) {
      case kTime: v = Time(clk::kBoottime, e.value, &to_ref); break;
      case kPidField: v = Pid(e.value); break;
      case kCpuField: v = Cpu(e.value); break;
      default: v = TaskState(e.value); break;
    }
    w = proto::WriteVarint(proto::MakeTag(e.id, proto::kVarint), w);
    w = proto::WriteVarint(v, w);
    run = e.end;
  }
  copy(run, end);
  close(outer, f.size);
  o->resize(static_cast<size_t>(w - o->data()));
  return FastEvent::kWritten;
}

void Rewriter::CompactSched(const Field& f, ByteBuffer* o, bool shift) {
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  bool first_switch = true, first_waking = true;
  while (d.Next(&g)) {
    uint32_t id = g.id;
    bool pid = id == fld::CompactSched::kSwitchNextPid || id == fld::CompactSched::kWakingPid;
    bool cpu = id == fld::CompactSched::kWakingTargetCpu;
    bool state = id == fld::CompactSched::kSwitchPrevState && t_.translate_states;
    bool ts = id == fld::CompactSched::kSwitchTimestamp || id == fld::CompactSched::kWakingTimestamp;
    bool* first = id == fld::CompactSched::kSwitchTimestamp ? &first_switch : &first_waking;
    if (!(pid && t_.pid_offset) && !(cpu && t_.cpu_offset) && !state && !(ts && shift && *first)) {
      o->AppendRaw(g);
      continue;
    }
    auto map = [&](uint64_t v) -> uint64_t {
      if (pid) return Pid(v);
      if (cpu) return Cpu(v);
      if (state) return TaskState(v);
      if (*first) {  // timestamps are deltas: only the first is absolute
        *first = false;
        bool to_ref;
        return Time(clk::kBoottime, v, &to_ref);
      }
      return v;
    };
    if (!IsLen(g)) {
      o->ScalarField(g, map(g.int_value));
      continue;
    }
    size_t m = o->BeginNested(id, g.size);
    if (!ForEachVarint(g, [&](uint64_t v) { o->Varint(map(v)); })) bad_ = true;
    o->EndNested(m, g.size);
  }
  o->EndNested(n, f.size);
}

// CompactSched with the entries before the side's own tracing start dropped:
// timestamps ascend (they are deltas), so those are a prefix of each parallel
// array (switch_* and waking_*).
void Rewriter::CompactSchedFiltered(const Field& f, ByteBuffer* o, bool shift) {
  namespace CS = fld::CompactSched;
  auto is_switch = [](uint32_t id) { return id >= 1 && id <= 6 && id != 5; };  // 5: intern_table
  auto is_waking = [](uint32_t id) { return id >= 7 && id <= 12; };
  uint64_t stale_switch = 0, stale_waking = 0;
  {
    uint64_t sw = 0, wk = 0;
    bool sw_on = true, wk_on = true;
    Decoder d(f.data, f.size, &bad_);
    Field g;
    while (d.Next(&g)) {
      if (g.id == CS::kSwitchTimestamp)
        ForEachVarint(g, [&](uint64_t v) {
          sw += v;
          if (sw_on && sw < t_.ftrace_valid_from) stale_switch++;
          else sw_on = false;
        });
      else if (g.id == CS::kWakingTimestamp)
        ForEachVarint(g, [&](uint64_t v) {
          wk += v;
          if (wk_on && wk < t_.ftrace_valid_from) stale_waking++;
          else wk_on = false;
        });
    }
  }
  if (!stale_switch && !stale_waking) return CompactSched(f, o, shift);
  stats_.stale_ftrace_events_dropped += stale_switch + stale_waking;
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  uint64_t seen[13] = {};
  uint64_t sw = 0, wk = 0;  // running absolute timestamps
  while (d.Next(&g)) {
    uint32_t id = g.id;
    if (!is_switch(id) && !is_waking(id)) {
      o->AppendRaw(g);
      continue;
    }
    uint64_t skip = is_switch(id) ? stale_switch : stale_waking;
    bool pid = id == CS::kSwitchNextPid || id == CS::kWakingPid;
    bool cpu = id == CS::kWakingTargetCpu;
    bool state = id == CS::kSwitchPrevState && t_.translate_states;
    bool ts = id == CS::kSwitchTimestamp || id == CS::kWakingTimestamp;
    uint64_t* abs = id == CS::kSwitchTimestamp ? &sw : &wk;
    size_t m = o->BeginNested(id, g.size);  // written packed, whatever it was
    bad_ |= !ForEachVarint(g, [&](uint64_t v) {
      uint64_t i = seen[id]++;
      if (ts) *abs += v;
      if (i < skip) return;
      if (ts && i == skip) {  // the new first entry: absolute
        bool to_ref;
        o->Varint(shift ? Time(clk::kBoottime, *abs, &to_ref) : *abs);
      } else {
        o->Varint(pid ? Pid(v) : cpu ? Cpu(v) : state ? TaskState(v) : v);
      }
    });
    o->EndNested(m, g.size);
  }
  o->EndNested(n, f.size);
}

void Rewriter::Ftrace(const Field& f, ByteBuffer* o) {
  // Event timestamps are on the bundle's ftrace clock; unset means BOOTTIME.
  // With another clock the trace processor converts through the bundle's
  // (ftrace_timestamp, boot_timestamp) pair, so that pair moves instead.
  bool boot_clock = true;
  {
    Decoder d(f.data, f.size, &bad_);
    Field g;
    while (d.Next(&g))
      if (g.id == fld::FtraceEventBundle::kFtraceClock && g.int_value != 0) boot_clock = false;
  }
  bool shift = t_.shift_time && boot_clock;
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  bool to_ref;
  while (d.Next(&g)) {
    switch (g.id) {
      case fld::FtraceEventBundle::kCpu:
        o->ScalarField(g, Cpu(g.int_value));
        break;
      case fld::FtraceEventBundle::kEvent:
        if (!IsLen(g)) {
          o->AppendRaw(g);
          break;
        }
        switch (FtraceEventFast(g, o, shift, boot_clock && t_.ftrace_valid_from)) {
          case FastEvent::kWritten: break;
          case FastEvent::kStale: stats_.stale_ftrace_events_dropped++; break;
          case FastEvent::kGeneral:
            if (boot_clock && StaleFtrace(g)) stats_.stale_ftrace_events_dropped++;
            else FtraceEvent(g, o, shift);
        }
        break;
      case fld::FtraceEventBundle::kCompactSched:
        if (!IsLen(g)) o->AppendRaw(g);
        else if (boot_clock && t_.ftrace_valid_from) CompactSchedFiltered(g, o, shift);
        else CompactSched(g, o, shift);
        break;
      case fld::FtraceEventBundle::kBootTimestamp:
        if (t_.shift_time && !IsLen(g)) o->ScalarField(g, Time(clk::kBoottime, g.int_value, &to_ref));
        else o->AppendRaw(g);
        break;
      case fld::FtraceEventBundle::kLastReadEventTimestamp:
      case fld::FtraceEventBundle::kPreviousBundleEndTimestamp:
        if (shift && !IsLen(g)) o->ScalarField(g, Time(clk::kBoottime, g.int_value, &to_ref));
        else o->AppendRaw(g);
        break;
      default:
        o->AppendRaw(g);
    }
  }
  o->EndNested(n, f.size);
}

void Rewriter::ProcessTree(const Field& f, ByteBuffer* o) {
  size_t n = o->BeginNested(f.id, f.size);
  Decoder d(f.data, f.size, &bad_);
  Field g;
  while (d.Next(&g)) {
    bool proc = g.id == fld::ProcessTree::kProcesses, thread = g.id == fld::ProcessTree::kThreads;
    if (!IsLen(g) || (!proc && !thread)) {
      o->AppendRaw(g);
      continue;
    }
    size_t m = o->BeginNested(g.id, g.size);
    Decoder e(g.data, g.size, &bad_);
    Field h;
    bool first_cmdline = true;
    int cmdline_parts = 0;
    if (proc && !t_.name_prefix.empty()) {
      ProtoDecoder c(g.data, g.size);
      while (c.Next(&h) && cmdline_parts < 2) cmdline_parts += h.id == fld::ProcessTree::Process::kCmdline;
    }
    while (e.Next(&h)) {
      bool pid = proc ? (h.id == fld::ProcessTree::Process::kPid || h.id == fld::ProcessTree::Process::kPpid)
                      : (h.id == fld::ProcessTree::Thread::kTid || h.id == fld::ProcessTree::Thread::kTgid);
      if (pid && !IsLen(h)) {
        o->ScalarField(h, Pid(h.int_value));
      } else if (proc && h.id == fld::ProcessTree::Process::kCmdline && IsLen(h) && first_cmdline &&
                 !t_.name_prefix.empty()) {
        first_cmdline = false;
        if (cmdline_parts == 1) {
          // trace_processor names a process with a one-part command line by
          // what precedes its first space (processes that join their argv
          // with spaces): the prefix's own space would leave "NAME:". Split
          // it as trace_processor would have, so the name is "NAME: argv0"
          // and the command line reads the same.
          const char* p = reinterpret_cast<const char*>(h.data);
          const char* sp = static_cast<const char*>(memchr(p, ' ', h.size));
          size_t head = sp ? static_cast<size_t>(sp - p) : h.size;
          std::string s = t_.name_prefix;
          s.append(p, head);
          o->BytesField(h.id, s.data(), s.size());
          size_t rest = sp ? h.size - head - 1 : 0;
          o->BytesField(h.id, sp ? sp + 1 : p, rest);
        } else {
          PrefixedString(h, o);
        }
      } else {
        o->AppendRaw(h);
      }
    }
    o->EndNested(m, g.size);
  }
  o->EndNested(n, f.size);
}

void Rewriter::ProcessStats(const Field& f, ByteBuffer* o) {
  Nested(f, o, &bad_, [&](const Field& g) {
    if (g.id != fld::ProcessStats::kProcesses || !IsLen(g)) return o->AppendRaw(g);
    Nested(g, o, &bad_, [&](const Field& h) {
      if (h.id == fld::ProcessStats::Process::kPid && !IsLen(h)) {
        o->ScalarField(h, Pid(h.int_value));
      } else if (h.id == fld::ProcessStats::Process::kThreads && IsLen(h)) {
        Nested(h, o, &bad_, [&](const Field& x) {
          if (x.id == fld::ProcessStats::Thread::kTid && !IsLen(x)) o->ScalarField(x, Pid(x.int_value));
          else o->AppendRaw(x);
        });
      } else {
        o->AppendRaw(h);
      }
    });
  });
}

// Android log times are CLOCK_REALTIME, which trace_processor converts through
// the main machine's snapshots (also for a side on a machine of its own): a
// moved side's are re-expressed in the main's REALTIME (its own REALTIME ->
// its BOOTTIME -> shifted -> the main's REALTIME).
uint64_t Rewriter::LogTime(uint64_t realtime) {
  uint64_t boot, main_real;
  if (t_.logs_own_realtime) {  // its machine's REALTIME -> BOOTTIME -> the main's
    if (!t_.clocks || !t_.clocks->Convert(clk::kRealtime, clk::kBoottime, realtime, &boot))
      stats_.unplaced_log_events++;
    return realtime;
  }
  if (!t_.clocks || !t_.main_clocks ||
      !t_.clocks->Convert(clk::kRealtime, clk::kBoottime, realtime, &boot) ||
      !t_.main_clocks->Convert(clk::kBoottime, clk::kRealtime, RefTime(boot), &main_real)) {
    stats_.unplaced_log_events++;
    return realtime;
  }
  return main_real;
}

void Rewriter::AndroidLog(const Field& f, ByteBuffer* o) {
  Nested(f, o, &bad_, [&](const Field& g) {
    if (g.id != fld::AndroidLog::kEvents || !IsLen(g)) return o->AppendRaw(g);
    Nested(g, o, &bad_, [&](const Field& h) {
      if ((h.id == fld::AndroidLog::Event::kPid || h.id == fld::AndroidLog::Event::kTid) && !IsLen(h))
        o->ScalarField(h, Pid(h.int_value));
      else if (h.id == fld::AndroidLog::Event::kTimestamp && !IsLen(h) && t_.shift_time)
        o->ScalarField(h, LogTime(h.int_value));
      else
        o->AppendRaw(h);
    });
  });
}

// Frame timeline events: their pids move like every pid, and their cookies and
// tokens (trace_processor matches frames by them, across the whole machine)
// move into a range of the side's own.
void Rewriter::FrameTimeline(const Field& f, ByteBuffer* o) {
  Nested(f, o, &bad_, [&](const Field& g) {
    if (!IsLen(g) || g.id < 1 || g.id > fld::FrameTimeline::kFrameEnd) return o->AppendRaw(g);
    Nested(g, o, &bad_, [&](const Field& h) {
      if (IsLen(h)) return o->AppendRaw(h);
      if (h.id == fld::FrameTimeline::PidField(g.id)) o->ScalarField(h, Pid(h.int_value));
      else if (fld::FrameTimeline::IsIdField(g.id, h.id)) o->ScalarField(h, h.int_value + t_.frame_id_offset);
      else o->AppendRaw(h);
    });
  });
}

void Rewriter::PerfSample(const Field& f, ByteBuffer* o) {
  Nested(f, o, &bad_, [&](const Field& g) {
    if ((g.id == fld::PerfSample::kPid || g.id == fld::PerfSample::kTid) && !IsLen(g))
      o->ScalarField(g, Pid(g.int_value));
    else if (g.id == fld::PerfSample::kCpu && !IsLen(g))
      o->ScalarField(g, Cpu(g.int_value));
    else
      o->AppendRaw(g);
  });
}

bool Rewriter::Compressed(const Field& f, ByteBuffer* o, int depth, Status* st) {
  if (depth > 0) {
    *st = Status::Error(vpsdk::kFormatError, "nested compressed_packets");
    return false;
  }
  ByteBuffer plain;
  *st = Inflate(f.data, f.size, kMaxInflatedPacket, &plain);
  if (!st->ok()) return false;
  ByteBuffer inner, body;
  Decoder d(plain.data(), plain.size(), &bad_);
  Field g;
  while (d.Next(&g)) {
    if (g.id != 1 || !IsLen(g)) {
      *st = Status::Error(vpsdk::kFormatError, "malformed compressed_packets");
      return false;
    }
    stats_.packets_read++;
    body.clear();
    if (!Body(g.data, g.size, &body, depth + 1, st)) {
      if (!st->ok()) return false;
      stats_.packets_dropped++;
      continue;
    }
    inner.BytesField(1, body.data(), body.size());
    stats_.packets_written++;
    if (packet_below_zero_) stats_.packets_below_zero++;
    packet_below_zero_ = false;  // counted here, not again for the container
  }
  if (d.error()) {
    *st = Status::Error(vpsdk::kFormatError, "malformed compressed_packets");
    return false;
  }
  if (inner.size() == 0) return false;
  uLongf cap = compressBound(static_cast<uLong>(inner.size()));
  ByteBuffer z;
  z.resize(cap);
  if (compress2(z.data(), &cap, inner.data(), static_cast<uLong>(inner.size()), 6) != Z_OK) {
    *st = Status::Error(vpsdk::kNoMemory, "recompressing compressed_packets failed");
    return false;
  }
  o->BytesField(f.id, z.data(), cap);
  stats_.compressed_rewritten++;
  return true;
}

bool Rewriter::Body(const uint8_t* data, size_t size, ByteBuffer* o, int depth, Status* st) {
  // One pass in the common case: the packet's timestamp is rewritten on the
  // clock the previous packet's was on, and the packet is done again when
  // its sequence state (read in the same pass) says otherwise.
  const RewriteStats saved = stats_;
  const size_t start = o->size();
  PacketInfo info;
  uint32_t guess = ts_clock_guess_;
  bool payload = Rewrite(data, size, o, depth, st, guess, &info);
  if (!st->ok()) return false;
  if (info.malformed) {
    *st = Status::Error(vpsdk::kFormatError, "malformed packet");
    return false;
  }
  if (!last_seq_ || info.seq_id != last_seq_id_) {
    last_seq_ = &seqs_[info.seq_id];
    last_seq_id_ = info.seq_id;
  }
  Seq& seq = *last_seq_;
  if (info.cleared) seq = Seq();
  if (info.has_default_clock) seq.default_clock = info.default_clock, seq.explicit_default = true;
  if (info.has_inc) seq.DefineIncremental(info.inc);
  uint32_t ts_clock = info.has_clock ? info.clock : seq.default_clock;
  if (info.has_timestamp) ts_clock_guess_ = ts_clock;
  if (info.has_timestamp && ts_clock != guess) {
    stats_ = saved;
    o->resize(start);
    payload = Rewrite(data, size, o, depth, st, ts_clock, &info);
    if (!st->ok()) return false;
  }
  if (info.has_timestamp && !info.has_snapshot && seq.OnIncremental(info.has_clock, info.clock) &&
      t_.shift_time) {
    uint64_t read = info.timestamp;
    uint64_t written = IncrementalDelta(&seq, read);
    if (written != read) {  // the packet again, with that delta
      stats_ = saved;
      o->resize(start);
      has_ts_override_ = true;
      ts_override_ = written;
      payload = Rewrite(data, size, o, depth, st, ts_clock, &info);
      has_ts_override_ = false;
      if (!st->ok()) return false;
    }
    // Counted as a moved timestamp, at its own time.
    bool to_ref;
    Time(seq.inc_global, seq.IncrementalAt(seq.inc_value), &to_ref);
  }
  if (info.has_timestamp && !info.has_clock && !seq.explicit_default && t_.shift_time &&
      t_.out_default_clock) {
    // On the trace's default clock, which in the output is another one
    // (a MONOTONIC main's; on a machine of its own, that machine's
    // MONOTONIC): say which it is.
    uint32_t written = Converts(ts_clock) ? t_.ref_clock : ts_clock;
    if (written != t_.out_default_clock) o->VarintField(pf::TracePacket::kTimestampClockId, written);
  }
  return payload;
}

bool Rewriter::Rewrite(const uint8_t* data, size_t size, ByteBuffer* o, int depth, Status* st,
                       uint32_t ts_clock, PacketInfo* info) {
  bool payload = false;
  bool wrote_machine = false;
  packet_below_zero_ = false;
  const bool outer_bad = bad_;  // (a packet inside compressed_packets)
  bad_ = false;
  Decoder d(data, size, &bad_);
  Field g;
  while (d.Next(&g)) {
    bool content = !IsEnvelope(g.id);
    switch (g.id) {
      case pf::TracePacket::kTimestamp: {
        // Its clock field (or the sequence default) is rewritten to the
        // reference clock exactly when the value is converted.
        bool to_ref;
        info->has_timestamp = true;
        info->timestamp = g.int_value;
        o->ScalarField(g, has_ts_override_ ? ts_override_ : Time(ts_clock, g.int_value, &to_ref));
        break;
      }
      case pf::TracePacket::kTimestampClockId:
        info->clock = static_cast<uint32_t>(g.int_value);
        info->has_clock = true;
        if (Converts(info->clock)) o->ScalarField(g, t_.ref_clock);
        else o->AppendRaw(g);
        break;
      case pf::TracePacket::kTrustedPacketSequenceId:
        info->seq_id = static_cast<uint32_t>(g.int_value);
        o->ScalarField(g, g.int_value + t_.seq_offset);
        break;
      case pf::TracePacket::kSequenceFlags:
        if (g.int_value & pf::TracePacket::kSeqIncrementalStateCleared) info->cleared = true;
        o->AppendRaw(g);
        break;
      case pf::TracePacket::kIncrementalStateCleared:
        if (g.int_value) info->cleared = true;
        o->AppendRaw(g);
        break;
      case pf::TracePacket::kTrustedUid:
        o->ScalarField(g, g.int_value + t_.uid_offset);  // unsigned: no signed overflow
        break;
      case pf::TracePacket::kTrustedPid:
        o->ScalarField(g, Pid(g.int_value));
        break;
      case pf::TracePacket::kMachineId:
        if (t_.machine_id) o->VarintField(g.id, t_.machine_id), wrote_machine = true;
        else o->AppendRaw(g);
        break;
      case pf::TracePacket::kServiceEvent:
        if (t_.drop_tracing_start && IsLen(g) && IsTracingStart(g)) {
          stats_.tracing_start_events_dropped++;
          content = false;
        } else {
          o->AppendRaw(g);
        }
        break;
      case pf::TracePacket::kTraceConfig:
      case pf::TracePacket::kTraceStats:
      case pf::TracePacket::kSynchronizationMarker:
      case pf::TracePacket::kSystemInfo:  // one machine, one kernel (task states depend on it)
        if (t_.drop_session_packets) {
          stats_.session_packets_dropped++;
          content = false;
        } else {
          o->AppendRaw(g);
        }
        break;
      case pf::TracePacket::kClockSnapshot: {
        bool dropped = false;
        info->has_snapshot = true;
        if (IsLen(g) && t_.shift_time && IncrementalClockOf(g.data, g.size, t_.ref_clock, &info->inc))
          info->has_inc = true;
        if (IsLen(g)) Snapshot(g, o, &dropped);
        else o->AppendRaw(g);
        if (dropped) content = false;
        break;
      }
      case pf::TracePacket::kTracePacketDefaults:
        if (IsLen(g)) {
          Decoder e(g.data, g.size, &bad_);
          Field h;
          while (e.Next(&h))
            if (h.id == pf::TracePacketDefaults::kTimestampClockId)
              info->default_clock = static_cast<uint32_t>(h.int_value), info->has_default_clock = true;
          Defaults(g, o);
        } else {
          o->AppendRaw(g);
        }
        break;
      case pf::TracePacket::kTrackDescriptor:
        if (IsLen(g)) TrackDescriptor(g, o);
        else o->AppendRaw(g);
        break;
      case pf::TracePacket::kTrackEvent:
        if (IsLen(g)) TrackEvent(g, o);
        else o->AppendRaw(g);
        break;
      case pf::TracePacket::kFtraceEvents:
        if (IsLen(g)) Ftrace(g, o);
        else o->AppendRaw(g);
        break;
      case pf::TracePacket::kProcessTree:
        if (IsLen(g)) ProcessTree(g, o);
        else o->AppendRaw(g);
        break;
      case pf::TracePacket::kProcessStats:
        if (IsLen(g)) ProcessStats(g, o);
        else o->AppendRaw(g);
        break;
      case fld::kAndroidLog:
        if (IsLen(g)) AndroidLog(g, o);
        else o->AppendRaw(g);
        break;
      case fld::kPerfSample:
        if (IsLen(g)) PerfSample(g, o);
        else o->AppendRaw(g);
        break;
      case fld::kFrameTimelineEvent:
        if (IsLen(g) && (t_.pid_offset || t_.frame_id_offset)) FrameTimeline(g, o);
        else o->AppendRaw(g);
        break;
      case fld::kProcessDescriptorLegacy:
      case fld::kThreadDescriptorLegacy:
        if (IsLen(g)) ProcessOrThread(g, o, g.id == fld::kProcessDescriptorLegacy);
        else o->AppendRaw(g);
        break;
      case pf::TracePacket::kCompressedPackets:
        if (!IsLen(g) || !Compressed(g, o, depth, st)) {
          if (!st->ok()) return false;
          content = false;
        }
        break;
      default:
        o->AppendRaw(g);
    }
    payload |= content;
  }
  info->malformed = d.error() || bad_;
  bad_ = outer_bad;
  if (t_.machine_id && !wrote_machine) o->VarintField(pf::TracePacket::kMachineId, t_.machine_id);
  return payload;
}

namespace {
// True when a packet has a field a NamesOnly() transform may change: process
// names, tracing-start events, stale ftrace data (or what it cannot see into
// without decoding). The others are copied verbatim, as the original tool
// copied its main trace.
bool MayChange(const PacketView& pv, const Transform& t) {
  ProtoDecoder d(pv.data, pv.size);
  Field g;
  while (d.Next(&g)) {
    switch (g.id) {
      case pf::TracePacket::kTrackDescriptor:
      case pf::TracePacket::kProcessTree:
      case fld::kProcessDescriptorLegacy:
        if (!t.name_prefix.empty()) return true;
        break;
      case pf::TracePacket::kCompressedPackets:
        return true;
      case pf::TracePacket::kServiceEvent:
        if (t.drop_tracing_start) return true;
        break;
      case pf::TracePacket::kFtraceEvents:
        if (t.ftrace_valid_from) return true;
        break;
      default:
        break;
    }
  }
  return d.error();  // let Body() report it
}
}  // namespace

void Rewriter::SetSequences(const SeqStates& seqs) {
  seqs_.clear();
  for (auto& kv : seqs) seqs_.emplace(kv.first, kv.second);
  last_seq_ = nullptr;
  last_seq_id_ = 0;
}

void SeqTracker::Packet(const uint8_t* data, size_t size, int depth) {
  // What Rewriter::Body() reads of a packet's sequence, in the same order.
  ProtoDecoder d(data, size);
  Field g;
  uint32_t seq_id = 0, default_clock = 0, clock = 0;
  bool cleared = false, has_default_clock = false, has_clock = false, has_ts = false, has_inc = false;
  bool has_snapshot = false;
  uint64_t ts = 0;
  Rewriter::Seq inc;
  while (d.Next(&g)) {
    switch (g.id) {
      case pf::TracePacket::kTrustedPacketSequenceId: seq_id = static_cast<uint32_t>(g.int_value); break;
      case pf::TracePacket::kTimestamp: ts = g.int_value, has_ts = true; break;
      case pf::TracePacket::kTimestampClockId: clock = static_cast<uint32_t>(g.int_value), has_clock = true; break;
      case pf::TracePacket::kClockSnapshot:
        has_snapshot = true;
        if (IsLen(g) && IncrementalClockOf(g.data, g.size, ref_clock_, &inc)) has_inc = true;
        break;
      case pf::TracePacket::kSequenceFlags:
        if (g.int_value & pf::TracePacket::kSeqIncrementalStateCleared) cleared = true;
        break;
      case pf::TracePacket::kIncrementalStateCleared: if (g.int_value) cleared = true; break;
      case pf::TracePacket::kTracePacketDefaults:
        if (IsLen(g)) {
          ProtoDecoder e(g.data, g.size);
          Field h;
          while (e.Next(&h))
            if (h.id == pf::TracePacketDefaults::kTimestampClockId)
              default_clock = static_cast<uint32_t>(h.int_value), has_default_clock = true;
        }
        break;
      case pf::TracePacket::kCompressedPackets:
        // Rewriter::Compressed() rewrites the inner packets first.
        if (IsLen(g) && depth == 0 && Inflate(g.data, g.size, kMaxInflatedPacket, &inflated_).ok()) {
          ByteBuffer inner;
          inner.Append(inflated_.data(), inflated_.size());
          ProtoDecoder e(inner.data(), inner.size());
          Field h;
          while (e.Next(&h))
            if (h.id == 1 && IsLen(h)) Packet(h.data, h.size, depth + 1);
        }
        break;
      default:
        break;
    }
  }
  if (d.error()) return;  // the rewrite reports it and stops
  // A sequence as after a reset is not kept (the usual case: nothing here).
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end() && !cleared && !has_default_clock && !has_inc) return;
  Rewriter::Seq& seq = it != seqs_.end() ? it->second : seqs_[seq_id];
  if (cleared) seq = Rewriter::Seq();
  if (has_default_clock) seq.default_clock = default_clock, seq.explicit_default = true;
  if (has_inc) seq.DefineIncremental(inc);
  // (trace_processor reads no timestamp of a packet with a snapshot)
  if (has_ts && !has_snapshot && seq.OnIncremental(has_clock, clock)) seq.inc_value += ts;
  if (seq.IsDefault()) seqs_.erase(seq_id);
}

Rewriter::SeqStates SeqTracker::State() const {
  Rewriter::SeqStates v(seqs_.begin(), seqs_.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return v;
}

Status Rewriter::Packet(const PacketView& pv, ByteBuffer* out) {
  stats_.packets_read++;
  if (t_.Identity() || (t_.NamesOnly() && !MayChange(pv, t_))) {
    out->Append(pv.raw, pv.raw_size);
    stats_.packets_written++;
    return Status::Ok();
  }
  size_t start = out->size();
  size_t n = out->BeginNested(1, pv.size);
  Status st;
  if (!Body(pv.data, pv.size, out, 0, &st)) {
    out->resize(start);
    if (!st.ok()) return st;
    stats_.packets_dropped++;
    return Status::Ok();
  }
  out->EndNested(n, pv.size);
  stats_.packets_written++;
  if (packet_below_zero_) stats_.packets_below_zero++;
  return Status::Ok();
}

}  // namespace vpmerge
