// Tests of the core features behind the Python-native tracing (issue 11),
// through the C ABI: whole-program call slices (vp_func_*), nested
// annotations (VP_ARG_DICT/ARRAY/NAME), tracks for asyncio tasks
// (vp_track_new_for_thread / vp_track_free) and sequence-id bases. Each
// writes a trace and decodes it with the header-only ProtoDecoder, checking
// interning after every reset as trace_processor would. Built with the other
// core tests and run under ASan+UBSan by scripts/sanitize.sh.
//
// Prints "N passed, M failed" last and exits non-zero on any failure.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "vperfetto/vperfetto.h"
#include "vpsdk/field_numbers.h"
#include "vpsdk/proto_decoder.h"
#include "seq_time.h"

namespace {

namespace pf = vpsdk::pf;
using vpsdk::Field;
using vpsdk::ProtoDecoder;

int g_passed = 0, g_failed = 0;
#define CHECK(c)                                                           \
  do {                                                                     \
    if (c) {                                                               \
      g_passed++;                                                          \
    } else {                                                               \
      g_failed++;                                                          \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
    }                                                                      \
  } while (0)

std::string TmpPath(const char* name) {
  const char* base = std::getenv("TMPDIR");
  return std::string(base && *base ? base : "/tmp") + "/vp_pyfeat_" + std::to_string(getpid()) +
         "_" + name + ".pftrace";
}

// One decoded annotation: its name, and its value rendered as text
// ("{a=1,b=[1,2]}"); *ok becomes false for what trace_processor drops.
std::string RenderEntries(const Field& f, const std::map<uint64_t, std::string>& names,
                          std::string* out_name, bool named, bool* ok) {
  ProtoDecoder d(f.data, f.size);
  Field g;
  std::string name, value;
  std::vector<std::string> dict, array;
  bool has_name = false, has_value = false;
  while (d.Next(&g)) {
    switch (g.id) {
      case pf::DebugAnnotation::kNameIid: {
        auto it = names.find(g.int_value);
        if (it == names.end()) *ok = false;
        else name = it->second;
        has_name = true;
        break;
      }
      case pf::DebugAnnotation::kName: name.assign(reinterpret_cast<const char*>(g.data), g.size); has_name = true; break;
      case pf::DebugAnnotation::kIntValue: value = std::to_string(g.as_int64()); has_value = true; break;
      case pf::DebugAnnotation::kUintValue: value = std::to_string(g.int_value) + "u"; has_value = true; break;
      case pf::DebugAnnotation::kBoolValue: value = g.int_value ? "true" : "false"; has_value = true; break;
      case pf::DebugAnnotation::kStringValue:
        value = "'" + std::string(reinterpret_cast<const char*>(g.data), g.size) + "'";
        has_value = true;
        break;
      case pf::DebugAnnotation::kDictEntries: {
        std::string n;
        std::string v = RenderEntries(g, names, &n, true, ok);
        dict.push_back(n + "=" + v);
        has_value = true;
        break;
      }
      case pf::DebugAnnotation::kArrayValues: {
        std::string n;
        array.push_back(RenderEntries(g, names, &n, false, ok));
        has_value = true;
        break;
      }
      default: value = "?"; has_value = true;
    }
  }
  if (named != has_name || !has_value) *ok = false;  // nameless annotations are dropped by TP
  if (!dict.empty()) {
    value = "{";
    for (size_t i = 0; i < dict.size(); i++) value += (i ? "," : "") + dict[i];
    value += "}";
  } else if (!array.empty()) {
    value = "[";
    for (size_t i = 0; i < array.size(); i++) value += (i ? "," : "") + array[i];
    value += "]";
  }
  *out_name = name;
  return value;
}

struct Event {
  uint32_t seq;
  uint64_t ts;
  uint64_t type;
  std::string name;
  uint64_t track = 0;
  std::string loc;   // "file:line function" for a source_location_iid
  std::string args;  // "n=v;..."
};

struct Decoded {
  bool ok = true;
  std::vector<Event> events;
  std::map<uint64_t, std::pair<uint64_t, std::string>> tracks;  // uuid -> (parent, name)
  std::map<uint64_t, uint64_t> thread_tracks;                    // uuid -> tid
  int resets = 0;
  std::map<uint32_t, int> seqs;
};

// Decodes the trace, resolving interning per sequence since its last reset.
Decoded Decode(const std::string& path) {
  Decoded out;
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  struct SeqState {
    std::map<uint64_t, std::string> names, args, locs;
    uint64_t default_track = 0;
  };
  std::map<uint32_t, SeqState> st;
  std::map<uint32_t, vpsdk_test::SequenceTime> times;  // absolute times, per sequence
  ProtoDecoder top(bytes.data(), bytes.size());
  Field pk;
  while (top.Next(&pk)) {
    if (pk.id != pf::Trace::kPacket) continue;
    ProtoDecoder d(pk.data, pk.size);
    Field f;
    uint32_t seq = 0;
    uint64_t ts = 0, flags = 0;
    uint32_t clock = 0;
    std::vector<vpsdk_test::SnapshotClock> snapshot;
    bool has_snapshot = false;
    const uint8_t* te = nullptr;
    size_t te_size = 0;
    std::vector<Field> interned, descs;
    while (d.Next(&f)) {
      if (f.id == pf::TracePacket::kTrustedPacketSequenceId) seq = static_cast<uint32_t>(f.int_value);
      else if (f.id == pf::TracePacket::kTimestamp) ts = f.int_value;
      else if (f.id == pf::TracePacket::kTimestampClockId) clock = static_cast<uint32_t>(f.int_value);
      else if (f.id == pf::TracePacket::kClockSnapshot) {
        has_snapshot = true;
        if (!vpsdk_test::ReadSnapshotClocks(f.data, f.size, &snapshot)) out.ok = false;
      }
      else if (f.id == pf::TracePacket::kSequenceFlags) flags = f.int_value;
      else if (f.id == pf::TracePacket::kTrackEvent) te = f.data, te_size = f.size;
      else if (f.id == pf::TracePacket::kInternedData) interned.push_back(f);
      else if (f.id == pf::TracePacket::kTrackDescriptor) descs.push_back(f);
      else if (f.id == pf::TracePacket::kTracePacketDefaults) {
        ProtoDecoder dd(f.data, f.size);
        Field g;
        while (dd.Next(&g))
          if (g.id == pf::TracePacketDefaults::kTimestampClockId) {
            times[seq].SetDefaultClock(static_cast<uint32_t>(g.int_value));
          } else if (g.id == pf::TracePacketDefaults::kTrackEventDefaults) {
            ProtoDecoder ed(g.data, g.size);
            Field h;
            while (ed.Next(&h))
              if (h.id == pf::TrackEventDefaults::kTrackUuid) st[seq].default_track = h.int_value;
          }
      }
    }
    out.seqs[seq]++;
    if (has_snapshot) {
      if (!times[seq].Snapshot(snapshot)) out.ok = false;
    } else if (!times[seq].Absolute(ts, clock, &ts)) {
      out.ok = false;
    }
    if (flags & pf::TracePacket::kSeqIncrementalStateCleared) {
      uint64_t keep = st[seq].default_track;
      st[seq] = SeqState();
      st[seq].default_track = keep;
      out.resets++;
    }
    SeqState& s = st[seq];
    for (const Field& idf : interned) {
      ProtoDecoder id(idf.data, idf.size);
      Field g;
      while (id.Next(&g)) {
        ProtoDecoder e(g.data, g.size);
        Field h;
        uint64_t iid = 0, line = 0;
        std::string name, file, fn;
        while (e.Next(&h)) {
          if (h.id == 1) iid = h.int_value;
          else if (h.id == 2) (g.id == pf::InternedData::kSourceLocations ? file : name)
                                  .assign(reinterpret_cast<const char*>(h.data), h.size);
          else if (h.id == 3) fn.assign(reinterpret_cast<const char*>(h.data), h.size);
          else if (h.id == 4) line = h.int_value;
        }
        if (g.id == pf::InternedData::kEventNames) s.names[iid] = name;
        else if (g.id == pf::InternedData::kDebugAnnotationNames) s.args[iid] = name;
        else if (g.id == pf::InternedData::kSourceLocations)
          s.locs[iid] = file + ":" + std::to_string(line) + " " + fn;
      }
    }
    for (const Field& df : descs) {
      ProtoDecoder dd(df.data, df.size);
      Field g;
      uint64_t uuid = 0, parent = 0, tid = 0;
      std::string name;
      bool thread = false;
      while (dd.Next(&g)) {
        if (g.id == pf::TrackDescriptor::kUuid) uuid = g.int_value;
        else if (g.id == pf::TrackDescriptor::kParentUuid) parent = g.int_value;
        else if (g.id == pf::TrackDescriptor::kName) name.assign(reinterpret_cast<const char*>(g.data), g.size);
        else if (g.id == pf::TrackDescriptor::kThread) {
          thread = true;
          ProtoDecoder td(g.data, g.size);
          Field h;
          while (td.Next(&h))
            if (h.id == pf::ThreadDescriptor::kTid) tid = h.int_value;
        }
      }
      if (thread) out.thread_tracks[uuid] = tid;
      else out.tracks[uuid] = {parent, name};
    }
    if (!te) continue;
    Event ev{seq, ts, 0, "", s.default_track, "", ""};
    ProtoDecoder td(te, te_size);
    Field fe;
    while (td.Next(&fe)) {
      if (fe.id == pf::TrackEvent::kType) ev.type = fe.int_value;
      else if (fe.id == pf::TrackEvent::kTrackUuid) ev.track = fe.int_value;
      else if (fe.id == pf::TrackEvent::kNameIid) {
        auto it = s.names.find(fe.int_value);
        if (it == s.names.end()) out.ok = false;
        else ev.name = it->second;
      } else if (fe.id == pf::TrackEvent::kName) {
        ev.name.assign(reinterpret_cast<const char*>(fe.data), fe.size);
      } else if (fe.id == pf::TrackEvent::kSourceLocationIid) {
        auto it = s.locs.find(fe.int_value);
        if (it == s.locs.end()) out.ok = false;
        else ev.loc = it->second;
      } else if (fe.id == pf::TrackEvent::kDebugAnnotations) {
        std::string n;
        std::string v = RenderEntries(fe, s.args, &n, true, &out.ok);
        ev.args += n + "=" + v + ";";
      }
    }
    out.events.push_back(ev);
  }
  if (top.error()) out.ok = false;
  return out;
}

vp_session* Start(const std::string& path, int32_t mode, uint32_t kb, uint32_t seq_base = 0) {
  vp_config* c = vp_config_new();
  vp_error e;
  vp_config_set_output(c, path.c_str(), &e);
  vp_config_set_buffer(c, kb, mode, &e);
  CHECK(vp_config_set_sequence_base(c, seq_base, &e) == VP_OK);
  vp_session* s = nullptr;
  CHECK(vp_session_start(c, &s, &e) == VP_OK);
  vp_config_free(c);
  return s;
}

void Stop(vp_session* s) {
  vp_error e;
  CHECK(vp_session_stop(s, &e) == VP_OK);
  vp_session_free(s);
}

// Slices per track in timestamp order: checks nesting; returns "name@depth" list.
std::vector<std::string> Nest(const Decoded& d, uint64_t track, bool* balanced) {
  std::vector<std::string> out, stack;
  *balanced = true;
  for (const Event& e : d.events) {
    if (e.track != track) continue;
    if (e.type == pf::TrackEvent::kTypeSliceBegin) {
      out.push_back(e.name + "@" + std::to_string(stack.size()));
      stack.push_back(e.name);
    } else if (e.type == pf::TrackEvent::kTypeSliceEnd) {
      if (stack.empty()) *balanced = false;
      else stack.pop_back();
    }
  }
  if (!stack.empty()) *balanced = false;
  return out;
}

void TestFuncSlicesAndSourceLocations() {
  std::string path = TmpPath("funcs");
  vp_func_enter(0);  // entered before any session: its exit writes nothing
  vp_session* s = Start(path, VP_BUFFER_STREAM, 1024, 5000);
  uint32_t outer = vp_func_register("outer", 5, "/src/app.py", 11, 10);
  uint32_t inner = vp_func_register("Klass.inner", 11, "/src/app.py", 11, 20);
  uint32_t cfun = vp_func_register("len", 3, nullptr, 0, 0);
  CHECK(outer && inner && cfun && outer != inner);
  vp_func_enter(outer);
  for (int i = 0; i < 3; i++) {
    vp_func_enter(inner);
    vp_func_enter(cfun);
    vp_func_exit();
    vp_func_exit();
  }
  CHECK(vp_func_depth() == 2);
  // Keyed: an end ends the innermost call only when it was entered with
  // the same key (a profiler's untraced function ends nothing).
  int k1 = 0, k2 = 0;
  vp_func_enter_keyed(inner, &k1);
  vp_func_enter_keyed(cfun, &k2);
  CHECK(vp_func_exit_keyed(&k1) == 0);  // not the innermost
  CHECK(vp_func_exit_keyed(nullptr) == 0);
  CHECK(vp_func_exit_keyed(&k2) == 1);
  CHECK(vp_func_exit_keyed(&k1) == 1);
  CHECK(vp_func_exit_keyed(&k1) == 0);  // outer (no key) is the innermost now
  CHECK(vp_func_depth() == 2);
  vp_func_enter(inner);
  vp_func_close_all();  // ends inner and outer now; their exits write nothing
  vp_func_exit();
  vp_func_exit();
  vp_func_exit();  // the frame from before the session
  vp_func_exit();  // nothing left: ignored
  CHECK(vp_func_depth() == 0);
  Stop(s);
  Decoded d = Decode(path);
  CHECK(d.ok);
  bool balanced;
  uint64_t track = d.events.empty() ? 0 : d.events[0].track;
  std::vector<std::string> nest = Nest(d, track, &balanced);
  CHECK(balanced);
  std::vector<std::string> want = {"outer@0", "Klass.inner@1", "len@2", "Klass.inner@1", "len@2",
                                   "Klass.inner@1", "len@2", "Klass.inner@1", "len@2",
                                   "Klass.inner@1"};
  CHECK(nest == want);
  for (const Event& e : d.events) {
    if (e.type != pf::TrackEvent::kTypeSliceBegin) continue;
    if (e.name == "outer") CHECK(e.loc == "/src/app.py:10 outer");
    if (e.name == "Klass.inner") CHECK(e.loc == "/src/app.py:20 Klass.inner");
    if (e.name == "len") CHECK(e.loc.empty());
    CHECK(e.seq > 5000 && e.seq < 5000 + 1024);  // the sequence base
  }
  std::remove(path.c_str());
}

void TestMinDurationDepthAndResets() {
  std::string path = TmpPath("mindur");
  vp_session* s = Start(path, VP_BUFFER_RING, 64);
  uint32_t f = vp_func_register("f", 1, "/a.py", 5, 1);
  uint32_t slow = vp_func_register("slow", 4, "/a.py", 5, 2);
  vp_profile_set_options(2000000 /* 2 ms */, 4);
  for (int i = 0; i < 2000; i++) {  // short calls: all dropped
    vp_func_enter(f);
    vp_func_exit();
  }
  vp_func_enter(f);  // deciding: written once `slow` is
  vp_func_enter(f);
  vp_func_enter(slow);
  usleep(3000);
  vp_func_exit();
  vp_func_enter(f);  // short, inside a written caller: dropped
  vp_func_exit();
  vp_func_exit();
  vp_func_exit();
  for (int d = 0; d < 8; d++) vp_func_enter(f);  // deeper than 4: not written
  usleep(2500);
  for (int d = 0; d < 8; d++) vp_func_exit();
  vp_profile_set_options(0, 0);
  // Many calls through a 64 KiB ring: every chunk starts with a reset and
  // must define the names and source locations it uses again.
  for (int i = 0; i < 20000; i++) {
    vp_func_enter(f);
    vp_func_exit();
  }
  Stop(s);
  Decoded d = Decode(path);
  CHECK(d.ok);
  CHECK(d.resets > 3);
  uint64_t prev = 0;
  bool monotonic = true;
  for (const Event& e : d.events) {
    monotonic &= e.ts >= prev;
    prev = e.ts;
    if (e.type == pf::TrackEvent::kTypeSliceBegin) CHECK(e.loc == "/a.py:1 f" || e.loc == "/a.py:2 slow");
  }
  CHECK(monotonic);
  std::remove(path.c_str());

  path = TmpPath("mindur2");
  s = Start(path, VP_BUFFER_STREAM, 1024);
  vp_profile_set_options(2000000, 3);
  for (int i = 0; i < 100; i++) {
    vp_func_enter(f);
    vp_func_exit();
  }
  vp_func_enter(f);
  vp_func_enter(f);
  vp_func_enter(slow);
  usleep(3000);
  vp_func_exit();
  vp_func_enter(f);
  vp_func_exit();
  vp_func_exit();
  vp_func_exit();
  for (int k = 0; k < 5; k++) vp_func_enter(f);
  usleep(2500);
  for (int k = 0; k < 5; k++) vp_func_exit();
  vp_profile_set_options(0, 0);
  Stop(s);
  d = Decode(path);
  bool balanced;
  std::vector<std::string> nest = Nest(d, d.events.empty() ? 0 : d.events[0].track, &balanced);
  CHECK(balanced);
  std::vector<std::string> want = {"f@0", "f@1", "slow@2", "f@0", "f@1", "f@2"};
  CHECK(nest == want);
  prev = 0;
  for (const Event& e : d.events) {
    CHECK(e.ts >= prev);
    prev = e.ts;
  }
  std::remove(path.c_str());
}

void TestNestedArgs() {
  std::string path = TmpPath("args");
  vp_session* s = Start(path, VP_BUFFER_STREAM, 1024);
  uint32_t d = vp_intern("d", 1), a = vp_intern("a", 1), b = vp_intern("b", 1);
  vp_arg args[9];
  std::memset(args, 0, sizeof(args));
  args[0] = vp_arg{d, VP_ARG_DICT, 0, 3, 0, nullptr, 0};
  args[1] = vp_arg{a, VP_ARG_INT, -1, 0, 0, nullptr, 0};
  args[2] = vp_arg{b, VP_ARG_ARRAY, 0, 2, 0, nullptr, 0};
  args[3] = vp_arg{0, VP_ARG_BOOL, 1, 0, 0, nullptr, 0};
  args[4] = vp_arg{0, VP_ARG_STRING, 0, 0, 0, "s", 1};
  args[5] = vp_arg{0, VP_ARG_NAME, 0, 0, 0, "inline key", 10};
  args[6] = vp_arg{0, VP_ARG_UINT, 0, 7, 0, nullptr, 0};
  // a container claiming more children than there are: keeps what exists
  args[7] = vp_arg{a, VP_ARG_ARRAY, 0, 1000000, 0, nullptr, 0};
  args[8] = vp_arg{0, VP_ARG_INT, 5, 0, 0, nullptr, 0};
  vp_event ev;
  std::memset(&ev, 0, sizeof(ev));
  ev.type = VP_EVENT_INSTANT;
  ev.name = vp_intern("nested", 6);
  ev.args = args;
  ev.nargs = 9;
  vp_emit(&ev);
  // 40 levels of dicts: written down to 32, the rest skipped
  std::vector<vp_arg> deep(41);
  for (int i = 0; i < 40; i++) deep[i] = vp_arg{d, VP_ARG_DICT, 0, 1, 0, nullptr, 0};
  deep[40] = vp_arg{a, VP_ARG_INT, 1, 0, 0, nullptr, 0};
  ev.name = vp_intern("deep", 4);
  ev.args = deep.data();
  ev.nargs = 41;
  vp_emit(&ev);
  Stop(s);
  Decoded dd = Decode(path);
  CHECK(dd.ok);
  std::map<std::string, std::string> got;
  for (const Event& e : dd.events) got[e.name] = e.args;
  CHECK(got["nested"] == "d={a=-1,b=[true,'s'],inline key=7u};a=[5];");
  CHECK(got.count("deep") == 1 && got["deep"].find("a=1") == std::string::npos);
  CHECK(got["deep"].find("d='\xe2\x80\xa6'") != std::string::npos);  // the level past 32
  std::remove(path.c_str());
}

void TestTaskTracksRecycled() {
  std::string path = TmpPath("tasks");
  vp_session* s = Start(path, VP_BUFFER_STREAM, 1024);
  uint32_t name = vp_intern("step", 4);
  vp_error e;
  uint32_t t1 = 0, t2 = 0, t3 = 0;
  CHECK(vp_track_new_for_thread("Task-1", &t1, &e) == VP_OK);
  uint64_t u1 = vp_track_uuid(t1);
  vp_event ev;
  std::memset(&ev, 0, sizeof(ev));
  ev.name = name;
  ev.track = t1;
  ev.type = VP_EVENT_BEGIN;
  vp_emit(&ev);
  ev.type = VP_EVENT_END;
  vp_emit(&ev);
  vp_track_free(t1);
  vp_track_free(t1);  // twice: harmless
  CHECK(vp_track_new_for_thread("Task-2", &t2, &e) == VP_OK);
  CHECK(t2 == t1 && vp_track_uuid(t2) != u1);  // the handle reused, a new track
  CHECK(vp_track_new_for_thread("Task-3", &t3, &e) == VP_OK);
  CHECK(t3 != t2);
  ev.track = t2;
  ev.type = VP_EVENT_BEGIN;
  vp_emit(&ev);
  ev.type = VP_EVENT_END;
  vp_emit(&ev);
  vp_track_free(VP_TRACK_PROCESS);  // not a task track: ignored
  Stop(s);
  Decoded d = Decode(path);
  CHECK(d.ok);
  uint64_t thread = d.thread_tracks.empty() ? 0 : d.thread_tracks.begin()->first;
  CHECK(d.tracks.count(u1) && d.tracks[u1].second == "Task-1" && d.tracks[u1].first == thread);
  uint64_t u2 = vp_track_uuid(t2);
  CHECK(d.tracks.count(u2) && d.tracks[u2].second == "Task-2" && d.tracks[u2].first == thread);
  int on1 = 0, on2 = 0;
  for (const Event& x : d.events) {
    on1 += x.track == u1;
    on2 += x.track == u2;
  }
  CHECK(on1 == 2 && on2 == 2);
  std::remove(path.c_str());
}

}  // namespace

int main() {
  TestFuncSlicesAndSourceLocations();
  TestMinDurationDepthAndResets();
  TestNestedArgs();
  TestTaskTracksRecycled();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
