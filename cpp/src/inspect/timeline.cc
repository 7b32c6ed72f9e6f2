// The timeline model: packets, sequences, clocks, track descriptors and track
// events (ftrace and process data: timeline_system.cc; the result:
// timeline_output.cc).
#include "inspect/timeline.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "inspect/timeline_impl.h"
#include "merge/proto_fields.h"
#include "merge/scan.h"
#include "merge/trace_io.h"

namespace vpinspect {

using tl::Time;
using vpmerge::Field;
using vpmerge::ProtoDecoder;
namespace pf = vpsdk::pf;
namespace proto = vpsdk::proto;

namespace {
constexpr uint32_t kRemoteClockSync = 107;   // TracePacket.remote_clock_sync
constexpr uint32_t kProcessStats = 9;        // TracePacket.process_stats
constexpr uint32_t kPreviousPacketDropped = 42;  // TracePacket.previous_packet_dropped
constexpr uint32_t kExtraCounterValues = 12, kExtraDoubleCounterValues = 46;  // TrackEvent
constexpr uint32_t kLegacyPhase = 2, kLegacyDurationUs = 3;                    // LegacyEvent

std::string Text(const Field& f) { return std::string(reinterpret_cast<const char*>(f.data), f.size); }

bool IsScoped(uint32_t c) { return c >= 64 && c < 128; }
}  // namespace

Timeline::Impl::Impl(const TimelineOptions& o)
    : max_slices(std::min<uint64_t>(std::max<uint64_t>(1, o.max_slices), uint64_t{1} << 60)),
      max_points(std::min<uint64_t>(std::max<uint64_t>(16, o.max_counter_points), uint64_t{1} << 60)) {
  want_instant_args = o.instant_args;
}

Timeline::Timeline(const TimelineOptions& options) : impl_(new Impl(options)) {}
Timeline::~Timeline() = default;
void Timeline::Packet(const uint8_t* data, size_t size) { impl_->Packet(data, size, 0); }
uint64_t Timeline::packets() const { return impl_->packets; }
uint64_t Timeline::damaged() const { return impl_->damaged; }
void Timeline::Finish(std::string* tracks, std::string* rows) {
  impl_->Finish(truncated_, tracks, rows);
}

// --- names, tracks, times -----------------------------------------------------------

uint32_t Timeline::Impl::Name(const char* p, size_t n) {
  auto it = name_ids.find(std::string_view(p, n));
  if (it != name_ids.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(names.size());
  names.emplace_back(p, n);
  name_ids.emplace(std::string_view(names.back()), id);
  return id;
}

uint32_t Timeline::Impl::TrackOf(uint64_t uuid) {
  auto it = by_uuid.find(uuid);
  if (it != by_uuid.end()) return it->second;
  uint32_t i = static_cast<uint32_t>(tracks.size());
  tracks.emplace_back();
  tracks.back().uuid = uuid;
  by_uuid.emplace(uuid, i);
  return i;
}

// Tracks the trace does not describe: per sequence (kind 0: a = sequence id),
// or made for system data (ftrace, process trees and stats).
uint32_t Timeline::Impl::SyntheticTrack(int kind, uint32_t machine, int64_t a, const std::string& b) {
  auto key = std::make_pair(std::make_pair(kind, machine), std::make_pair(a, b));
  auto it = synthetic.find(key);
  if (it != synthetic.end()) return it->second;
  uint32_t i = static_cast<uint32_t>(tracks.size());
  tracks.emplace_back();
  tl::Track& t = tracks.back();
  t.synthetic = true;
  t.machine = machine;
  if (kind == 0) {
    // As before machine ids: -(sequence id + 1) on the main machine.
    t.uuid = ((static_cast<uint64_t>(machine) << 32) | static_cast<uint64_t>(a)) + 1;
  } else {
    t.uuid = (uint64_t{1} << 62) + ++next_synthetic;
  }
  synthetic.emplace(key, i);
  return i;
}

Time Timeline::Impl::ToTime(uint32_t machine, tl::Seq* seq, uint32_t clock, uint64_t ts, bool* ok) {
  *ok = true;
  uint64_t v = ts;
  if (IsScoped(clock) && (!seq || !seq->clocks.Resolve(clock, ts, &clock, &v))) {
    *ok = false;  // a sequence-scoped clock its sequence never defined
    return 0;
  }
  int64_t t;
  if (clocks.ToTraceTime(machine, clock, v, &t) == Conversion::kOk) {
    if (t < 0) *ok = false;  // before the trace clock's zero: dropped
    return t;
  }
  pending.push_back({machine, clock, v, -1});
  return -static_cast<Time>(pending.size());
}

bool Timeline::Impl::Resolve(Time t, int64_t* out) const {
  if (t >= 0) {
    *out = t;
    return true;
  }
  *out = pending[static_cast<size_t>(-t - 1)].resolved;
  return *out >= 0;
}

void Timeline::Impl::Seen(Time t, int64_t add) {
  if (t < 0) {
    pending_seen.emplace_back(t, add);
    return;
  }
  int64_t v = add > INT64_MAX - t ? INT64_MAX : t + add;
  if (!has_start) {
    has_start = true;
    start = end = v;
  }
  start = std::min(start, v);
  end = std::max(end, v);
}

// --- slices and counter points, capped ----------------------------------------------

void Timeline::Impl::AddSlice(uint32_t track, int64_t ts, int64_t dur, uint32_t name, uint32_t depth) {
  slices_total++;
  if (dur < threshold) return;
  tracks[track].slices.push_back({ts, dur, name, depth, ++serial});
  if (++slices_kept > 2 * max_slices) Prune();
}

// A slice whose start or end (end < 0: none, `dur` is given) may still be
// waiting for its clock.
void Timeline::Impl::AddSliceAt(uint32_t track, Time ts, Time end_ts, int64_t dur, uint32_t name,
                                uint32_t depth) {
  bool has_end = end_ts != INT64_MIN;
  if (ts >= 0 && (!has_end || end_ts >= 0)) {
    AddSlice(track, ts, has_end ? std::max<int64_t>(0, end_ts - ts) : dur, name, depth);
    return;
  }
  pending_slices.push_back({track, ts, end_ts, dur, name, depth});
}

namespace {
using Key = std::pair<int64_t, uint32_t>;  // (duration, a hash of the serial): longest first
Key KeyOf(const tl::Slice& s) {
  return {s.dur, static_cast<uint32_t>(s.serial * 2654435761ull)};
}
}  // namespace

void Timeline::Impl::Prune() {
  std::vector<Key> keys;
  for (const tl::Track& t : tracks)
    for (const tl::Slice& s : t.slices) keys.push_back(KeyOf(s));
  if (keys.size() <= max_slices) return;
  auto nth = keys.begin() + static_cast<std::ptrdiff_t>(max_slices - 1);
  std::nth_element(keys.begin(), nth, keys.end(), std::greater<Key>());
  const Key cut = *nth;
  threshold = cut.first;
  uint64_t kept = 0;
  for (tl::Track& t : tracks) {
    if (t.slices.empty()) continue;
    t.slices.erase(std::remove_if(t.slices.begin(), t.slices.end(),
                                  [&](const tl::Slice& s) { return KeyOf(s) < cut; }),
                   t.slices.end());
    kept += t.slices.size();
  }
  slices_kept = kept;
}

namespace {
bool AtLeast(const tl::Value& a, const tl::Value& b) {
  if (a.is_int && b.is_int) return a.i >= b.i;
  return a.AsDouble() >= b.AsDouble();
}
}  // namespace

// Counter points; past twice the cap, neighbours pair up and every other pair
// keeps its higher point, the others their lower (peaks and troughs survive).
void Timeline::Impl::AddPoint(uint32_t track, Time ts, tl::Value v) {
  if (!v.is_int && !std::isfinite(v.d)) return;
  tl::Track& t = tracks[track];
  if (t.counter_incremental) {
    t.counter_total += v.AsDouble();
    v = tl::Value{t.counter_total, 0, false};
  }
  t.counter.push_back({ts, v});
  std::vector<tl::Point>& pts = t.counter;
  if (pts.size() <= 2 * max_points) return;
  size_t out = 0;
  for (size_t k = 0; k + 1 < pts.size(); k += 2) {
    const tl::Point& a = pts[k];
    const tl::Point& b = pts[k + 1];
    bool a_hi = AtLeast(a.v, b.v);
    pts[out++] = ((k / 2) % 2 == 0) == a_hi ? a : b;
  }
  if (pts.size() % 2) pts[out++] = pts.back();
  pts.resize(out);
}

// --- packets ------------------------------------------------------------------------

void Timeline::Impl::Packet(const uint8_t* data, size_t size, int depth) {
  packets++;
  ProtoDecoder d(data, size);
  Field g, te{}, interned{}, defaults{}, desc{}, snap{}, ftrace{}, tree{}, stats{}, compressed{};
  bool has_te = false, has_interned = false, has_defaults = false, has_desc = false;
  bool has_snap = false, has_ftrace = false, has_tree = false, has_stats = false;
  bool has_compressed = false, has_ts = false, has_clock = false, cleared = false;
  bool needs_state = false, dropped_before = false;
  std::vector<std::pair<const uint8_t*, size_t>> remote;
  uint64_t ts = 0;
  uint32_t seq_id = 0, clock = 0, machine = 0;
  while (d.Next(&g)) {
    bool len = g.type == proto::kLengthDelimited;
    switch (g.id) {
      case pf::TracePacket::kTimestamp: ts = g.int_value, has_ts = !len; break;
      case pf::TracePacket::kTrustedPacketSequenceId: seq_id = static_cast<uint32_t>(g.int_value); break;
      case pf::TracePacket::kTrackEvent: te = g, has_te = len; break;
      case pf::TracePacket::kInternedData: interned = g, has_interned = len; break;
      case pf::TracePacket::kSequenceFlags:
        cleared |= (g.int_value & 1) != 0;
        needs_state |= (g.int_value & 2) != 0;  // SEQ_NEEDS_INCREMENTAL_STATE
        break;
      case kPreviousPacketDropped: dropped_before |= !len && g.int_value != 0; break;
      case pf::TracePacket::kIncrementalStateCleared: cleared |= g.int_value != 0; break;
      case pf::TracePacket::kTracePacketDefaults: defaults = g, has_defaults = len; break;
      case pf::TracePacket::kTrackDescriptor: desc = g, has_desc = len; break;
      case pf::TracePacket::kTimestampClockId: clock = static_cast<uint32_t>(g.int_value), has_clock = true; break;
      case pf::TracePacket::kClockSnapshot: snap = g, has_snap = len; break;
      case pf::TracePacket::kMachineId: machine = static_cast<uint32_t>(g.int_value); break;
      case pf::TracePacket::kCompressedPackets: compressed = g, has_compressed = len; break;
      case pf::TracePacket::kFtraceEvents: ftrace = g, has_ftrace = len; break;
      case pf::TracePacket::kProcessTree: tree = g, has_tree = len; break;
      case kProcessStats: stats = g, has_stats = len; break;
      case kRemoteClockSync:
        if (len) remote.emplace_back(g.data, g.size);
        break;
      default: break;
    }
  }
  if (d.error()) {
    damaged++;
    return;
  }
  if (has_compressed && depth == 0) {
    packets--;  // the container: its packets count
    if (!vpmerge::Inflate(compressed.data, compressed.size, vpmerge::kMaxInflatedPacket, &inflated).ok()) {
      damaged++;
      return;
    }
    vpmerge::ByteBuffer inner;
    inner.Append(inflated.data(), inflated.size());
    ProtoDecoder e(inner.data(), inner.size());
    Field h;
    while (e.Next(&h))
      if (h.id == 1 && h.type == proto::kLengthDelimited) Packet(h.data, h.size, 1);
    if (e.error()) damaged++;
  }
  uint64_t seq_key = (static_cast<uint64_t>(machine) << 32) | seq_id;
  tl::Seq& seq = seqs[seq_key];
  if (dropped_before) seq.state_valid = false;  // lost packets: the state may be stale
  if (cleared) seq.Clear();
  // As trace_processor: a packet that needs the sequence's incremental state
  // (interning, the incremental clock) is skipped while that state is not
  // valid, e.g. after a ring buffer overwrote the reset that defined it.
  if (needs_state && !seq.state_valid) return;
  if (has_defaults) {
    ProtoDecoder e(defaults.data, defaults.size);
    Field h;
    while (e.Next(&h)) {
      if (h.id == pf::TracePacketDefaults::kTimestampClockId && h.type == proto::kVarint) {
        seq.default_clock = static_cast<uint32_t>(h.int_value);
        seq.has_default_clock = true;
      } else if (h.id == pf::TracePacketDefaults::kTrackEventDefaults && h.type == proto::kLengthDelimited) {
        ProtoDecoder k(h.data, h.size);
        Field f;
        while (k.Next(&f)) {
          if (f.id == pf::TrackEventDefaults::kTrackUuid && f.type == proto::kVarint) {
            seq.default_track = f.int_value;
            seq.has_default_track = true;
          } else if (f.id == vpmerge::fld::TrackEventDefaults::kExtraCounterTrackUuids) {
            seq.extra_counters.clear();
            vpmerge::ForEachVarint(f, [&](uint64_t v) { seq.extra_counters.push_back(v); });
          } else if (f.id == vpmerge::fld::TrackEventDefaults::kExtraDoubleCounterTrackUuids) {
            seq.extra_double_counters.clear();
            vpmerge::ForEachVarint(f, [&](uint64_t v) { seq.extra_double_counters.push_back(v); });
          }
        }
      }
    }
  }
  if (has_interned) {
    ProtoDecoder e(interned.data, interned.size);
    Field h;
    while (e.Next(&h)) {
      if (h.type != proto::kLengthDelimited) continue;
      if (h.id == pf::InternedData::kDebugAnnotationNames && want_instant_args) {
        ProtoDecoder k(h.data, h.size);
        Field f;
        uint64_t iid = 0;
        std::string name;
        while (k.Next(&f)) {
          if (f.id == pf::InternedString::kIid && f.type == proto::kVarint) iid = f.int_value;
          else if (f.id == pf::InternedString::kName && f.type == proto::kLengthDelimited) name = Text(f);
        }
        seq.anames[iid] = name;
        continue;
      }
      if (h.id != pf::InternedData::kEventNames) continue;
      ProtoDecoder k(h.data, h.size);
      Field f;
      uint64_t iid = 0;
      const char* name = "";
      size_t n = 0;
      while (k.Next(&f)) {
        if (f.id == pf::InternedString::kIid && f.type == proto::kVarint) iid = f.int_value;
        else if (f.id == pf::InternedString::kName && f.type == proto::kLengthDelimited)
          name = reinterpret_cast<const char*>(f.data), n = f.size;
      }
      seq.names[iid] = Name(name, n);
    }
  }
  if (has_snap || !remote.empty()) {
    // As trace_processor: every snapshot relates its global clocks (per
    // machine), one with sequence-scoped clocks also defines those; a
    // remote_clock_sync relates its machine's clocks.
    uint32_t primary = 0;
    if (has_snap) {
      std::vector<ClockValue> c = ReadSnapshot(snap.data, snap.size, &primary);
      if (primary) clocks.SetTraceClock(primary);
      clocks.AddSnapshot(machine, c);
      if (std::any_of(c.begin(), c.end(), [](const ClockValue& v) { return IsScoped(v.clock); }))
        seq.clocks.Define(c);
    }
    for (auto& r : remote)
      for (auto& client : ReadRemoteSnapshots(r.first, r.second)) clocks.AddSnapshot(machine, client);
    if (has_snap) return;  // trace_processor reads nothing else of a snapshot packet
  }
  if (has_desc) Descriptor(desc.data, desc.size, machine);
  if (has_tree) ProcessTree(tree.data, tree.size, machine);
  if (has_ftrace) Ftrace(ftrace.data, ftrace.size, machine);
  if (!has_ts) return;
  uint32_t c = has_clock ? clock
                         : (seq.has_default_clock ? seq.default_clock : pf::BuiltinClock::kBoottime);
  if (!has_te && !has_stats) {
    // Any packet's time on an incremental clock advances it (a descriptor's
    // too), as in trace_processor: the next event's delta starts there.
    uint32_t unused_clock;
    uint64_t unused_value;
    if (IsScoped(c)) seq.clocks.Resolve(c, ts, &unused_clock, &unused_value);
    return;
  }
  bool ok;
  Time t = ToTime(machine, &seq, c, ts, &ok);
  if (!ok) return;
  if (has_te) TrackEvent(seq, seq_key, te.data, te.size, t, machine);
  if (has_stats) ProcessStats(stats.data, stats.size, machine, t);
}

namespace {
void Doubles(const Field& f, std::vector<double>* out) {
  if (f.type == proto::kFixed64) {
    out->push_back(f.as_double());
  } else if (f.type == proto::kLengthDelimited) {
    for (size_t i = 0; i + 8 <= f.size; i += 8) {
      double v;
      std::memcpy(&v, f.data + i, 8);
      out->push_back(v);
    }
  }
}
}  // namespace

void Timeline::Impl::TrackEvent(tl::Seq& seq, uint64_t seq_key, const uint8_t* data, size_t size,
                                Time ts, uint32_t machine) {
  ProtoDecoder d(data, size);
  Field g, legacy{};
  uint32_t type = 0;
  uint64_t name_iid = 0, uuid = 0;
  int64_t ivalue = 0;
  double dvalue = 0;
  bool has_name = false, has_iid = false, has_uuid = false, has_ivalue = false, has_dvalue = false;
  bool has_legacy = false, has_eu = false, has_edu = false;
  Field name{};
  std::vector<uint64_t> eu, edu;
  std::vector<int64_t> ev;
  std::vector<double> edv;
  while (d.Next(&g)) {
    bool len = g.type == proto::kLengthDelimited;
    switch (g.id) {
      case pf::TrackEvent::kType: type = static_cast<uint32_t>(g.int_value); break;
      case pf::TrackEvent::kNameIid: name_iid = g.int_value, has_iid = !len; break;
      case pf::TrackEvent::kName:
        if (len) name = g, has_name = true;
        break;
      case pf::TrackEvent::kTrackUuid: uuid = g.int_value, has_uuid = !len; break;
      case pf::TrackEvent::kCounterValue: ivalue = g.as_int64(), has_ivalue = !len; break;
      case pf::TrackEvent::kDoubleCounterValue:
        has_dvalue = g.type == proto::kFixed64;
        if (has_dvalue) dvalue = g.as_double();
        break;
      case pf::TrackEvent::kExtraCounterTrackUuids:
        has_eu = true;
        vpmerge::ForEachVarint(g, [&](uint64_t v) { eu.push_back(v); });
        break;
      case kExtraCounterValues:
        vpmerge::ForEachVarint(g, [&](uint64_t v) { ev.push_back(static_cast<int64_t>(v)); });
        break;
      case vpmerge::fld::TrackEvent::kExtraDoubleCounterTrackUuids:
        has_edu = true;
        vpmerge::ForEachVarint(g, [&](uint64_t v) { edu.push_back(v); });
        break;
      case kExtraDoubleCounterValues: Doubles(g, &edv); break;
      case vpmerge::fld::TrackEvent::kLegacyEvent: legacy = g, has_legacy = len; break;
      default: break;
    }
  }
  if (d.error()) {
    damaged++;
    return;
  }
  uint32_t label = 0;
  bool labelled = false;
  if (has_name) {
    label = Name(reinterpret_cast<const char*>(name.data), name.size), labelled = true;
  } else if (has_iid) {
    auto it = seq.names.find(name_iid);
    if (it != seq.names.end()) label = it->second, labelled = true;
  }
  bool has_dur = false;
  int64_t dur = 0;
  if (type == 0 && has_legacy) {  // TYPE_UNSPECIFIED: the legacy event's phase
    ProtoDecoder e(legacy.data, legacy.size);
    Field h;
    while (e.Next(&h)) {
      if (h.id == kLegacyPhase && h.type == proto::kVarint) {
        switch (h.int_value) {
          case 'B': case 'X': type = pf::TrackEvent::kTypeSliceBegin; break;
          case 'E': type = pf::TrackEvent::kTypeSliceEnd; break;
          case 'I': case 'i': case 'n': case 'R': type = pf::TrackEvent::kTypeInstant; break;
          default: type = 0; break;
        }
        if (h.int_value == 'X') has_dur = true;  // (keeps a duration already read)
      } else if (h.id == kLegacyDurationUs && h.type == proto::kVarint) {
        dur = h.int_value > static_cast<uint64_t>(INT64_MAX / 1000) ? INT64_MAX
                                                                    : static_cast<int64_t>(h.int_value * 1000);
        has_dur = true;
      }
    }
  }
  uint32_t ti;
  if (has_uuid) ti = TrackOf(uuid);
  else if (seq.has_default_track) ti = TrackOf(seq.default_track);
  else ti = SyntheticTrack(0, machine, static_cast<int64_t>(seq_key & 0xffffffffu), std::string());
  tl::Track* t = &tracks[ti];
  if (machine) t->machine = machine;
  if (!t->desc && t->kind == tl::kNone) {
    t->kind = tl::kCustom;
    if (t->synthetic) t->name = "sequence " + std::to_string(seq_key & 0xffffffffu);
  }
  if (!labelled && type != pf::TrackEvent::kTypeSliceEnd && type != pf::TrackEvent::kTypeCounter)
    label = Name("(unnamed)");
  const uint32_t depth = static_cast<uint32_t>(t->stack.size());
  if (type == pf::TrackEvent::kTypeCounter) {
    if (has_dvalue || has_ivalue) {
      if (t->kind == tl::kCustom) t->kind = tl::kCounter;
      AddPoint(ti, ts, has_dvalue ? tl::Value{dvalue, 0, false} : tl::Value{0, ivalue, true});
      Seen(ts);
    }
  } else if (type == pf::TrackEvent::kTypeSliceBegin) {
    if (has_dur) {
      AddSliceAt(ti, ts, INT64_MIN, dur, label, depth);
      Seen(ts);
      Seen(ts, dur);
    } else {
      t->stack.push_back({ts, label});
      Seen(ts);
    }
  } else if (type == pf::TrackEvent::kTypeSliceEnd) {
    if (!t->stack.empty()) {
      tl::Open o = t->stack.back();
      t->stack.pop_back();
      AddSliceAt(ti, o.ts, ts, 0, o.name, static_cast<uint32_t>(t->stack.size()));
    }
    Seen(ts);
  } else if (type == pf::TrackEvent::kTypeInstant) {
    AddSliceAt(ti, ts, INT64_MIN, 0, label, depth);
    Seen(ts);
    if (want_instant_args && instant_args.size() < (uint64_t{1} << 24)) {
      tl::InstantArgs ia{ts, label, {}};
      ProtoDecoder a(data, size);
      Field f;
      while (a.Next(&f)) {
        if (f.id != pf::TrackEvent::kDebugAnnotations || f.type != proto::kLengthDelimited) continue;
        ProtoDecoder e(f.data, f.size);
        Field h;
        std::string key;
        bool has_key = false, is_int = false;
        int64_t ival = 0;
        while (e.Next(&h)) {
          if (h.id == pf::DebugAnnotation::kName && h.type == proto::kLengthDelimited) {
            key = Text(h), has_key = true;
          } else if (h.id == pf::DebugAnnotation::kNameIid && h.type == proto::kVarint) {
            auto it = seq.anames.find(h.int_value);
            if (it != seq.anames.end()) key = it->second, has_key = true;
          } else if (h.id == pf::DebugAnnotation::kIntValue && h.type == proto::kVarint) {
            ival = static_cast<int64_t>(h.int_value), is_int = true;
          }
        }
        if (has_key && is_int && ia.args.size() < 64) ia.args.emplace_back(key, ival);
      }
      if (!ia.args.empty()) instant_args.push_back(std::move(ia));
    }
  }
  // Extra counter values go to their own counter tracks.
  const std::vector<uint64_t>& uu = has_eu ? eu : seq.extra_counters;
  for (size_t k = 0; k < uu.size() && k < ev.size(); k++) {
    uint32_t ci = TrackOf(uu[k]);
    tracks[ci].kind = tl::kCounter;
    AddPoint(ci, ts, tl::Value{0, ev[k], true});
  }
  const std::vector<uint64_t>& du = has_edu ? edu : seq.extra_double_counters;
  for (size_t k = 0; k < du.size() && k < edv.size(); k++) {
    uint32_t ci = TrackOf(du[k]);
    tracks[ci].kind = tl::kCounter;
    AddPoint(ci, ts, tl::Value{edv[k], 0, false});
  }
}

}  // namespace vpinspect
