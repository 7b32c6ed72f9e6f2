// A written trace loaded and validated as a whole (sequences, incremental
// state, interning, balanced slices, what the test expects), and sessions
// started and stopped through the C ABI for the end-to-end tests.
#ifndef VPSDK_TESTS_TRACE_EXPECT_H_
#define VPSDK_TESTS_TRACE_EXPECT_H_

#include "trace_decode.h"

namespace vpsdk_test {

struct SeqInfo {
  uint32_t seq = 0;
  bool cleared = false;
  std::map<uint64_t, std::string> cats, names, args;
  std::set<uint64_t> tracks;
  bool has_default = false;
  uint64_t default_track = 0;
  int64_t depth = 0, min_depth = 0;
  uint64_t begins = 0, ends = 0, instants = 0, counters = 0, packets = 0, clears = 0;
  std::set<int64_t> tids;
  std::string thread_name;
  uint64_t thread_uuid = 0;
  std::vector<size_t> idx;  // its packets, in file order
  vpsdk_test::SequenceTime time;
  uint64_t snapshots = 0, absolute_packets = 0;  // clock snapshots; packets on BOOTTIME
};

struct Expect {
  bool first_packet = true;   // every sequence starts in the trace
  bool never_negative = true; // no end before its begin on a thread track
};

struct Trace {
  bool read = false, parsed = false;
  int problems = 0;
  std::string path;
  std::vector<Packet> packets;
  std::map<uint32_t, SeqInfo> seqs;  // writer sequences (id != 1)
  uint64_t writer_packets = 0;
  std::map<uint64_t, TrackDesc> described;  // every described track, by uuid
  int clock_snapshots = 0;  // the session's
  int trace_configs = 0;
  Packet config;
  int stats_packets = 0;
  Packet stats;

  void Problem(const char* fmt, ...) __attribute__((format(printf, 2, 3)));

  const SeqInfo* ByThreadName(const std::string& n) const {
    const SeqInfo* found = nullptr;
    for (auto& kv : seqs)
      if (kv.second.thread_name == n) {
        if (found) return nullptr;  // must be unique
        found = &kv.second;
      }
    return found;
  }
  std::vector<const Packet*> Events(uint32_t seq) const {
    std::vector<const Packet*> out;
    auto it = seqs.find(seq);
    if (it == seqs.end()) return out;
    for (size_t i : it->second.idx)
      if (packets[i].has_te) out.push_back(&packets[i]);
    return out;
  }
  uint64_t CountEvents(uint64_t type) const {
    uint64_t n = 0;
    for (auto& p : packets) n += p.has_te && p.type == type;
    return n;
  }
};

inline void Trace::Problem(const char* fmt, ...) {
  problems++;
  if (problems > 12) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "  trace %s: %s\n", path.c_str(), buf);
}

inline void Validate(Trace* t, const Expect& ex) {
  for (size_t i = 0; i < t->packets.size(); i++) {
    Packet& p = t->packets[i];
    if (!p.has_ts) t->Problem("packet %zu has no timestamp", i);
    if (p.td.present) t->described[p.td.uuid] = p.td;
    if (p.clock && p.seq == 1) {
      t->clock_snapshots++;
      if (p.snapshot.size() < 4) t->Problem("packet %zu: a session snapshot of %zu clocks", i, p.snapshot.size());
    }
    if (p.trace_config) {
      t->trace_configs++;
      t->config = p;
    }
    if (p.stats) {
      t->stats_packets++;
      t->stats = p;
    }
    if (p.seq == 0) {
      t->Problem("packet %zu has no trusted_packet_sequence_id", i);
      continue;
    }
    if (p.seq == 1) {
      if (p.has_te || p.flags) t->Problem("packet %zu on the session sequence has events", i);
      if (p.clock_id) t->Problem("packet %zu on the session sequence has a clock", i);
      continue;
    }
    t->writer_packets++;
    bool is_new = t->seqs.count(p.seq) == 0;
    SeqInfo& s = t->seqs[p.seq];
    s.seq = p.seq;
    s.packets++;
    s.idx.push_back(i);
    if (is_new && ex.first_packet) {
      if (!(p.flags & pf::TracePacket::kSeqIncrementalStateCleared) || !p.first_on_seq)
        t->Problem("first packet %zu of sequence %u: flags=%llu first_packet_on_sequence=%d", i,
                   p.seq, static_cast<unsigned long long>(p.flags), p.first_on_seq);
    }
    if (!is_new && p.first_on_seq)
      t->Problem("packet %zu of sequence %u is not its first but says so", i, p.seq);
    if (p.flags & pf::TracePacket::kSeqIncrementalStateCleared) {
      s.cleared = true;
      s.clears++;
      s.cats.clear();
      s.names.clear();
      s.args.clear();
      s.tracks.clear();
      s.has_default = false;
    }
    if (p.has_defaults) {
      s.has_default = true;
      s.default_track = p.default_track;
      if (p.default_clock != pf::BuiltinClock::kBoottime && p.default_clock != pf::kSequenceClockIncremental)
        t->Problem("packet %zu: default clock %llu", i,
                   static_cast<unsigned long long>(p.default_clock));
      s.time.SetDefaultClock(static_cast<uint32_t>(p.default_clock));
    }
    // Time, as trace_processor reads it: a packet with a snapshot defines
    // the clocks (its own time is not used: it is the snapshot's BOOTTIME);
    // the others are on their clock or the sequence's default.
    if (p.clock) {
      s.snapshots++;
      bool inc64 = p.snapshot.size() == 2 && p.snapshot[1].id == pf::kSequenceClockIncremental &&
                   p.snapshot[1].incremental && p.snapshot[0].id == pf::BuiltinClock::kBoottime;
      if (!inc64 || !(p.flags & pf::TracePacket::kSeqIncrementalStateCleared) || !p.has_defaults ||
          p.default_clock != pf::kSequenceClockIncremental || !s.time.Snapshot(p.snapshot))
        t->Problem("packet %zu: a writer-sequence snapshot other than a reset defining clock 64", i);
      if (p.td.present || p.has_te || p.i_names.size())
        t->Problem("packet %zu: a snapshot packet with more (trace_processor reads only its clocks)", i);
      p.ts = p.snapshot.empty() ? 0 : p.snapshot[0].ts;
    } else if (p.has_ts) {
      if (p.clock_id == pf::BuiltinClock::kBoottime) s.absolute_packets++;
      if (s.time.default_clock() == pf::kSequenceClockIncremental &&
          !(p.flags & pf::TracePacket::kSeqNeedsIncrementalState))
        t->Problem("packet %zu: a time on the incremental clock without SEQ_NEEDS_INCREMENTAL_STATE", i);
      if (!s.time.Absolute(p.raw_ts, p.clock_id, &p.ts))
        t->Problem("packet %zu: clock %u not defined on sequence %u", i, p.clock_id, p.seq);
    }
    auto add = [&](const InternedList& l, std::map<uint64_t, std::string>& m, const char* what) {
      for (auto& e : l) {
        if (e.first == 0) t->Problem("packet %zu: interned %s with iid 0", i, what);
        auto it = m.find(e.first);
        if (it != m.end() && it->second != e.second)
          t->Problem("packet %zu: %s iid %llu redefined", i, what,
                     static_cast<unsigned long long>(e.first));
        m[e.first] = e.second;
      }
    };
    add(p.i_cats, s.cats, "category");
    add(p.i_names, s.names, "name");
    add(p.i_args, s.args, "annotation name");
    if (p.td.present) {
      s.tracks.insert(p.td.uuid);
      if (p.td.thread) {
        s.tids.insert(p.td.tid);
        s.thread_name = p.td.thread_name;
        s.thread_uuid = p.td.uuid;
      }
    }
    if (!p.has_te) continue;
    if (!(p.flags & pf::TracePacket::kSeqNeedsIncrementalState))
      t->Problem("event packet %zu lacks SEQ_NEEDS_INCREMENTAL_STATE", i);
    if (!s.cleared) {
      t->Problem("event packet %zu on sequence %u before any incremental-state reset", i, p.seq);
      continue;
    }
    for (uint64_t c : p.cat_iids) {
      auto it = s.cats.find(c);
      if (it == s.cats.end())
        t->Problem("packet %zu: category iid %llu used before it is defined on seq %u", i,
                   static_cast<unsigned long long>(c), p.seq);
      else if (p.cat.empty())
        p.cat = it->second;
    }
    if (p.has_name_iid) {
      auto it = s.names.find(p.name_iid);
      if (it == s.names.end()) {
        t->Problem("packet %zu: name iid %llu used before it is defined on seq %u", i,
                   static_cast<unsigned long long>(p.name_iid), p.seq);
      } else {
        p.has_name = true;
        p.name = it->second;
      }
    }
    for (Ann& a : p.anns) {
      if (!a.name_iid) continue;
      auto it = s.args.find(a.name_iid);
      if (it == s.args.end())
        t->Problem("packet %zu: annotation name iid %llu used before it is defined", i,
                   static_cast<unsigned long long>(a.name_iid));
      else
        a.name = it->second;
    }
    bool thread_track = !p.has_track;
    if (thread_track) {
      if (!s.has_default) {
        t->Problem("packet %zu: thread-track event without TrackEventDefaults", i);
      } else {
        p.track = s.default_track;
        if (!s.tracks.count(p.track))
          t->Problem("packet %zu: default track not described on seq %u", i, p.seq);
      }
    } else if (!s.tracks.count(p.track)) {
      t->Problem("packet %zu: track %llu used before it is described on seq %u", i,
                 static_cast<unsigned long long>(p.track), p.seq);
    }
    switch (p.type) {
      case pf::TrackEvent::kTypeSliceBegin:
        s.begins++;
        if (thread_track) s.depth++;
        break;
      case pf::TrackEvent::kTypeSliceEnd:
        s.ends++;
        if (thread_track) {
          s.depth--;
          s.min_depth = std::min(s.min_depth, s.depth);
        }
        break;
      case pf::TrackEvent::kTypeInstant: s.instants++; break;
      case pf::TrackEvent::kTypeCounter:
        s.counters++;
        if (!p.has_track || (!p.has_cint && !p.has_cdouble))
          t->Problem("packet %zu: counter without track or value", i);
        break;
    }
  }
  for (auto& kv : t->seqs) {
    if (ex.never_negative && kv.second.min_depth < 0)
      t->Problem("sequence %u: an end precedes its begin (depth %lld)", kv.first,
                 static_cast<long long>(kv.second.min_depth));
    if (kv.second.tids.size() > 1) t->Problem("sequence %u describes several threads", kv.first);
  }
  // Distinct threads have distinct sequences.
  std::map<int64_t, uint32_t> tid_seq;
  for (auto& kv : t->seqs)
    for (int64_t tid : kv.second.tids) {
      auto it = tid_seq.find(tid);
      if (it != tid_seq.end() && it->second != kv.first)
        t->Problem("thread %lld writes on sequences %u and %u", static_cast<long long>(tid),
                   it->second, kv.first);
      tid_seq[tid] = kv.first;
    }
  for (auto& kv : t->described) {
    const TrackDesc& d = kv.second;
    if (d.has_parent && !t->described.count(d.parent))
      t->Problem("track %llu has an undescribed parent %llu",
                 static_cast<unsigned long long>(d.uuid),
                 static_cast<unsigned long long>(d.parent));
  }
  if (t->clock_snapshots < 2) t->Problem("%d clock snapshots", t->clock_snapshots);
  if (t->trace_configs != 1 || !t->config.has_disable_incremental)
    t->Problem("%d trace configs (disable_incremental_timestamps %s)", t->trace_configs,
               t->config.has_disable_incremental ? "set" : "unset");
  if (t->stats_packets != 1) t->Problem("%d trace_stats packets", t->stats_packets);
}

inline Trace LoadTrace(const std::string& path, const Expect& ex = Expect()) {
  Trace t;
  t.path = path;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    t.Problem("cannot stat");
    return t;
  }
  std::vector<uint8_t> data = ReadFile(path);
  t.read = data.size() == static_cast<size_t>(st.st_size);
  ProtoDecoder d(data.data(), data.size());
  Field f;
  bool ok = true;
  while (d.Next(&f)) {
    Packet p;
    if (f.id != pf::Trace::kPacket || !IsLd(f) || !ParsePacket(f, &p)) {
      t.Problem("packet %zu at offset %zu does not parse", t.packets.size(),
                static_cast<size_t>(f.begin - data.data()));
      ok = false;
      continue;
    }
    t.packets.push_back(std::move(p));
  }
  if (d.error()) {
    t.Problem("the trace is not a valid Trace message");
    ok = false;
  }
  t.parsed = ok && t.read;
  Validate(&t, ex);
  return t;
}

#define CHECK_TRACE(t)                                                              \
  CHECK_MSG((t).parsed && (t).problems == 0, "%s: %d problems", (t).path.c_str(), \
            (t).problems)

// --- sessions through the C ABI ---------------------------------------------------------

struct Cfg {
  std::string path;
  uint32_t kb = 65536;
  int32_t mode = VP_BUFFER_RING;
  std::vector<std::string> enable, disable;
  int incremental = -1;  // -1: the default; else vp_config_set_incremental_timestamps
  uint32_t unit = 0;
};

inline vp_session* StartSession(const Cfg& c, const char* file, int line) {
  vp_config* cfg = vp_config_new();
  vp_error err{};
  bool ok = cfg && vp_config_set_output(cfg, c.path.c_str(), &err) == VP_OK &&
            vp_config_set_buffer(cfg, c.kb, c.mode, &err) == VP_OK;
  for (auto& e : c.enable) ok = ok && vp_config_enable_category(cfg, e.c_str(), &err) == VP_OK;
  for (auto& e : c.disable) ok = ok && vp_config_disable_category(cfg, e.c_str(), &err) == VP_OK;
  if (c.incremental >= 0)
    ok = ok && vp_config_set_incremental_timestamps(cfg, c.incremental, c.unit, &err) == VP_OK;
  vp_session* s = nullptr;
  if (ok) ok = vp_session_start(cfg, &s, &err) == VP_OK;
  vp_config_free(cfg);
  Report(ok && s, file, line, "session start", err.message);
  return s;
}
#define START(cfg) StartSession(cfg, __FILE__, __LINE__)

inline void StopSession(vp_session* s, const char* file, int line) {
  vp_error err{};
  int32_t rc = vp_session_stop(s, &err);
  Report(rc == VP_OK, file, line, "session stop", err.message);
}
#define STOP(s) StopSession(s, __FILE__, __LINE__)

inline const char* ModeName(int32_t m) {
  return m == VP_BUFFER_RING ? "ring" : m == VP_BUFFER_DISCARD ? "discard" : "stream";
}

inline const Ann* FindAnn(const Packet& p, const std::string& name) {
  for (auto& a : p.anns)
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace vpsdk_test

#endif  // VPSDK_TESTS_TRACE_EXPECT_H_
