#include "merge.h"

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <system_error>
#include <thread>
#include <unordered_set>

#include <sys/stat.h>

#include "copy_side.h"
#include "json.h"
#include "progress.h"
#include "proto_fields.h"
#include "rewrite.h"
#include "scan.h"
#include "trace_io.h"

namespace vpmerge {
namespace {

struct Side {
  std::string role;  // "main" or "moved"
  std::string name;  // guest name, or "host"
  bool is_guest = false;
  InputSummary summary;
  Transform transform;
  Alignment alignment;
  RewriteStats stats;
  size_t uuids_remapped = 0, flows_remapped = 0;
  std::unique_ptr<IdRemap> uuid_remap, flow_remap;
  size_t shared_flow_ids = 0;  // its flow ids the main also uses
  // What a first plan would have put before the main clock's zero.
  uint64_t below_zero_packets = 0, below_zero_timestamps = 0;
  // Where its buffers are in the merged trace's stats: [first, first + count).
  uint32_t stats_first_buffer = 0, stats_buffers = 0;
};

// Id ranges that keep the moved sides apart from the main one.
struct Layout {
  int64_t pid_base = 1000000;
  uint64_t cpu_base = 100;
};

int64_t PidBase(int64_t max_pid) {
  int64_t base = 1000000;  // the original's readable decimal offset
  while (base <= max_pid) base *= 10;
  return base;
}

// Rewrites one side into `out`, or only counts what the rewrite would do
// when `out` is null (a dry run).
Status CopySide(Side& side, unsigned threads, OutputFile* out, Progress* progress) {
  Transform& t = side.transform;
  // Its new ids, from the ids its scan found (and the ones taken so far).
  if (t.remap_uuids) {
    side.uuid_remap.reset(new IdRemap());
    side.uuid_remap->Init(side.summary.uuids, t.uuid_salt, t.reserved_uuids);
    t.uuid_remap = side.uuid_remap.get();
  }
  if (t.remap_flows) {
    side.flow_remap.reset(new IdRemap());
    side.flow_remap->Init(side.summary.flow_ids, t.uuid_salt ^ 0x5bd1e9955bd1e995ull, t.reserved_flows);
    t.flow_remap = side.flow_remap.get();
  }
  Status st = RewriteSide(side.summary, t, threads, out, progress, &side.stats);
  side.uuids_remapped = side.uuid_remap ? side.uuid_remap->size() : 0;
  side.flows_remapped = side.flow_remap ? side.flow_remap->size() : 0;
  return st;
}

// The alignment, recorded in the output for inspect and the UI: a track
// "vperfetto merge" on a sequence of its own, with one instant per guest
// ("vperfetto_merge_alignment": guest, method, offset_ns, approximate,
// spread_ns) at the main trace's first timestamp.
void AlignmentRecord(const std::vector<Side>& guests, const Side& main, uint32_t seq,
                     std::unordered_set<uint64_t>* used, ByteBuffer* out) {
  uint64_t uuid = 0x76706d65726765ull;  // "vpmerge"
  while (used->count(uuid)) uuid = uuid * 0x9e3779b97f4a7c15ull + 1;
  used->insert(uuid);
  uint64_t ts = 0;
  uint64_t first;
  if (FirstBoottime(main.summary, &first)) ts = first;
  auto packet = [&](auto&& body) {
    ByteBuffer b;
    if (ts) b.VarintField(pf::TracePacket::kTimestamp, ts);
    b.VarintField(pf::TracePacket::kTrustedPacketSequenceId, seq);
    body(b);
    out->BytesField(1, b.data(), b.size());
  };
  packet([&](ByteBuffer& b) {
    b.VarintField(pf::TracePacket::kSequenceFlags, pf::TracePacket::kSeqIncrementalStateCleared);
    size_t td = b.BeginNested(pf::TracePacket::kTrackDescriptor);
    b.VarintField(pf::TrackDescriptor::kUuid, uuid);
    static const char kName[] = "vperfetto merge";
    b.BytesField(pf::TrackDescriptor::kName, kName, sizeof(kName) - 1);
    b.EndNested(td);
  });
  for (const Side& g : guests) {
    packet([&](ByteBuffer& b) {
      size_t te = b.BeginNested(pf::TracePacket::kTrackEvent);
      b.VarintField(pf::TrackEvent::kType, pf::TrackEvent::kTypeInstant);
      b.VarintField(pf::TrackEvent::kTrackUuid, uuid);
      static const char kEvent[] = "vperfetto_merge_alignment";
      b.BytesField(pf::TrackEvent::kName, kEvent, sizeof(kEvent) - 1);
      auto str = [&](const char* k, const std::string& v) {
        size_t a = b.BeginNested(pf::TrackEvent::kDebugAnnotations);
        b.BytesField(pf::DebugAnnotation::kName, k, std::strlen(k));
        b.BytesField(pf::DebugAnnotation::kStringValue, v.data(), v.size());
        b.EndNested(a);
      };
      auto num = [&](const char* k, int64_t v) {
        size_t a = b.BeginNested(pf::TrackEvent::kDebugAnnotations);
        b.BytesField(pf::DebugAnnotation::kName, k, std::strlen(k));
        b.VarintField(pf::DebugAnnotation::kIntValue, static_cast<uint64_t>(v));
        b.EndNested(a);
      };
      str("guest", g.name);
      str("method", g.alignment.method);
      if (g.stats_buffers)  // where its buffers are in the trace stats
        str("trace_stats_buffers", std::to_string(g.stats_first_buffer) + ".." +
                                       std::to_string(g.stats_first_buffer + g.stats_buffers - 1));
      num("offset_ns", g.alignment.offset_ns);
      num("approximate", g.alignment.approximate ? 1 : 0);
      num("spread_ns", g.alignment.spread_ns);
      b.EndNested(te);
    });
  }
}

std::string SanitizeName(const std::string& in) {
  std::string out;
  for (char c : in)
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f && out.size() < 64) out += c;
  return out.empty() ? "guest" : out;
}

const char* ModeName(MergeMode m) {
  return m == MergeMode::kHostIntoGuest   ? "host-into-guest"
         : m == MergeMode::kGuestIntoHost ? "guest-into-host"
                                          : "add-traces";
}

// In one machine trace_processor drops all ftrace data before the last
// tracing-start service event it reads, whichever side it came from: only the
// side that started tracing first keeps its event, and the others drop their
// own ftrace data from before their start themselves (as trace_processor
// would have for each of them alone).
void OneTracingStart(const std::vector<Side*>& order) {
  Side* first = nullptr;
  int64_t first_at = 0;
  for (Side* s : order) {
    const InputSummary& in = s->summary;
    if (!in.has_tracing_start) {
      if (!in.has_ftrace) continue;
      first = nullptr;  // its ftrace data has no start: no side may keep one
      break;
    }
    uint64_t boot = in.tracing_start;
    if (in.tracing_start_clock != clk::kBoottime &&
        !in.clocks.Convert(in.tracing_start_clock, clk::kBoottime, boot, &boot))
      boot = in.tracing_start;
    int64_t at = static_cast<int64_t>(boot + static_cast<uint64_t>(s->transform.shift_ns));
    if (!first || at < first_at) first = s, first_at = at;
  }
  if (!first) {
    bool unbounded = false;
    for (Side* s : order) unbounded |= s->summary.has_ftrace && !s->summary.has_tracing_start;
    if (!unbounded) return;  // no side starts tracing: nothing to do
  }
  for (Side* s : order) {
    if (s == first || !s->summary.has_tracing_start) continue;
    s->transform.drop_tracing_start = true;
    uint64_t boot = s->summary.tracing_start;
    if (s->summary.tracing_start_clock == clk::kBoottime ||
        s->summary.clocks.Convert(s->summary.tracing_start_clock, clk::kBoottime, boot, &boot))
      s->transform.ftrace_valid_from = boot;
  }
}

std::string Kernel(const InputSummary& s) {
  if (!s.has_system_info) return "unknown, read as Linux 4.4";
  return "Linux " + (s.kernel_release.empty() ? std::string("?") : s.kernel_release);
}

// The clock trace_processor reads packets without one on (on every machine):
// the main's primary trace clock, else BOOTTIME when a snapshot of it has
// one; 0 when none (timestamps are taken as trace time).
uint32_t OutputDefaultClock(const InputSummary& main) {
  if (main.primary_trace_clock) return main.primary_trace_clock;
  return main.clocks.Has(clk::kBoottime) ? clk::kBoottime : 0;
}

// Sets every side's transform for one choice of the main timeline; returns
// the sides in output order, main first.
std::vector<Side*> Configure(const MergeOptions& opt, const Layout& layout, bool guest_main,
                             Side* host, std::vector<Side>* guests,
                             std::unordered_set<uint64_t>* used_uuids,
                             std::unordered_set<uint64_t>* used_flows, uint32_t* seq_max_out) {
  std::vector<Side*> order;
  host->transform = Transform();
  host->stats_first_buffer = host->stats_buffers = 0;
  for (auto& g : *guests) {
    g.transform = Transform();
    g.stats_first_buffer = g.stats_buffers = 0;
  }
  if (guest_main) {
    Side& g = (*guests)[0];
    g.role = "main";
    host->role = "moved";
    order.push_back(&g);
    order.push_back(host);
  } else {
    host->role = "main";
    order.push_back(host);
    for (auto& g : *guests) {
      g.role = "moved";
      order.push_back(&g);
    }
  }
  Side& main = *order[0];
  *used_uuids = main.summary.uuids;
  *used_flows = main.summary.flow_ids;
  uint32_t seq_max = main.summary.max_sequence_id;
  uint64_t uid_max = main.summary.max_uid;
  if (opt.mode != MergeMode::kAddTraces) {
    if (main.is_guest) main.transform.name_prefix = main.name + ": ";
    for (size_t k = 1; k < order.size(); k++) {
      Side& s = *order[k];
      Transform& t = s.transform;
      const Alignment& a = s.is_guest ? s.alignment : (*guests)[0].alignment;
      t.shift_time = true;
      // Negated modulo 2^64 (timestamps shift that way): -INT64_MIN is UB.
      t.shift_ns = s.is_guest ? static_cast<int64_t>(0 - static_cast<uint64_t>(a.offset_ns))
                              : a.offset_ns;
      // Several link syncs: interpolate the offset (keyed by the moved side's
      // time: the guest's, or for a moved host, the guest's minus the offset).
      for (auto& pt : a.points) {
        if (s.is_guest)
          t.shift_points.emplace_back(pt.first, static_cast<int64_t>(0 - static_cast<uint64_t>(pt.second)));
        else
          t.shift_points.emplace_back(pt.first - static_cast<uint64_t>(pt.second), pt.second);
      }
      t.clocks = &s.summary.clocks;
      t.main_clocks = &main.summary.clocks;
      t.out_default_clock = OutputDefaultClock(main.summary);
      t.remap_uuids = true;
      t.uuid_salt = 0x9e3779b97f4a7c15ull * k;
      t.reserved_uuids = used_uuids;
      t.drop_session_packets = true;
      t.drop_global_snapshots = true;
      if (s.is_guest) t.name_prefix = s.name + ": ";
      if (opt.machine_ids) {
        // A machine of its own: its clocks, config, stats and service events
        // are its machine's in trace_processor, so they stay (moved in time).
        t.machine_id = static_cast<uint32_t>(k);
        t.drop_session_packets = false;
        t.drop_global_snapshots = false;
        t.shift_global_snapshots = true;
      } else {
        t.seq_offset = seq_max;
        t.uid_offset = uid_max;
        t.pid_offset = layout.pid_base * static_cast<int64_t>(k);
        t.cpu_offset = layout.cpu_base * k;
        t.frame_id_offset = static_cast<uint64_t>(k) << 40;  // SurfaceFlinger's counters stay far below
        // Its states are read with the main's kernel (its SystemInfo goes).
        t.states_from = s.summary.kernel_era;
        t.states_to = main.summary.kernel_era;
        t.translate_states = s.summary.has_ftrace && t.states_from != t.states_to;
        t.remap_flows = !opt.link_flows && !s.summary.flow_ids.empty();
        t.reserved_flows = used_flows;
      }
      s.shared_flow_ids = 0;
      for (uint64_t id : s.summary.flow_ids) s.shared_flow_ids += main.summary.flow_ids.count(id);
      seq_max += s.summary.max_sequence_id;
      uid_max += s.summary.max_uid;
    }
  }
  if (opt.mode != MergeMode::kAddTraces && !opt.machine_ids) OneTracingStart(order);
  *seq_max_out = seq_max;
  return order;
}

// Android log times are CLOCK_REALTIME and trace_processor converts them
// through the main machine's REALTIME. A main without one (its snapshots do
// not relate REALTIME to BOOTTIME) gets the first moved side's that has one,
// moved onto the main's BOOTTIME: `wall` receives those snapshots (to write)
// and `view` the main's clocks with them (to re-express log times in). On a
// machine of its own a side's logs stay: trace_processor converts them through
// its own REALTIME (its remote clock syncs tie it to the main).
void WallClock(const MergeOptions& opt, const std::vector<Side*>& order, ClockConverter* view,
               std::vector<Snapshot>* wall) {
  wall->clear();
  const InputSummary& main = order[0]->summary;
  *view = main.clocks;
  if (opt.machine_ids) {
    for (size_t k = 1; k < order.size(); k++) order[k]->transform.logs_own_realtime = true;
    return;
  }
  if (main.clocks.Relates(clk::kRealtime, clk::kBoottime)) return;
  for (size_t k = 1; k < order.size(); k++) {
    Side& s = *order[k];
    if (!wall->empty() || !s.summary.clocks.Relates(clk::kRealtime, clk::kBoottime)) continue;
    for (const Snapshot& snap : s.summary.clocks.snapshots()) {
      uint64_t b = 0, r = 0;
      bool hb = false, hr = false;
      for (auto& c : snap) {
        if (c.first == clk::kBoottime) b = c.second, hb = true;
        if (c.first == clk::kRealtime) r = c.second, hr = true;
      }
      if (!hb || !hr) continue;
      Snapshot moved{{clk::kBoottime, b + static_cast<uint64_t>(s.transform.shift_ns)},
                     {clk::kRealtime, r}};
      wall->push_back(moved);
      view->Add(moved);
    }
  }
  for (size_t k = 1; k < order.size(); k++) order[k]->transform.main_clocks = view;
}

// The moved sides' timestamps are on BOOTTIME, which the alignment read as
// the main side's clock. When the main's trace clock is another one (a
// MONOTONIC-only trace such as Flutter's) that no snapshot of it relates to
// BOOTTIME, a snapshot saying the two are the same, as the alignment took
// them, lets trace_processor place the moved sides; false when not needed.
bool BootTimeBridge(const InputSummary& main, uint32_t seq, ByteBuffer* out) {  // appends
  uint32_t trace_clock = main.primary_trace_clock ? main.primary_trace_clock : clk::kBoottime;
  if (trace_clock == clk::kBoottime || main.clocks.Relates(clk::kBoottime, trace_clock))
    return false;
  uint64_t at = main.has_ts ? main.first_ts : 0;
  ByteBuffer b;
  b.VarintField(pf::TracePacket::kTrustedPacketSequenceId, seq);
  size_t cs = b.BeginNested(pf::TracePacket::kClockSnapshot);
  for (uint32_t c : {trace_clock, clk::kBoottime}) {
    size_t e = b.BeginNested(pf::ClockSnapshot::kClocks);
    b.VarintField(pf::ClockSnapshot::Clock::kClockId, c);
    b.VarintField(pf::ClockSnapshot::Clock::kTimestamp, at);
    b.EndNested(e);
  }
  b.VarintField(pf::ClockSnapshot::kPrimaryTraceClock, trace_clock);
  b.EndNested(cs);
  out->BytesField(1, b.data(), b.size());
  return true;
}

// trace_processor keeps one set of trace stats per machine, from the last
// TraceStats packet it reads, with each buffer's stats indexed by its place
// in it. On one machine the moved sides' stats would replace the main's, so
// they are dropped with their packets and come back here: the main's stats
// with every moved side's buffers appended (their place is in the report and
// the merge record). Sides on machines of their own keep their own.
void MergedTraceStats(const std::vector<Side*>& order, uint32_t seq, ByteBuffer* out) {
  bool moved_stats = false;
  for (size_t k = 1; k < order.size(); k++) moved_stats |= order[k]->summary.trace_stats_buffers > 0;
  uint32_t next = order[0]->summary.trace_stats_buffers;
  order[0]->stats_buffers = next;
  if (!moved_stats) return;
  ByteBuffer b;
  b.VarintField(pf::TracePacket::kTrustedPacketSequenceId, seq);
  size_t ts = b.BeginNested(pf::TracePacket::kTraceStats);
  const std::string& main = order[0]->summary.trace_stats;
  b.Append(main.data(), main.size());
  for (size_t k = 1; k < order.size(); k++) {
    Side& s = *order[k];
    s.stats_first_buffer = next;
    ProtoDecoder d(s.summary.trace_stats.data(), s.summary.trace_stats.size());
    Field g;
    while (d.Next(&g))
      if (g.id == pf::TraceStats::kBufferStats) b.AppendRaw(g), s.stats_buffers++;
    next += s.stats_buffers;
  }
  b.EndNested(ts);
  out->BytesField(1, b.data(), b.size());
}

// Pass 2: every side in order, then the alignment record; into `out`, or
// only counted when `out` is null.
Status WriteSides(const MergeOptions& opt, const std::vector<Side*>& order,
                  const std::vector<Side>& guests, uint32_t seq_max, const std::vector<Snapshot>& wall,
                  std::unordered_set<uint64_t>* used_uuids, OutputFile* out, Progress* progress) {
  Status st;
  if (out) {
    st = out->Open(opt.output_path);
    if (!st.ok()) return st;
  }
  for (Side* s : order) {
    // A dry run only needs to count what the moved sides would become.
    if (!out && s->transform.Identity()) continue;
    st = CopySide(*s, opt.threads, out, progress);
    if (!st.ok()) return st;
    if (s == order[0] && out && order.size() > 1 && order[1]->transform.shift_time) {
      ByteBuffer snap;
      BootTimeBridge(s->summary, seq_max + 2, &snap);
      for (const Snapshot& w : wall) {  // a moved side's wall clock, for the main machine
        ByteBuffer b;
        b.VarintField(pf::TracePacket::kTrustedPacketSequenceId, seq_max + 2);
        size_t cs = b.BeginNested(pf::TracePacket::kClockSnapshot);
        for (auto& c : w) {
          size_t e = b.BeginNested(pf::ClockSnapshot::kClocks);
          b.VarintField(pf::ClockSnapshot::Clock::kClockId, c.first);
          b.VarintField(pf::ClockSnapshot::Clock::kTimestamp, c.second);
          b.EndNested(e);
        }
        b.EndNested(cs);
        snap.BytesField(1, b.data(), b.size());
      }
      st = out->Write(snap.data(), snap.size());
      if (!st.ok()) return st;
    }
  }
  if (out && opt.mode != MergeMode::kAddTraces) {
    ByteBuffer rec;
    if (!opt.machine_ids) MergedTraceStats(order, seq_max + 1, &rec);  // the record's sequence
    AlignmentRecord(guests, *order[0], seq_max + 1, used_uuids, &rec);
    st = out->Write(rec.data(), rec.size());
  }
  if (out) {  // the main side, copied meanwhile
    Status copied = out->FinishCopy();
    if (st.ok()) st = copied;
  }
  return st;
}

std::string Seconds(int64_t ns) {
  char b[64];
  std::snprintf(b, sizeof b, "%.3f s", static_cast<double>(ns) / 1e9);
  return b;
}

// Empty when nothing lands before the main clock's zero; else what does
// (short: it ends up in a 256-byte error message).
std::string BelowZeroMessage(const std::vector<Side*>& order, std::string* first_alignment) {
  std::string msg;
  size_t more = 0;
  for (size_t k = 1; k < order.size(); k++) {
    const Side& s = *order[k];
    const RewriteStats& st = s.stats;
    if (!st.timestamps_below_zero) continue;
    if (!msg.empty()) {
      more++;
      continue;
    }
    msg = (s.is_guest ? "guest '" + s.name + "'" : std::string("the host")) + " would put " +
          std::to_string(st.packets_below_zero) + " packet(s) before the " +
          (order[0]->is_guest ? "guest" : "host") + " clock's zero (earliest " +
          Seconds(st.earliest_below_zero) + "), where the viewer drops them";
    const Alignment& a = s.is_guest ? s.alignment : order[0]->alignment;
    if (first_alignment)
      *first_alignment = a.method + ", offset " + std::to_string(a.offset_ns) + " ns";
  }
  if (more) msg += " (and " + std::to_string(more) + " more guest(s))";
  return msg;
}

}  // namespace

// Pass 1 over every input, on up to `opt.threads` threads at once (each
// input's summary is its own); the first input's error in input order wins.
Status ScanInputs(const MergeOptions& opt, Side* host, std::vector<Side>* guests, Progress* progress) {
  std::vector<Side*> sides{host};
  for (auto& g : *guests) sides.push_back(&g);
  std::vector<Status> status(sides.size());
  unsigned threads = opt.threads ? opt.threads : AutoThreads();
  threads = static_cast<unsigned>(std::min<size_t>(threads, sides.size()));
  std::atomic<size_t> next{0};
  // No exception leaves a thread (it would end the process): running out of
  // memory is that input's failure, and a thread that cannot be had leaves
  // its share to the others.
  auto work = [&]() noexcept {
    for (size_t i; (i = next.fetch_add(1)) < sides.size();) {
      const std::string& path = i ? opt.guests[i - 1].path : opt.host_path;
      try {
        status[i] = ScanInput(path, &sides[i]->summary, progress);
      } catch (const std::bad_alloc&) {
        status[i] = Status::Error(vpsdk::kNoMemory, "out of memory scanning '" + path + "'");
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned k = 1; k < threads; k++) {
    try {
      pool.emplace_back(work);
    } catch (const std::system_error&) {
      break;
    }
  }
  work();
  for (auto& th : pool) th.join();
  for (auto& st : status)
    if (!st.ok()) return st;
  return Status::Ok();
}

Status Merge(const MergeOptions& opt, std::string* report_json) {
  if (opt.host_path.empty()) return Status::Error(vpsdk::kInvalidArgument, "no host trace given");
  if (opt.guests.empty()) return Status::Error(vpsdk::kInvalidArgument, "no guest trace given");
  if (opt.output_path.empty() && !opt.dry_run)
    return Status::Error(vpsdk::kInvalidArgument, "no output path given");
  if (opt.guests.size() > 1 && opt.mode == MergeMode::kHostIntoGuest)
    return Status::Error(vpsdk::kInvalidArgument,
                         "several guests merge into the host's timeline only");
  std::vector<std::string> inputs{opt.host_path};
  for (auto& g : opt.guests) inputs.push_back(g.path);
  for (auto& in : inputs)
    if (!opt.dry_run && SameFile(in, opt.output_path))
      return Status::Error(vpsdk::kInvalidArgument,
                           "the output '" + opt.output_path + "' is also an input");
  std::vector<std::string> warnings;

  uint64_t total = 0;
  for (auto& in : inputs) {
    struct stat sb;
    if (stat(in.c_str(), &sb) == 0) total += static_cast<uint64_t>(sb.st_size);
  }
  Progress progress(opt.progress, opt.dry_run ? total : 2 * total);

  // Pass 1.
  Side host;
  host.name = "host";
  std::vector<Side> guests(opt.guests.size());
  for (size_t i = 0; i < guests.size(); i++) {
    guests[i].name = SanitizeName(opt.guests[i].name);
    guests[i].is_guest = true;
  }
  Status st = ScanInputs(opt, &host, &guests, &progress);
  if (!st.ok()) return st;
  for (Side* s : [&] {
         std::vector<Side*> v{&host};
         for (auto& g : guests) v.push_back(&g);
         return v;
       }()) {
    if (s->summary.truncated)
      warnings.push_back(s->summary.path + ": the last packet is truncated at byte " +
                         std::to_string(s->summary.truncated_at) + "; merged what is complete");
  }

  for (auto& g : guests) {
    AlignOptions ao = opt.align;
    g.alignment = Align(g.summary, host.summary, ao, g.name);
    if (g.alignment.approximate)
      warnings.push_back("alignment of '" + g.name + "' is approximate (" + g.alignment.method +
                         ": " + g.alignment.detail + ")");
  }

  int64_t max_pid = host.summary.max_pid;
  uint32_t max_cpu = host.summary.max_cpu;
  for (auto& g : guests) {
    max_pid = std::max(max_pid, g.summary.max_pid);
    max_cpu = std::max(max_cpu, g.summary.max_cpu);
  }
  Layout layout;
  layout.pid_base = PidBase(max_pid);
  // 64 bits: with a cpu number near 2^32 a 32-bit base wrapped and the loop never ended.
  while (layout.cpu_base <= max_cpu) layout.cpu_base *= 10;

  // Who is main and who moves. A moved side that would land before the main
  // clock's zero loses those events in the viewer: with one guest the other
  // side becomes the main timeline instead (always valid, as the offset is
  // then negative the other way round); otherwise the merge refuses.
  bool guest_main = opt.mode == MergeMode::kHostIntoGuest ||
                    (opt.mode == MergeMode::kAddTraces && guests.size() == 1);
  std::vector<Side*> order;
  std::unordered_set<uint64_t> used_uuids, used_flows;
  uint32_t seq_max = 0;
  std::unique_ptr<OutputFile> out;
  std::string switched;
  ClockConverter main_view;  // the main's clocks, with a borrowed wall clock (WallClock)
  std::vector<Snapshot> wall;
  for (int attempt = 0;; attempt++) {
    order = Configure(opt, layout, guest_main, &host, &guests, &used_uuids, &used_flows, &seq_max);
    WallClock(opt, order, &main_view, &wall);
    out.reset();
    if (!opt.dry_run) out.reset(new OutputFile());
    st = WriteSides(opt, order, guests, seq_max, wall, &used_uuids, out.get(), &progress);
    if (!st.ok()) return st;
    std::string how;
    std::string lost = BelowZeroMessage(order, &how);
    if (lost.empty()) break;
    if (attempt == 0 && guests.size() == 1 && opt.mode != MergeMode::kAddTraces) {
      Side& moved = *order[1];
      switched = lost + ": the " + (guest_main ? "host" : "guest") +
                 " is the main timeline instead";
      warnings.push_back(switched);
      moved.below_zero_packets = moved.stats.packets_below_zero;
      moved.below_zero_timestamps = moved.stats.timestamps_below_zero;
      guest_main = !guest_main;
      continue;
    }
    return Status::Error(vpsdk::kInvalidArgument,
                         lost + "; nothing written: check its alignment (" + how +
                             ") or merge it alone");
  }
  const InputSummary& main_summary = order[0]->summary;
  for (size_t k = 1; k < order.size(); k++) {
    const Side& s = *order[k];
    std::string who = s.is_guest ? "guest '" + s.name + "'" : std::string("the host");
    if (s.shared_flow_ids && s.transform.remap_flows)
      warnings.push_back(who + ": " + std::to_string(s.shared_flow_ids) + " of its flow id(s) the " +
                         (order[0]->is_guest ? "guest" : "host") +
                         " uses too: kept apart (renumbered); if they link events across the "
                         "VM boundary, merge with --link-flows");
    if (s.shared_flow_ids && opt.machine_ids && opt.link_flows)
      warnings.push_back(who + ": " + std::to_string(s.shared_flow_ids) + " of its flow id(s) the " +
                         (order[0]->is_guest ? "guest" : "host") +
                         " uses too do not link: the viewer's flows stay within a machine; "
                         "merge without --machine-id to link them");
    if (s.stats.task_states_approximated)
      warnings.push_back(who + ": " + std::to_string(s.stats.task_states_approximated) +
                         " thread state(s) of its kernel have no equivalent on the main's kernel "
                         "(" + Kernel(main_summary) + ") and read approximately; --machine-id "
                         "keeps each kernel's own");
    if (!opt.machine_ids && s.summary.has_ftrace && main_summary.has_system_info &&
        s.summary.has_system_info && !s.summary.machine_arch.empty() &&
        s.summary.machine_arch != main_summary.machine_arch)
      warnings.push_back(who + " runs on " + s.summary.machine_arch + ", the main on " +
                         main_summary.machine_arch + ": its syscall numbers read as the main's; "
                         "--machine-id keeps each architecture's own");
    if (s.stats.unplaced_log_events)
      warnings.push_back(who + ": " +
                         std::to_string(s.stats.unplaced_log_events) +
                         " android log event(s) cannot be placed on the main timeline (their "
                         "REALTIME is not related to BOOTTIME in both traces' clock snapshots)");
  }
  if (out) {
    st = out->Commit();
    if (!st.ok()) return st;
  }
  progress.Done();
  Side& main = *order[0];
  bool host_main = !main.is_guest;
  MergeMode mode = opt.mode == MergeMode::kAddTraces ? MergeMode::kAddTraces
                   : host_main                      ? MergeMode::kGuestIntoHost
                                                    : MergeMode::kHostIntoGuest;

  // The report.
  Json j;
  j.Open('{');
  j.Key("output");
  j.String(opt.output_path);
  j.Key("mode");
  j.String(ModeName(mode));
  j.Key("requested_mode");
  j.String(ModeName(opt.mode));
  j.Key("main_switched");
  j.String(switched);
  j.Key("bytes_written");
  j.UInt(out ? out->bytes() : 0);
  uint64_t written = 0;
  for (Side* s : order) written += s->stats.packets_written;
  j.Key("packets_written");
  j.UInt(written);
  j.Key("pid_base");
  j.Int(opt.machine_ids ? 0 : layout.pid_base);
  j.Key("inputs");
  j.Open('[');
  for (Side* s : order) {
    const Transform& t = s->transform;
    j.Open('{');
    j.Key("role"); j.String(s->role);
    j.Key("name"); j.String(s->name);
    j.Key("kind"); j.String(s->is_guest ? "guest" : "host");
    j.Key("path"); j.String(s->summary.path);
    j.Key("gzip"); j.Bool(s->summary.gzip);
    j.Key("bytes"); j.UInt(s->summary.bytes);
    j.Key("packets_read"); j.UInt(s->stats.packets_read);
    j.Key("packets_written"); j.UInt(s->stats.packets_written);
    j.Key("packets_dropped"); j.UInt(s->stats.packets_dropped);
    j.Key("snapshots_dropped"); j.UInt(s->stats.snapshots_dropped);
    j.Key("session_packets_dropped"); j.UInt(s->stats.session_packets_dropped);
    j.Key("timestamps_shifted"); j.UInt(s->stats.timestamps_shifted);
    j.Key("unconvertible_timestamps"); j.UInt(s->stats.unconvertible_timestamps);
    j.Key("compressed_packets"); j.UInt(s->summary.compressed_packets);
    j.Key("truncated_at"); j.Int(s->summary.truncated ? static_cast<int64_t>(s->summary.truncated_at) : -1);
    j.Key("shift_ns"); j.Int(t.shift_time ? t.shift_ns : 0);
    j.Key("seq_offset"); j.UInt(t.seq_offset);
    j.Key("uid_offset"); j.UInt(t.uid_offset);
    j.Key("pid_offset"); j.Int(t.pid_offset);
    j.Key("cpu_offset"); j.UInt(t.cpu_offset);
    j.Key("frame_id_offset"); j.UInt(t.frame_id_offset);
    j.Key("machine_id"); j.UInt(t.machine_id);
    j.Key("timestamps_below_zero"); j.UInt(s->stats.timestamps_below_zero);
    j.Key("zero_timestamps_kept"); j.UInt(s->stats.zero_timestamps_kept);
    j.Key("trace_stats_buffers");
    j.Open('[');
    j.UInt(s->stats_first_buffer);
    j.UInt(s->stats_buffers);
    j.Close(']');
    j.Key("tracing_start_events_dropped"); j.UInt(s->stats.tracing_start_events_dropped);
    j.Key("stale_ftrace_events_dropped"); j.UInt(s->stats.stale_ftrace_events_dropped);
    j.Key("unplaced_log_events"); j.UInt(s->stats.unplaced_log_events);
    j.Key("task_states_translated"); j.UInt(s->stats.task_states_translated);
    j.Key("task_states_approximated"); j.UInt(s->stats.task_states_approximated);
    j.Key("packets_below_zero_avoided"); j.UInt(s->below_zero_packets);
    j.Key("uuids_remapped"); j.UInt(s->uuids_remapped);
    j.Key("flow_ids_remapped"); j.UInt(s->flows_remapped);
    j.Key("shared_flow_ids"); j.UInt(s->shared_flow_ids);
    j.Key("clock_sync_markers"); j.UInt(s->summary.markers.size());
    j.Close('}');
  }
  j.Close(']');
  j.Key("alignments");
  j.Open('[');
  for (auto& g : guests) {
    j.Open('{');
    j.Key("guest"); j.String(g.name);
    j.Key("method"); j.String(g.alignment.method);
    j.Key("offset_ns"); j.Int(g.alignment.offset_ns);
    j.Key("approximate"); j.Bool(g.alignment.approximate);
    j.Key("spread_ns"); j.Int(g.alignment.spread_ns);
    j.Key("samples"); j.Int(g.alignment.samples);
    j.Key("detail"); j.String(g.alignment.detail);
    j.Key("sync_points"); j.UInt(g.alignment.points.size());
    j.Key("applied"); j.Bool(opt.mode != MergeMode::kAddTraces);
    j.Close('}');
  }
  j.Close(']');
  j.Key("warnings");
  j.Open('[');
  for (auto& w : warnings) j.String(w);
  j.Close(']');
  j.Close('}');
  *report_json = std::move(j.s);
  return Status::Ok();
}

}  // namespace vpmerge
