// The timeline model of system traces: per-CPU scheduling rows (ftrace
// sched_switch and compact_sched), CPU frequency, atrace slices and counters
// (ftrace print), process memory (process_stats), and the process and thread
// names of process trees and ftrace that label them; and the track
// descriptors (track-event tracks, processes, threads, counters).
#include <algorithm>
#include <cstdlib>
#include <string>

#include "inspect/timeline_impl.h"
#include "merge/proto_fields.h"

namespace vpinspect {

using tl::Time;
using vpmerge::Field;
using vpmerge::ProtoDecoder;
namespace pf = vpsdk::pf;
namespace proto = vpsdk::proto;
namespace fld = vpmerge::fld;

namespace {
// Kinds of synthetic tracks (SyntheticTrack's first argument; 0 is a sequence's).
enum : int { kCpuRow = 1, kCpuFreq = 2, kAtraceThread = 3, kAtraceCounter = 4, kProcessMemory = 5 };

namespace SchedSwitch { constexpr uint32_t kPrevComm = 1, kPrevPid = 2, kNextComm = 5, kNextPid = 6; }
namespace CpuFrequency { constexpr uint32_t kState = 1, kCpuId = 2; }
namespace Print { constexpr uint32_t kBuf = 2; }
namespace TaskNewtask { constexpr uint32_t kPid = 1, kComm = 2; }
namespace TaskRename { constexpr uint32_t kPid = 1, kNewcomm = 3; }
namespace Compact { constexpr uint32_t kInternTable = 5, kNextCommIndex = 6; }
namespace ProcessTreeThread { constexpr uint32_t kName = 2; }
namespace ProcessStatsProcess { constexpr uint32_t kVmRssKb = 3; }

constexpr uint32_t kIsIncremental = 5;                  // CounterDescriptor.is_incremental
constexpr uint32_t kStaticName = 10, kAtraceName = 13;  // TrackDescriptor
constexpr uint32_t kCmdline = 2;                        // ProcessDescriptor.cmdline

std::string Text(const Field& f) { return std::string(reinterpret_cast<const char*>(f.data), f.size); }

// A decimal integer at p (an optional '-'); false when there is none.
bool ParseInt(const char* p, const char* end, int64_t* out) {
  bool neg = p < end && *p == '-';
  if (neg) p++;
  if (p == end) return false;
  uint64_t v = 0;
  for (; p < end; p++) {
    if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(*p - '0');
  }
  *out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return true;
}
}  // namespace

void Timeline::Impl::Ftrace(const uint8_t* data, size_t size, uint32_t machine) {
  ProtoDecoder d(data, size);
  Field g;
  int64_t cpu = 0;
  while (d.Next(&g)) {
    if (g.id == fld::FtraceEventBundle::kCpu && g.type == proto::kVarint) cpu = g.as_int64();
    // Other ftrace clocks than BOOTTIME are not modelled.
    if (g.id == fld::FtraceEventBundle::kFtraceClock && g.int_value != 0) return;
  }
  ProtoDecoder e(data, size);
  while (e.Next(&g)) {
    if (g.type != proto::kLengthDelimited) continue;
    if (g.id == fld::FtraceEventBundle::kEvent) FtraceEvent(g.data, g.size, machine, cpu);
    else if (g.id == fld::FtraceEventBundle::kCompactSched) CompactSched(g.data, g.size, machine, cpu);
  }
}

void Timeline::Impl::FtraceEvent(const uint8_t* data, size_t size, uint32_t machine, int64_t cpu) {
  ProtoDecoder d(data, size);
  Field g, body{};
  uint64_t raw = 0;
  int64_t pid = 0;
  bool has_ts = false;
  uint32_t kind = 0;
  while (d.Next(&g)) {
    if (g.id == fld::FtraceEvent::kTimestamp && g.type == proto::kVarint) raw = g.int_value, has_ts = true;
    else if (g.id == fld::FtraceEvent::kPid && g.type == proto::kVarint) pid = g.as_int64();
    else if (g.type == proto::kLengthDelimited) body = g, kind = g.id;
  }
  if (!kind) return;
  ProtoDecoder b(body.data, body.size);
  Field h;
  if (kind == fld::FtraceEvent::kTaskNewtask || kind == fld::FtraceEvent::kTaskRename) {
    int64_t tid = 0;
    std::string comm;
    bool has_comm = false;
    uint32_t comm_id = kind == fld::FtraceEvent::kTaskNewtask ? TaskNewtask::kComm : TaskRename::kNewcomm;
    while (b.Next(&h)) {
      if (h.id == TaskNewtask::kPid && h.type == proto::kVarint) tid = h.as_int64();
      else if (h.id == comm_id && h.type == proto::kLengthDelimited) comm = Text(h), has_comm = true;
    }
    if (has_comm && tid > 0) thread_names[{machine, tid}] = comm;
    return;
  }
  if (kind != fld::FtraceEvent::kSchedSwitch && kind != fld::FtraceEvent::kCpuFrequency &&
      kind != fld::FtraceEvent::kPrint)
    return;
  if (!has_ts) return;
  bool ok;
  Time ts = ToTime(machine, nullptr, pf::BuiltinClock::kBoottime, raw, &ok);
  if (!ok) return;
  if (kind == fld::FtraceEvent::kSchedSwitch) {
    int64_t prev = 0, next = 0;
    Field prev_comm{}, next_comm{};
    bool has_prev_comm = false;
    while (b.Next(&h)) {
      bool len = h.type == proto::kLengthDelimited;
      if (h.id == SchedSwitch::kPrevPid && !len) prev = h.as_int64();
      else if (h.id == SchedSwitch::kNextPid && !len) next = h.as_int64();
      else if (h.id == SchedSwitch::kPrevComm && len) prev_comm = h, has_prev_comm = true;
      else if (h.id == SchedSwitch::kNextComm && len) next_comm = h;
    }
    if (has_prev_comm && prev > 0) thread_names[{machine, prev}] = Text(prev_comm);
    const char* comm = reinterpret_cast<const char*>(next_comm.data);
    if (next > 0 && comm) thread_names[{machine, next}] = std::string(comm, next_comm.size);
    Switch(machine, cpu, ts, next, comm, next_comm.size);
  } else if (kind == fld::FtraceEvent::kCpuFrequency) {
    int64_t state = 0, id = -1;
    while (b.Next(&h)) {
      if (h.id == CpuFrequency::kState && h.type == proto::kVarint) state = h.as_int64();
      else if (h.id == CpuFrequency::kCpuId && h.type == proto::kVarint) id = h.as_int64();
    }
    if (id < 0) return;
    uint32_t ti = SyntheticTrack(kCpuFreq, machine, id, std::string());
    tl::Track& t = tracks[ti];
    if (t.kind == tl::kNone) {
      t.kind = tl::kCounter;
      t.cpu = id;
      t.name = "cpu " + std::to_string(id) + " frequency (kHz)";
    }
    AddPoint(ti, ts, tl::Value{0, state, true});
    Seen(ts);
  } else {
    while (b.Next(&h))
      if (h.id == Print::kBuf && h.type == proto::kLengthDelimited)
        Print(reinterpret_cast<const char*>(h.data), h.size, machine, pid, ts);
  }
}

// Compact sched_switch records: timestamps delta-encoded (the first from 0),
// next task ids, and their names as indices into the bundle's intern table.
void Timeline::Impl::CompactSched(const uint8_t* data, size_t size, uint32_t machine, int64_t cpu) {
  std::vector<std::pair<const uint8_t*, size_t>> table;
  std::vector<uint64_t> stamps, pids, comms;
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g)) {
    if (g.id == Compact::kInternTable && g.type == proto::kLengthDelimited)
      table.emplace_back(g.data, g.size);
    else if (g.id == fld::CompactSched::kSwitchTimestamp)
      vpmerge::ForEachVarint(g, [&](uint64_t v) { stamps.push_back(v); });
    else if (g.id == fld::CompactSched::kSwitchNextPid)
      vpmerge::ForEachVarint(g, [&](uint64_t v) { pids.push_back(v); });
    else if (g.id == Compact::kNextCommIndex)
      vpmerge::ForEachVarint(g, [&](uint64_t v) { comms.push_back(v); });
  }
  uint64_t raw = 0;
  for (size_t i = 0; i < stamps.size() && i < pids.size(); i++) {
    raw += stamps[i];
    int64_t next = static_cast<int32_t>(pids[i]);
    const char* comm = nullptr;
    size_t comm_size = 0;
    if (i < comms.size() && comms[i] < table.size()) {
      comm = reinterpret_cast<const char*>(table[comms[i]].first);
      comm_size = table[comms[i]].second;
      if (next > 0) thread_names[{machine, next}] = std::string(comm, comm_size);
    }
    bool ok;
    Time ts = ToTime(machine, nullptr, pf::BuiltinClock::kBoottime, raw, &ok);
    if (ok) Switch(machine, cpu, ts, next, comm, comm_size);
  }
}

// A CPU switches to `next_tid` (0: idle): the running slice ends, the next begins.
void Timeline::Impl::Switch(uint32_t machine, int64_t cpu, Time ts, int64_t next_tid,
                            const char* comm, size_t comm_size) {
  auto it = cpus.find({machine, cpu});
  uint32_t ti;
  if (it != cpus.end()) {
    ti = it->second;
  } else {
    ti = SyntheticTrack(kCpuRow, machine, cpu, std::string());
    cpus.emplace(std::make_pair(machine, cpu), ti);
    tracks[ti].kind = tl::kCpu;
    tracks[ti].cpu = cpu;
    tracks[ti].name = "cpu " + std::to_string(cpu);
  }
  tl::Track& t = tracks[ti];
  if (!t.stack.empty()) {
    tl::Open o = t.stack.back();
    t.stack.clear();
    AddSliceAt(ti, o.ts, ts, 0, o.name, 0);
  }
  if (next_tid > 0) {
    std::string label = comm ? std::string(comm, comm_size) : std::string();
    label += (label.empty() ? "[" : " [") + std::to_string(next_tid) + "]";
    tracks[ti].stack.push_back({ts, Name(label)});
    tracks[ti].runs[next_tid]++;
  }
  Seen(ts);
}

// atrace through ftrace print: "B|pid|name" begins a slice on the writing
// thread, "E|pid" ends it, "I|pid|name" is an instant, "C|pid|name|value" a
// process counter. Async ("S", "F") and other records are not modelled.
void Timeline::Impl::Print(const char* p, size_t n, uint32_t machine, int64_t tid, Time ts) {
  while (n && (p[n - 1] == '\n' || p[n - 1] == '\0')) n--;
  if (n == 0 || tid <= 0 || (n > 1 && p[1] != '|')) return;
  const char phase = p[0];
  const char* stop = p + n;
  const char* f1 = n > 2 ? p + 2 : stop;  // pid
  const char* bar = f1;
  while (bar < stop && *bar != '|') bar++;
  int64_t pid = 0;
  bool has_pid = ParseInt(f1, bar, &pid) && pid > 0;
  const char* name = bar < stop ? bar + 1 : stop;
  auto thread = [&]() {
    uint32_t ti = SyntheticTrack(kAtraceThread, machine, tid, std::string());
    tl::Track& t = tracks[ti];
    if (t.kind == tl::kNone) t.kind = tl::kThread, t.tid = tid, t.has_tid = true;
    if (has_pid && !t.has_pid) t.pid = pid, t.has_pid = true;
    return ti;
  };
  if (phase == 'B' || phase == 'I' || phase == 'E') {
    // Paired once sorted by time (a thread's events come in the bundles of
    // the CPUs it ran on, not in time order).
    if (phase != 'E' && !has_pid) return;
    uint32_t ti = thread();
    uint32_t label = phase == 'E' ? 0 : Name(name, static_cast<size_t>(stop - name));
    atrace.push_back({ts, ti, label, phase, atrace.size()});
    if (has_pid) thread_pid[{machine, tid}] = pid;
  } else if (phase == 'C') {
    const char* vbar = name;
    while (vbar < stop && *vbar != '|') vbar++;
    int64_t v;
    if (!has_pid || vbar == stop) return;
    const char* vend = vbar + 1;
    while (vend < stop && *vend != '|') vend++;  // "C|pid|name|value|category"
    if (!ParseInt(vbar + 1, vend, &v)) return;
    uint32_t ti = SyntheticTrack(kAtraceCounter, machine, pid, std::string(name, vbar));
    tl::Track& t = tracks[ti];
    if (t.kind == tl::kNone) {
      t.kind = tl::kCounter, t.owns = true, t.pid = pid, t.has_pid = true;
      t.name.assign(name, vbar);
    }
    AddPoint(ti, ts, tl::Value{0, v, true});
  } else {
    return;
  }
  Seen(ts);
}

void Timeline::Impl::ProcessTree(const uint8_t* data, size_t size, uint32_t machine) {
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g)) {
    if (g.type != proto::kLengthDelimited) continue;
    bool proc = g.id == fld::ProcessTree::kProcesses;
    if (!proc && g.id != fld::ProcessTree::kThreads) continue;
    ProtoDecoder e(g.data, g.size);
    Field h;
    int64_t id = 0, tgid = 0;
    std::string name;
    bool has_name = false;
    while (e.Next(&h)) {
      bool len = h.type == proto::kLengthDelimited;
      if (h.id == 1 && !len) id = h.as_int64();  // Process.pid, Thread.tid
      else if (!proc && h.id == fld::ProcessTree::Thread::kTgid && !len) tgid = h.as_int64();
      else if (proc && h.id == fld::ProcessTree::Process::kCmdline && len && !has_name)
        name = Text(h), has_name = true;  // the first: the program
      else if (!proc && h.id == ProcessTreeThread::kName && len) name = Text(h), has_name = true;
    }
    if (id <= 0) continue;
    if (proc) {
      thread_pid[{machine, id}] = id;
      if (has_name && !name.empty()) tree_names[{machine, id}] = name;
    } else {
      if (tgid > 0) thread_pid[{machine, id}] = tgid;
      if (has_name && !name.empty()) thread_names[{machine, id}] = name;
    }
  }
}

// Per process, its resident memory (bytes) as a counter under the process.
void Timeline::Impl::ProcessStats(const uint8_t* data, size_t size, uint32_t machine, Time ts) {
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g)) {
    if (g.id != fld::ProcessStats::kProcesses || g.type != proto::kLengthDelimited) continue;
    ProtoDecoder e(g.data, g.size);
    Field h;
    int64_t pid = 0, rss = -1;
    while (e.Next(&h)) {
      if (h.type != proto::kVarint) continue;
      if (h.id == fld::ProcessStats::Process::kPid) pid = h.as_int64();
      else if (h.id == ProcessStatsProcess::kVmRssKb) rss = h.as_int64();
    }
    if (pid <= 0 || rss < 0 || rss > INT64_MAX / 1024) continue;
    uint32_t ti = SyntheticTrack(kProcessMemory, machine, pid, "mem.rss");
    tl::Track& t = tracks[ti];
    if (t.kind == tl::kNone) t.kind = tl::kCounter, t.owns = true, t.pid = pid, t.has_pid = true, t.name = "mem.rss";
    AddPoint(ti, ts, tl::Value{0, rss * 1024, true});
    Seen(ts);
  }
}

// The atrace slices of each thread, in time order (from Finish).
void Timeline::Impl::AtraceSlices() {
  std::vector<tl::AtraceEvent> events;
  for (tl::AtraceEvent& e : atrace) {
    int64_t t;
    if (Resolve(e.ts, &t)) e.ts = t, events.push_back(e);
  }
  atrace.clear();
  std::sort(events.begin(), events.end(), [](const tl::AtraceEvent& a, const tl::AtraceEvent& b) {
    return a.track != b.track ? a.track < b.track : a.ts != b.ts ? a.ts < b.ts : a.order < b.order;
  });
  for (const tl::AtraceEvent& e : events) {
    std::vector<tl::Open>& stack = tracks[e.track].stack;
    if (e.phase == 'B') {
      stack.push_back({e.ts, e.name});
    } else if (e.phase == 'I') {
      AddSlice(e.track, e.ts, 0, e.name, static_cast<uint32_t>(stack.size()));
    } else if (!stack.empty()) {
      tl::Open o = stack.back();
      stack.pop_back();
      AddSlice(e.track, o.ts, std::max<int64_t>(0, e.ts - o.ts), o.name, static_cast<uint32_t>(stack.size()));
    }
  }
}

// --- track descriptors ----------------------------------------------------------------

void Timeline::Impl::Descriptor(const uint8_t* data, size_t size, uint32_t machine) {
  ProtoDecoder d(data, size);
  Field g, proc{}, thread{}, counter{};
  bool has_uuid = false, has_name = false, has_parent = false;
  bool has_proc = false, has_thread = false, has_counter = false;
  uint64_t uuid = 0, parent = 0;
  std::string name;
  while (d.Next(&g)) {
    bool len = g.type == proto::kLengthDelimited;
    switch (g.id) {
      case pf::TrackDescriptor::kUuid: uuid = g.int_value, has_uuid = !len; break;
      case pf::TrackDescriptor::kName: case kStaticName: case kAtraceName:
        if (len) name = Text(g), has_name = true;
        break;
      case pf::TrackDescriptor::kParentUuid: parent = g.int_value, has_parent = !len; break;
      case pf::TrackDescriptor::kProcess: proc = g, has_proc = len; break;
      case pf::TrackDescriptor::kThread: thread = g, has_thread = len; break;
      case pf::TrackDescriptor::kCounter: counter = g, has_counter = true; break;
      default: break;
    }
  }
  if (d.error() || !has_uuid) return;
  tl::Track& t = tracks[TrackOf(uuid)];
  t.desc = true;
  if (machine) t.machine = machine;
  if (has_name) t.name = name;
  if (has_parent) t.parent = parent, t.has_parent = true;
  if (has_thread) {
    t.kind = tl::kThread;
    ProtoDecoder e(thread.data, thread.size);
    Field h;
    while (e.Next(&h)) {
      bool len = h.type == proto::kLengthDelimited;
      if (h.id == pf::ThreadDescriptor::kPid && !len) t.pid = h.as_int64(), t.has_pid = true;
      else if (h.id == pf::ThreadDescriptor::kTid && !len) t.tid = h.as_int64(), t.has_tid = true;
      else if (h.id == pf::ThreadDescriptor::kThreadName && len) t.tname = Text(h), t.has_tname = true;
    }
  } else if (has_proc) {
    t.kind = tl::kProcess;
    ProtoDecoder e(proc.data, proc.size);
    Field h;
    while (e.Next(&h)) {
      bool len = h.type == proto::kLengthDelimited;
      if (h.id == pf::ProcessDescriptor::kPid && !len) {
        t.pid = h.as_int64(), t.has_pid = true;
      } else if (h.id == pf::ProcessDescriptor::kProcessName && len) {
        t.pname = Text(h), t.has_pname = true;
      } else if (h.id == kCmdline && len && !t.has_pname) {  // when no process_name
        t.pname = Text(h), t.has_pname = true;
      }
    }
    if (t.has_pid && !t.pname.empty()) process_names[{t.machine, t.pid}] = t.pname;
  } else if (has_counter) {
    t.kind = tl::kCounter;
    if (counter.type == proto::kLengthDelimited) {
      ProtoDecoder e(counter.data, counter.size);
      Field h;
      while (e.Next(&h))
        if (h.id == kIsIncremental && h.type == proto::kVarint) t.counter_incremental = h.int_value != 0;
    }
  } else if (t.kind == tl::kNone) {
    t.kind = tl::kCustom;
  }
}

}  // namespace vpinspect
