// Track events: encoding of slices, instants, counters and descriptors into
// the calling thread's chunk, with per-sequence interning.
#include <cstring>

#include "internal.h"
#include "vpsdk/clock.h"
#include "vpsdk/field_numbers.h"
#include "vpsdk/proto_writer.h"
#include "writer_inl.h"

namespace vpsdk {
namespace {

namespace TP = pf::TracePacket;
namespace TE = pf::TrackEvent;

void WriteThreadDescriptor(ProtoWriter& pw, ThreadWriter* w) {
  uint8_t* td = pw.BeginNested(TP::kTrackDescriptor);
  pw.Varint(pf::TrackDescriptor::kUuid, w->uuid);
  pw.Varint(pf::TrackDescriptor::kParentUuid, ProcessUuid());
  uint8_t* th = pw.BeginNested(pf::TrackDescriptor::kThread);
  pw.Varint(pf::ThreadDescriptor::kPid, static_cast<uint32_t>(ProcessPid()));
  pw.Varint(pf::ThreadDescriptor::kTid, static_cast<uint32_t>(w->tid));
  if (!w->name.empty())
    pw.String(pf::ThreadDescriptor::kThreadName, w->name.data(), w->name.size());
  pw.EndNested(th);
  pw.EndNested(td);
}

void WriteProcessDescriptor(ProtoWriter& pw, const std::string& pname) {
  uint8_t* td = pw.BeginNested(TP::kTrackDescriptor);
  pw.Varint(pf::TrackDescriptor::kUuid, ProcessUuid());
  uint8_t* pr = pw.BeginNested(pf::TrackDescriptor::kProcess);
  pw.Varint(pf::ProcessDescriptor::kPid, static_cast<uint32_t>(ProcessPid()));
  if (!pname.empty()) pw.String(pf::ProcessDescriptor::kProcessName, pname.data(), pname.size());
  pw.EndNested(pr);
  pw.EndNested(td);
}

// The packets that (re)start a sequence's incremental state: defaults and
// this thread's descriptor, then the process descriptor. Everything interned
// or described before is forgotten, so each chunk in a ring buffer decodes on
// its own. With incremental timestamps the first packet also defines the
// sequence's clock (as the SDK does: a ClockSnapshot of BOOTTIME and the
// incremental clock 64 at this instant, in the packet that clears the state
// and makes clock 64 the default); a reader ignores every other field of a
// packet with a ClockSnapshot, so the thread's descriptor gets its own packet.
void WriteReset(ThreadWriter* w, const std::string& pname) {
  uint64_t ts = BootTimeNs();
  const SessionConfig& cfg = w->session->cfg;
  bool incremental = cfg.incremental_timestamps;
  uint32_t unit = cfg.timestamp_unit_ns ? cfg.timestamp_unit_ns : 1;
  w->incremental_ts = incremental;
  w->ts_unit = unit;
  w->plain_ts = incremental && unit == 1;
  w->last_ts = ts;
  {
    PacketScope p(w, ts);  // incremental: a delta of 0 from the snapshot below
    ProtoWriter& pw = p.pw;
    pw.Varint(TP::kSequenceFlags, TP::kSeqIncrementalStateCleared);
    bool lost = w->packets_lost.exchange(false, std::memory_order_relaxed);
    if (w->first_packet) pw.Bool(TP::kFirstPacketOnSequence, true);
    if (w->first_packet || lost) pw.Varint(TP::kPreviousPacketDropped, 1);
    uint8_t* d = pw.BeginNested(TP::kTracePacketDefaults);
    pw.Varint(pf::TracePacketDefaults::kTimestampClockId,
              incremental ? pf::kSequenceClockIncremental : pf::BuiltinClock::kBoottime);
    uint8_t* ted = pw.BeginNested(pf::TracePacketDefaults::kTrackEventDefaults);
    pw.Varint(pf::TrackEventDefaults::kTrackUuid, w->uuid);
    pw.EndNested(ted);
    pw.EndNested(d);
    if (incremental) {
      uint8_t* snap = pw.BeginNested(TP::kClockSnapshot);
      uint8_t* c = pw.BeginNested(pf::ClockSnapshot::kClocks);
      pw.Varint(pf::ClockSnapshot::Clock::kClockId, pf::BuiltinClock::kBoottime);
      pw.Varint(pf::ClockSnapshot::Clock::kTimestamp, ts);
      pw.EndNested(c);
      c = pw.BeginNested(pf::ClockSnapshot::kClocks);
      pw.Varint(pf::ClockSnapshot::Clock::kClockId, pf::kSequenceClockIncremental);
      pw.Varint(pf::ClockSnapshot::Clock::kTimestamp, ts / unit);
      pw.Bool(pf::ClockSnapshot::Clock::kIsIncremental, true);
      if (unit != 1) pw.Varint(pf::ClockSnapshot::Clock::kUnitMultiplierNs, unit);
      pw.EndNested(c);
      pw.EndNested(snap);
    } else {
      WriteThreadDescriptor(pw, w);
    }
    p.Finish();
  }
  if (incremental) {
    PacketScope p(w, ts);
    p.FlagIfIncremental();
    WriteThreadDescriptor(p.pw, w);
    p.Finish();
  }
  {
    PacketScope p(w, ts);
    p.FlagIfIncremental();
    WriteProcessDescriptor(p.pw, pname);
    p.Finish();
  }
  w->need_reset = false;
  w->first_packet = false;
  if (++w->epoch == 0) {  // wrapped: forget everything explicitly
    w->name_seen.assign(w->name_seen.size(), 0);
    w->arg_seen.assign(w->arg_seen.size(), 0);
    w->track_seen.assign(w->track_seen.size(), 0);
    w->func_seen.assign(w->func_seen.size(), 0);
    std::memset(w->category_seen, 0, sizeof(w->category_seen));
    w->epoch = 1;
  }
}

void PrepareSlowImpl(ThreadWriter* w, size_t bound) {
  std::string pname = ProcessName();
  size_t reset_bound = 3 * kPacketBase + pname.size() + w->name.size();
  if (w->cap - w->pos < bound + (w->need_reset ? reset_bound : 0))
    MakeRoom(w, bound + reset_bound);
  if (w->need_reset) WriteReset(w, pname);
}

// --- interning --------------------------------------------------------------------

void WriteInternedEntry(ProtoWriter& pw, uint32_t field, uint32_t iid,
                        const InternedString* s) {
  uint8_t* e = pw.BeginNested(field);
  pw.Varint(pf::InternedString::kIid, iid);
  pw.String(pf::InternedString::kName, s->data, s->len);
  pw.EndNested(e);
}

// Writes InternedData for whatever the event uses that this sequence has not
// seen since its last reset. Interned ids are the process-wide ids, which are
// unique and so valid per sequence too.
void WriteInterned(ProtoWriter& pw, ThreadWriter* w, uint32_t category,
                   const InternedString* cat, uint32_t name, const InternedString* nm,
                   const Arg* args, uint32_t nargs) {
  bool need_cat = cat && w->category_seen[category] != w->epoch;
  bool need_name = nm && !Seen(w->name_seen, name, w->epoch);
  bool need_args = false;
  for (uint32_t i = 0; i < nargs && !need_args; i++)
    need_args = args[i].name && LookupString(args[i].name) &&
                !Seen(w->arg_seen, args[i].name, w->epoch);
  if (!need_cat && !need_name && !need_args) return;
  uint8_t* id = pw.BeginNested(TP::kInternedData);
  if (need_cat) {
    WriteInternedEntry(pw, pf::InternedData::kEventCategories, category, cat);
    w->category_seen[category] = w->epoch;
  }
  if (need_name) {
    WriteInternedEntry(pw, pf::InternedData::kEventNames, name, nm);
    MarkSeen(&w->name_seen, name, w->epoch);
  }
  for (uint32_t i = 0; i < nargs && need_args; i++) {
    const InternedString* an = args[i].name ? LookupString(args[i].name) : nullptr;
    if (an && !Seen(w->arg_seen, args[i].name, w->epoch)) {
      WriteInternedEntry(pw, pf::InternedData::kDebugAnnotationNames, args[i].name, an);
      MarkSeen(&w->arg_seen, args[i].name, w->epoch);
    }
  }
  pw.EndNested(id);
}

// --- nesting on the thread track --------------------------------------------------

inline void PushSlice(ThreadWriter* w, bool recorded) {
  uint32_t d = w->depth++;
  if (d < ThreadWriter::kMaxDepth) {
    uint64_t bit = uint64_t{1} << (d & 63);
    if (recorded) w->recorded[d >> 6] |= bit;
    else w->recorded[d >> 6] &= ~bit;
  }
}
// Returns whether the slice being ended was recorded; false with no slice.
inline bool PopSlice(ThreadWriter* w) {
  if (w->depth == 0) return false;
  uint32_t d = --w->depth;
  if (d >= ThreadWriter::kMaxDepth) return true;
  return (w->recorded[d >> 6] >> (d & 63)) & 1;
}

void PushUnrecorded() {
  if (ThreadWriter* w = CurrentWriter()) PushSlice(w, false);
}

// --- tracks ---------------------------------------------------------------------------

// Whether this sequence described `track` (this use of its handle) since
// its last reset.
inline bool TrackSeen(ThreadWriter* w, uint32_t track, const TrackInfo* t) {
  return Seen(w->track_seen, track, w->epoch) && w->track_serial[track] == t->serial;
}

size_t TrackChainBound(ThreadWriter* w, uint32_t track) {
  size_t bound = 0;
  for (int hops = 0; track > kProcessTrack && hops < 64; hops++) {
    const TrackInfo* t = LookupTrack(track);
    if (!t || TrackSeen(w, track, t)) break;
    bound += kPacketBase + kTrackDescriptorBase + t->name.size() + t->unit_name.size();
    track = t->parent;
  }
  return bound;
}

// Prepare() for an event on `track` that first describes whatever of the
// track's chain this sequence has not seen. A reset inside Prepare() forgets
// every described track, so then the bound is taken again: it is the whole
// chain now, which no further reset can make larger.
void PrepareWithTrack(ThreadWriter* w, size_t bound, uint32_t track) {
  uint32_t epoch = w->epoch;
  Prepare(w, bound + TrackChainBound(w, track));
  if (w->epoch != epoch) Prepare(w, bound + TrackChainBound(w, track));
}

// Describes at most the 64 tracks that TrackChainBound() reserves room for.
void DescribeTrack(ThreadWriter* w, uint32_t track, uint64_t ts, int hops = 0) {
  if (track <= kProcessTrack || hops >= 64) return;
  const TrackInfo* t = LookupTrack(track);
  if (!t || TrackSeen(w, track, t)) return;
  if (!t->parent_uuid) DescribeTrack(w, t->parent, ts, hops + 1);
  PacketScope p(w, ts);
  p.FlagIfIncremental();
  ProtoWriter& pw = p.pw;
  uint8_t* td = pw.BeginNested(TP::kTrackDescriptor);
  pw.Varint(pf::TrackDescriptor::kUuid, t->uuid);
  pw.Varint(pf::TrackDescriptor::kParentUuid, t->parent_uuid ? t->parent_uuid : TrackUuid(t->parent));
  pw.String(pf::TrackDescriptor::kName, t->name.data(), t->name.size());
  if (t->kind == TrackKind::kCounter) {
    uint8_t* cd = pw.BeginNested(pf::TrackDescriptor::kCounter);
    if (t->unit) pw.Varint(pf::CounterDescriptor::kUnit, t->unit);
    if (!t->unit_name.empty())
      pw.String(pf::CounterDescriptor::kUnitName, t->unit_name.data(), t->unit_name.size());
    pw.EndNested(cd);
  }
  pw.EndNested(td);
  p.Finish();
  MarkSeen(&w->track_seen, track, w->epoch);
  if (w->track_serial.size() < w->track_seen.size()) w->track_serial.resize(w->track_seen.size(), 0);
  w->track_serial[track] = t->serial;
}

// --- events -------------------------------------------------------------------------------

// The common shape of begin and instant events on the thread track.
inline void WriteNamed(ThreadWriter* w, uint32_t type, uint32_t category, uint32_t name,
                       const char* inline_name, size_t inline_len) {
  const InternedString* cat = CategoryString(category);
  const InternedString* nm = LookupString(name);
  size_t bound = kPacketBase + (cat ? cat->len : 0) + (nm ? nm->len : 0) + inline_len;
  Prepare(w, bound);
  PacketScope p(w, BootTimeNs());
  ProtoWriter& pw = p.pw;
  if (VPSDK_UNLIKELY((cat && w->category_seen[category] != w->epoch) ||
                     (nm && !Seen(w->name_seen, name, w->epoch))))
    WriteInterned(pw, w, category, cat, name, nm, nullptr, 0);
  pw.Varint(TP::kSequenceFlags, TP::kSeqNeedsIncrementalState);
  uint8_t* te = pw.BeginNested(TP::kTrackEvent);
  pw.Varint(TE::kType, type);
  if (cat) pw.Varint(TE::kCategoryIids, category);
  if (nm) pw.Varint(TE::kNameIid, name);
  else if (inline_name) pw.String(TE::kName, inline_name, inline_len);
  pw.EndNested(te);
  p.Finish();
}

void WriteCounter(uint32_t track, bool is_double, int64_t iv, double dv, uint64_t ts) {
  ThreadWriter* w = CurrentWriter();
  const TrackInfo* t = LookupTrack(track);
  if (!w || !t || t->kind != TrackKind::kCounter) return;
  PrepareWithTrack(w, kPacketBase, track);
  if (ts == 0) ts = BootTimeNs();
  DescribeTrack(w, track, ts);
  PacketScope p(w, ts);
  ProtoWriter& pw = p.pw;
  pw.Varint(TP::kSequenceFlags, TP::kSeqNeedsIncrementalState);
  uint8_t* te = pw.BeginNested(TP::kTrackEvent);
  pw.Varint(TE::kType, TE::kTypeCounter);
  pw.Varint(TE::kTrackUuid, t->uuid);
  if (is_double) pw.Double(TE::kDoubleCounterValue, dv);
  else pw.Int64(TE::kCounterValue, iv);
  pw.EndNested(te);
  p.Finish();
}

// The index after the annotation at args[i] and its children (iterative:
// the nesting given by a caller is not bounded).
uint32_t SkipArg(const Arg* args, uint32_t i, uint32_t n) {
  uint64_t pending = 1;
  while (pending && i < n) {
    if (args[i].type == kArgName) {
      i++;
      continue;
    }
    const Arg& a = args[i++];
    pending--;
    if (a.type == kArgDict || a.type == kArgArray)
      pending = a.u > n ? n : pending + a.u;  // never more than what is left
  }
  return i;
}

// Writes the annotation at args[i] (a kArgName entry first names it; a dict
// or array takes its children along) as `field` and returns the index after
// it. Annotations outside arrays always carry a name: trace_processor drops
// events with a nameless one.
uint32_t WriteArg(ProtoWriter& pw, uint32_t field, const Arg* args, uint32_t i, uint32_t n,
                  bool named, int depth) {
  const Arg* inline_name = nullptr;
  if (args[i].type == kArgName) {
    inline_name = &args[i];
    if (++i >= n) return n;
  }
  const Arg& a = args[i++];
  // Too deep: the entry is written as "…" and its children are skipped.
  bool too_deep = depth >= kMaxArgDepth;
  uint8_t* da = pw.BeginNested(field);
  if (named) {
    if (inline_name) {
      pw.String(pf::DebugAnnotation::kName, inline_name->s ? inline_name->s : "",
                inline_name->s ? inline_name->len : 0);
    } else if (LookupString(a.name)) {
      pw.Varint(pf::DebugAnnotation::kNameIid, a.name);
    } else {
      pw.String(pf::DebugAnnotation::kName, "?", 1);
    }
  }
  if (too_deep) {
    pw.String(pf::DebugAnnotation::kStringValue, "\xe2\x80\xa6", 3);
    pw.EndNested(da);
    return SkipArg(args, i - 1, n);
  }
  // An empty container would be an annotation without a value (not shown).
  if ((a.type == kArgDict || a.type == kArgArray) && (a.u == 0 || i >= n)) {
    pw.String(pf::DebugAnnotation::kStringValue, a.type == kArgDict ? "{}" : "[]", 2);
    pw.EndNested(da);
    return i;
  }
  switch (a.type) {
    case kArgInt: pw.Int64(pf::DebugAnnotation::kIntValue, a.i); break;
    case kArgUint: pw.Varint(pf::DebugAnnotation::kUintValue, a.u); break;
    case kArgDouble: pw.Double(pf::DebugAnnotation::kDoubleValue, a.d); break;
    case kArgBool: pw.Bool(pf::DebugAnnotation::kBoolValue, a.i != 0); break;
    case kArgPointer: pw.Varint(pf::DebugAnnotation::kPointerValue, a.u); break;
    case kArgString:
      pw.String(pf::DebugAnnotation::kStringValue, a.s ? a.s : "", a.s ? a.len : 0);
      break;
    case kArgDict:
    case kArgArray: {
      bool dict = a.type == kArgDict;
      uint32_t child = dict ? pf::DebugAnnotation::kDictEntries : pf::DebugAnnotation::kArrayValues;
      for (uint64_t k = 0; k < a.u && i < n; k++)
        i = WriteArg(pw, child, args, i, n, dict, depth + 1);
      break;
    }
    default:  // unknown type: its string was not counted in the bound
      pw.String(pf::DebugAnnotation::kStringValue, "", 0);
      break;
  }
  pw.EndNested(da);
  return i;
}

}  // namespace

void PrepareSlow(ThreadWriter* w, size_t bound) { PrepareSlowImpl(w, bound); }

void SliceBegin(uint32_t category, uint32_t name) {
  if (VPSDK_UNLIKELY(!CategoryEnabled(category))) {
    if (IsTracing()) PushUnrecorded();
    return;
  }
  ThreadWriter* w = CurrentWriter();
  if (VPSDK_UNLIKELY(!w)) return;
  WriteNamed(w, TE::kTypeSliceBegin, category, name, nullptr, 0);
  PushSlice(w, true);
}

void SliceBeginStr(uint32_t category, const char* name, size_t len) {
  if (!CategoryEnabled(category)) {
    if (IsTracing()) PushUnrecorded();
    return;
  }
  ThreadWriter* w = CurrentWriter();
  if (!w) return;
  if (!name) len = 0;
  WriteNamed(w, TE::kTypeSliceBegin, category, 0, name, len);
  PushSlice(w, true);
}

void SliceEnd() {
  if (VPSDK_UNLIKELY(!IsTracing())) return;
  ThreadWriter* w = CurrentWriter();
  if (VPSDK_UNLIKELY(!w) || !PopSlice(w)) return;
  WriteSliceEnd(w, BootTimeNs());
}

void Instant(uint32_t category, uint32_t name) {
  if (!CategoryEnabled(category)) return;
  if (ThreadWriter* w = CurrentWriter()) WriteNamed(w, TE::kTypeInstant, category, name, nullptr, 0);
}

void InstantStr(uint32_t category, const char* name, size_t len) {
  if (!CategoryEnabled(category)) return;
  if (!name) len = 0;
  if (ThreadWriter* w = CurrentWriter()) WriteNamed(w, TE::kTypeInstant, category, 0, name, len);
}

void CounterInt(uint32_t track, int64_t value) {
  if (IsTracing()) WriteCounter(track, false, value, 0, 0);
}

void CounterDouble(uint32_t track, double value) {
  if (IsTracing()) WriteCounter(track, true, 0, value, 0);
}

void Emit(const Event& ev) {
  if (ev.type == kCounter) {
    if (IsTracing())
      WriteCounter(ev.track, ev.counter_is_double != 0, ev.counter_int, ev.counter_double,
                   ev.timestamp_ns);
    return;
  }
  if (ev.type != kBegin && ev.type != kEnd && ev.type != kInstant) return;
  bool on_thread = ev.track == kThreadTrack;
  bool is_end = ev.type == kEnd;
  ThreadWriter* w = nullptr;
  if (is_end && on_thread) {
    // Ends carry no category: an end closes the innermost begin of this
    // thread if (and only if) that begin was recorded.
    if (!IsTracing() || !(w = CurrentWriter()) || !PopSlice(w)) return;
  } else {
    if (!CategoryEnabled(ev.category)) {
      if (ev.type == kBegin && on_thread && IsTracing()) PushUnrecorded();
      return;
    }
    if (!(w = CurrentWriter())) return;
  }
  const TrackInfo* track = nullptr;
  if (!on_thread) {
    track = LookupTrack(ev.track);
    if (!track || track->kind == TrackKind::kCounter) return;
  }

  const InternedString* cat = is_end ? nullptr : CategoryString(ev.category);
  const InternedString* nm = is_end ? nullptr : LookupString(ev.name);
  const char* inline_name = (!is_end && !nm) ? ev.name_str : nullptr;
  size_t inline_len = inline_name ? ev.name_len : 0;
  size_t bound = kPacketBase + (cat ? cat->len : 0) + (nm ? nm->len : 0) + inline_len +
                 20 * (size_t{ev.nflows} + ev.nterminating_flows);
  for (uint32_t i = 0; i < ev.nargs; i++) {
    const InternedString* an = LookupString(ev.args[i].name);
    const Arg& a = ev.args[i];
    bound += 48 + (an ? an->len : 0) +
             ((a.type == kArgString || a.type == kArgName) && a.s ? a.len : 0);
  }
  if (track) PrepareWithTrack(w, bound, ev.track);
  else Prepare(w, bound);

  uint64_t ts = ev.timestamp_ns ? ev.timestamp_ns : BootTimeNs();
  if (track) DescribeTrack(w, ev.track, ts);
  PacketScope p(w, ts);
  ProtoWriter& pw = p.pw;
  WriteInterned(pw, w, ev.category, cat, ev.name, nm, ev.args, ev.nargs);
  pw.Varint(TP::kSequenceFlags, TP::kSeqNeedsIncrementalState);
  uint8_t* te = pw.BeginNested(TP::kTrackEvent);
  static const uint32_t kTypes[] = {0, TE::kTypeSliceBegin, TE::kTypeSliceEnd, TE::kTypeInstant};
  pw.Varint(TE::kType, kTypes[ev.type]);
  if (track) pw.Varint(TE::kTrackUuid, track->uuid);
  if (cat) pw.Varint(TE::kCategoryIids, ev.category);
  if (nm) pw.Varint(TE::kNameIid, ev.name);
  else if (inline_name) pw.String(TE::kName, inline_name, inline_len);
  for (uint32_t i = 0; i < ev.nargs;)
    i = WriteArg(pw, TE::kDebugAnnotations, ev.args, i, ev.nargs, true, 0);
  for (uint32_t i = 0; i < ev.nflows; i++) pw.Fixed64(TE::kFlowIds, ev.flows[i]);
  for (uint32_t i = 0; i < ev.nterminating_flows; i++)
    pw.Fixed64(TE::kTerminatingFlowIds, ev.terminating_flows[i]);
  pw.EndNested(te);
  p.Finish();
  if (on_thread && ev.type == kBegin) PushSlice(w, true);
}

void SetThreadName(const char* name) {
  ThreadWriter* w = ThreadState();
  w->name = name ? name : "";
  if (!IsTracing()) return;
  w = CurrentWriter();
  if (!w) return;
  Prepare(w, kPacketBase + kTrackDescriptorBase + w->name.size());
  PacketScope p(w, BootTimeNs());
  p.FlagIfIncremental();
  WriteThreadDescriptor(p.pw, w);
  p.Finish();
}

void SetProcessNameDefault(const char* name) {
  if (ProcessName().empty() && name && *name) SetProcessName(name);
}

void SetProcessName(const char* name) {
  SetProcessNameStored(name);
  if (!IsTracing()) return;
  ThreadWriter* w = CurrentWriter();
  if (!w) return;
  std::string pname = ProcessName();
  Prepare(w, kPacketBase + kTrackDescriptorBase + pname.size());
  PacketScope p(w, BootTimeNs());
  p.FlagIfIncremental();
  WriteProcessDescriptor(p.pw, pname);
  p.Finish();
}

}  // namespace vpsdk
