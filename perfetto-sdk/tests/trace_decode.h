// Decoding of the traces the tests write: packets, track events, track
// descriptors, interned data, stats and defaults (with vpsdk's ProtoDecoder),
// for the end-to-end tests' checks (trace_expect.h).
#ifndef VPSDK_TESTS_TRACE_DECODE_H_
#define VPSDK_TESTS_TRACE_DECODE_H_

#include "vpsdk_test.h"

namespace vpsdk_test {

// --- trace decoding --------------------------------------------------------------------

struct Ann {
  uint64_t name_iid = 0;
  std::string name;  // resolved or inline
  int kind = -1;     // VP_ARG_*
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  std::string s;
};

struct TrackDesc {
  bool present = false;
  uint64_t uuid = 0, parent = 0;
  bool has_parent = false;
  std::string name;
  bool thread = false;
  int64_t pid = 0, tid = 0;
  std::string thread_name;
  bool process = false;
  int64_t process_pid = 0;
  std::string process_name;
  bool counter = false;
  uint64_t unit = 0;
  std::string unit_name;
};

using InternedList = std::vector<std::pair<uint64_t, std::string>>;

struct Packet {
  bool has_ts = false;
  uint64_t ts = 0;      // absolute CLOCK_BOOTTIME (Validate resolves the clocks)
  uint64_t raw_ts = 0;  // as written
  uint32_t clock_id = 0;  // timestamp_clock_id; 0 when unset
  uint32_t seq = 0;
  uint64_t flags = 0;
  bool first_on_seq = false, prev_dropped = false;
  bool has_defaults = false;
  uint64_t default_track = 0, default_clock = 0;
  InternedList i_cats, i_names, i_args;
  bool has_te = false;
  uint64_t type = 0;
  std::vector<uint64_t> cat_iids;
  std::string cat;  // resolved first category
  bool has_name_iid = false;
  uint64_t name_iid = 0;
  bool has_name = false;
  std::string name;  // inline or resolved
  bool has_track = false;
  uint64_t track = 0;  // explicit or the default
  std::vector<Ann> anns;
  std::vector<uint64_t> flows, term_flows;
  bool has_cint = false, has_cdouble = false;
  int64_t cint = 0;
  double cdouble = 0;
  TrackDesc td;
  bool clock = false;
  std::vector<vpsdk_test::SnapshotClock> snapshot;
  bool trace_config = false;
  bool disable_incremental = false, has_disable_incremental = false;
  uint64_t unit_multiplier = 0;
  bool stats = false;
  std::map<uint32_t, uint64_t> buffer_stats;
  uint64_t stats_chunks_discarded = 0;
};

inline bool IsVar(const Field& f) { return f.type == proto::kVarint; }
inline bool IsLd(const Field& f) { return f.type == proto::kLengthDelimited; }
inline bool IsF64(const Field& f) { return f.type == proto::kFixed64; }
inline std::string Str(const Field& f) {
  return std::string(reinterpret_cast<const char*>(f.data), f.size);
}

inline bool ParseInterned(const Field& outer, InternedList* out) {
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  bool has_iid = false, has_name = false;
  uint64_t iid = 0;
  std::string name;
  while (d.Next(&f)) {
    if (f.id == pf::InternedString::kIid && IsVar(f)) {
      iid = f.int_value;
      has_iid = true;
    } else if (f.id == pf::InternedString::kName && IsLd(f)) {
      name = Str(f);
      has_name = true;
    } else {
      return false;
    }
  }
  if (d.error() || !has_iid || !has_name) return false;
  out->emplace_back(iid, name);
  return true;
}

inline bool ParseAnn(const Field& outer, Ann* a) {
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  int values = 0;
  while (d.Next(&f)) {
    namespace DA = pf::DebugAnnotation;
    switch (f.id) {
      case DA::kNameIid: if (!IsVar(f)) return false; a->name_iid = f.int_value; break;
      case DA::kName: if (!IsLd(f)) return false; a->name = Str(f); break;
      case DA::kBoolValue: if (!IsVar(f)) return false; a->kind = VP_ARG_BOOL; a->i = f.as_int64(); values++; break;
      case DA::kUintValue: if (!IsVar(f)) return false; a->kind = VP_ARG_UINT; a->u = f.int_value; values++; break;
      case DA::kIntValue: if (!IsVar(f)) return false; a->kind = VP_ARG_INT; a->i = f.as_int64(); values++; break;
      case DA::kDoubleValue: if (!IsF64(f)) return false; a->kind = VP_ARG_DOUBLE; a->d = f.as_double(); values++; break;
      case DA::kStringValue: if (!IsLd(f)) return false; a->kind = VP_ARG_STRING; a->s = Str(f); values++; break;
      case DA::kPointerValue: if (!IsVar(f)) return false; a->kind = VP_ARG_POINTER; a->u = f.int_value; values++; break;
      default: return false;
    }
  }
  return !d.error() && values == 1;
}

inline bool ParseTrackEvent(const Field& outer, Packet* p) {
  namespace TE = pf::TrackEvent;
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  p->has_te = true;
  while (d.Next(&f)) {
    switch (f.id) {
      case TE::kType: if (!IsVar(f)) return false; p->type = f.int_value; break;
      case TE::kCategoryIids: if (!IsVar(f)) return false; p->cat_iids.push_back(f.int_value); break;
      case TE::kNameIid: if (!IsVar(f)) return false; p->has_name_iid = true; p->name_iid = f.int_value; break;
      case TE::kName: if (!IsLd(f)) return false; p->has_name = true; p->name = Str(f); break;
      case TE::kTrackUuid: if (!IsVar(f)) return false; p->has_track = true; p->track = f.int_value; break;
      case TE::kDebugAnnotations: {
        if (!IsLd(f)) return false;
        Ann a;
        if (!ParseAnn(f, &a)) return false;
        p->anns.push_back(a);
        break;
      }
      case TE::kCounterValue: if (!IsVar(f)) return false; p->has_cint = true; p->cint = f.as_int64(); break;
      case TE::kDoubleCounterValue: if (!IsF64(f)) return false; p->has_cdouble = true; p->cdouble = f.as_double(); break;
      case TE::kFlowIds: if (!IsF64(f)) return false; p->flows.push_back(f.int_value); break;
      case TE::kTerminatingFlowIds: if (!IsF64(f)) return false; p->term_flows.push_back(f.int_value); break;
      default: return false;
    }
  }
  return !d.error() && p->type >= 1 && p->type <= 4;
}

inline bool ParseTrackDescriptor(const Field& outer, TrackDesc* t) {
  namespace TD = pf::TrackDescriptor;
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  t->present = true;
  bool has_uuid = false;
  while (d.Next(&f)) {
    switch (f.id) {
      case TD::kUuid: if (!IsVar(f)) return false; t->uuid = f.int_value; has_uuid = true; break;
      case TD::kName: if (!IsLd(f)) return false; t->name = Str(f); break;
      case TD::kParentUuid: if (!IsVar(f)) return false; t->parent = f.int_value; t->has_parent = true; break;
      case TD::kThread: {
        if (!IsLd(f)) return false;
        t->thread = true;
        ProtoDecoder td(f.data, f.size);
        Field g;
        while (td.Next(&g)) {
          if (g.id == pf::ThreadDescriptor::kPid && IsVar(g)) t->pid = g.as_int64();
          else if (g.id == pf::ThreadDescriptor::kTid && IsVar(g)) t->tid = g.as_int64();
          else if (g.id == pf::ThreadDescriptor::kThreadName && IsLd(g)) t->thread_name = Str(g);
          else return false;
        }
        if (td.error()) return false;
        break;
      }
      case TD::kProcess: {
        if (!IsLd(f)) return false;
        t->process = true;
        ProtoDecoder pd(f.data, f.size);
        Field g;
        while (pd.Next(&g)) {
          if (g.id == pf::ProcessDescriptor::kPid && IsVar(g)) t->process_pid = g.as_int64();
          else if (g.id == pf::ProcessDescriptor::kProcessName && IsLd(g)) t->process_name = Str(g);
          else return false;
        }
        if (pd.error()) return false;
        break;
      }
      case TD::kCounter: {
        if (!IsLd(f)) return false;
        t->counter = true;
        ProtoDecoder cd(f.data, f.size);
        Field g;
        while (cd.Next(&g)) {
          if (g.id == pf::CounterDescriptor::kUnit && IsVar(g)) t->unit = g.int_value;
          else if (g.id == pf::CounterDescriptor::kUnitName && IsLd(g)) t->unit_name = Str(g);
          else return false;
        }
        if (cd.error()) return false;
        break;
      }
      default: return false;
    }
  }
  return !d.error() && has_uuid;
}

inline bool ParseStats(const Field& outer, Packet* p) {
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  p->stats = true;
  while (d.Next(&f)) {
    if (f.id == pf::TraceStats::kBufferStats && IsLd(f)) {
      ProtoDecoder bd(f.data, f.size);
      Field g;
      while (bd.Next(&g)) {
        if (!IsVar(g)) return false;
        p->buffer_stats[g.id] = g.int_value;
      }
      if (bd.error()) return false;
    } else if (f.id == pf::TraceStats::kChunksDiscarded && IsVar(f)) {
      p->stats_chunks_discarded = f.int_value;
    } else {
      return false;
    }
  }
  return !d.error();
}

// The session's snapshots (4+ global clocks, BOOTTIME primary) and, on a
// writer sequence, BOOTTIME and the incremental clock 64 (checked in
// Validate).
inline bool ParseClock(const Field& outer, Packet* p) {
  uint32_t primary = pf::BuiltinClock::kBoottime;
  if (!vpsdk_test::ReadSnapshotClocks(outer.data, outer.size, &p->snapshot, &primary)) return false;
  return primary == pf::BuiltinClock::kBoottime && p->snapshot.size() >= 2;
}

// The session's TraceConfig: its track_event data source's config.
inline bool ParseTraceConfig(const Field& outer, Packet* p) {
  p->trace_config = true;
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  while (d.Next(&f)) {
    if (f.id != pf::TraceConfig::kDataSources || !IsLd(f)) continue;
    ProtoDecoder ds(f.data, f.size);
    Field g;
    while (ds.Next(&g)) {
      if (g.id != pf::TraceConfig::DataSource::kConfig || !IsLd(g)) continue;
      ProtoDecoder dc(g.data, g.size);
      Field h;
      while (dc.Next(&h)) {
        if (h.id != pf::DataSourceConfig::kTrackEventConfig || !IsLd(h)) continue;
        ProtoDecoder te(h.data, h.size);
        Field k;
        while (te.Next(&k)) {
          if (k.id == pf::TrackEventConfig::kDisableIncrementalTimestamps && IsVar(k))
            p->disable_incremental = k.int_value != 0, p->has_disable_incremental = true;
          if (k.id == pf::TrackEventConfig::kTimestampUnitMultiplier && IsVar(k))
            p->unit_multiplier = k.int_value;
        }
      }
    }
  }
  return !d.error();
}

inline bool ParseDefaults(const Field& outer, Packet* p) {
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  p->has_defaults = true;
  while (d.Next(&f)) {
    if (f.id == pf::TracePacketDefaults::kTimestampClockId && IsVar(f)) {
      p->default_clock = f.int_value;
    } else if (f.id == pf::TracePacketDefaults::kTrackEventDefaults && IsLd(f)) {
      ProtoDecoder td(f.data, f.size);
      Field g;
      while (td.Next(&g)) {
        if (g.id == pf::TrackEventDefaults::kTrackUuid && IsVar(g)) p->default_track = g.int_value;
        else return false;
      }
      if (td.error()) return false;
    } else {
      return false;
    }
  }
  return !d.error();
}

inline bool ParsePacket(const Field& outer, Packet* p) {
  namespace TP = pf::TracePacket;
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  while (d.Next(&f)) {
    bool ok = true;
    switch (f.id) {
      case TP::kTimestamp: ok = IsVar(f); p->has_ts = true; p->ts = p->raw_ts = f.int_value; break;
      case TP::kTimestampClockId:
        ok = IsVar(f) && f.int_value != 0;
        p->clock_id = static_cast<uint32_t>(f.int_value);
        break;
      case TP::kTraceConfig: ok = IsLd(f) && ParseTraceConfig(f, p); break;
      case TP::kTrustedPacketSequenceId:
        ok = IsVar(f) && f.int_value <= 0xffffffffu;
        p->seq = static_cast<uint32_t>(f.int_value);
        break;
      case TP::kSequenceFlags: ok = IsVar(f); p->flags = f.int_value; break;
      case TP::kFirstPacketOnSequence: ok = IsVar(f); p->first_on_seq = f.int_value != 0; break;
      case TP::kPreviousPacketDropped: ok = IsVar(f); p->prev_dropped = f.int_value != 0; break;
      case TP::kTracePacketDefaults: ok = IsLd(f) && ParseDefaults(f, p); break;
      case TP::kTrackEvent: ok = IsLd(f) && ParseTrackEvent(f, p); break;
      case TP::kTrackDescriptor: ok = IsLd(f) && ParseTrackDescriptor(f, &p->td); break;
      case TP::kClockSnapshot: ok = IsLd(f) && ParseClock(f, p); p->clock = true; break;
      case TP::kTraceStats: ok = IsLd(f) && ParseStats(f, p); break;
      case TP::kInternedData: {
        ok = IsLd(f);
        if (!ok) break;
        ProtoDecoder id(f.data, f.size);
        Field g;
        while (ok && id.Next(&g)) {
          if (!IsLd(g)) ok = false;
          else if (g.id == pf::InternedData::kEventCategories) ok = ParseInterned(g, &p->i_cats);
          else if (g.id == pf::InternedData::kEventNames) ok = ParseInterned(g, &p->i_names);
          else if (g.id == pf::InternedData::kDebugAnnotationNames) ok = ParseInterned(g, &p->i_args);
          else ok = false;
        }
        if (id.error()) ok = false;
        break;
      }
      default: ok = false;
    }
    if (!ok) return false;
  }
  return !d.error();
}

}  // namespace vpsdk_test

#endif  // VPSDK_TESTS_TRACE_DECODE_H_
