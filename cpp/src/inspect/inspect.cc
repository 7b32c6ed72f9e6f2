// Inspecting a trace in one streaming pass: a summary (packets by kind,
// sequences, machines, processes and threads with guest/host attribution,
// tracks, clock snapshots, drops) and, with `check`, what trace_processor
// will lose or misread (checker.h; one more pass first, for the clocks).
#include "inspect/inspect.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "inspect/checker.h"
#include "merge/json.h"
#include "merge/proto_fields.h"
#include "merge/scan.h"
#include "merge/trace_io.h"

namespace vpinspect {
namespace {

using vpmerge::ByteBuffer;
using vpmerge::Field;
using vpmerge::PacketView;
using vpmerge::ProtoDecoder;
using vpmerge::TraceReader;
namespace pf = vpsdk::pf;
namespace proto = vpsdk::proto;

const char* KindName(uint32_t id) {
  switch (id) {
    case 1: return "ftrace_events";
    case 2: return "process_tree";
    case 6: return "clock_snapshot";
    case 9: return "process_stats";
    case 11: return "track_event";
    case 33: return "trace_config";
    case 35: return "trace_stats";
    case 36: return "synchronization_marker";
    case 39: return "android_log";
    case 45: return "system_info";
    case 50: return "compressed_packets";
    case 60: return "track_descriptor";
    case 66: return "perf_sample";
    case 69: return "service_event";
    default: return nullptr;
  }
}

// Fields of a packet that are not its payload.
bool Envelope(uint32_t id) {
  switch (id) {
    case 3: case 8: case 10: case 12: case 13: case 41: case 42: case 58: case 59:
    case 79: case 87: case 98:
      return true;
    default:
      return false;
  }
}

struct Track {
  std::string name;
  int kind = 0;  // 1 process, 2 thread, 3 counter, 4 other
  int32_t pid = 0, tid = 0;
  uint64_t parent = 0;
  uint32_t machine = 0;
};

struct Process {
  std::string name;
  uint32_t machine = 0;
  std::map<int32_t, std::string> threads;
  uint64_t first = UINT64_MAX, last = 0;
};

struct Seq {
  uint64_t packets = 0, first_ts = 0, last_ts = 0;
  uint64_t default_track = 0;
  uint32_t default_clock = 0;
  SequenceClocks clocks;
  bool valid = false;  // incremental state cleared since the start or the last loss
};

// One "vperfetto_merge_alignment" record a merge left in the trace.
struct MergeAlignment {
  std::map<std::string, std::string> strings;
  std::map<std::string, int64_t> ints;
};


class Inspector {
 public:
  explicit Inspector(Checker* checker) : checker_(checker) {}
  void Packet(const uint8_t* data, size_t size, uint64_t index, uint64_t offset, int depth);
  void Finish();
  std::string Json(const std::string& path, const TraceReader& r);

  uint64_t packets = 0;

 private:
  void Descriptor(const Field& f, uint32_t machine);
  void Event(const Field& f, Seq& seq, bool has_ts, uint64_t ts);
  void FtraceSpan(const Field& f, uint32_t machine);
  void Touch(int32_t pid, uint64_t ts, uint32_t machine) {
    if (pid <= 0 || !ts) return;
    Process& p = procs_[{machine, pid}];
    p.first = std::min(p.first, ts);
    p.last = std::max(p.last, ts);
  }

  Checker* checker_;  // null without --check
  uint64_t cur_index_ = 0, cur_offset_ = 0;
  std::map<std::string, uint64_t> kinds_;
  std::map<uint32_t, Seq> seqs_;
  std::map<uint32_t, uint64_t> machines_;
  std::unordered_map<uint64_t, Track> tracks_;
  std::map<std::pair<uint32_t, int32_t>, Process> procs_;
  uint64_t first_ts_ = UINT64_MAX, last_ts_ = 0;
  uint64_t snapshots_ = 0;  // global ones
  std::set<uint32_t> snapshot_clocks_;
  // Snapshots that define sequence-scoped clocks (the SDK's incremental
  // timestamps: one per sequence and reset) and those clocks.
  uint64_t sequence_snapshots_ = 0;
  std::set<uint32_t> sequence_clocks_;
  uint64_t prev_dropped_ = 0, chunks_discarded_ = 0, chunks_overwritten_ = 0, packet_loss_ = 0;
  uint64_t events_[5] = {};
  uint64_t compressed_ = 0;
  std::vector<MergeAlignment> merge_alignments_;
  ByteBuffer inflated_;
  ClockGraph clocks_;
};

void Inspector::Descriptor(const Field& f, uint32_t machine) {
  Track t;
  t.machine = machine;
  uint64_t uuid = 0;
  ProtoDecoder d(f.data, f.size);
  Field g;
  while (d.Next(&g)) {
    if (g.id == pf::TrackDescriptor::kUuid) uuid = g.int_value;
    else if (g.id == pf::TrackDescriptor::kParentUuid) t.parent = g.int_value;
    else if (g.id == pf::TrackDescriptor::kName && g.type == proto::kLengthDelimited)
      t.name.assign(reinterpret_cast<const char*>(g.data), g.size);
    else if (g.id == pf::TrackDescriptor::kCounter) t.kind = 3;
    else if ((g.id == pf::TrackDescriptor::kProcess || g.id == pf::TrackDescriptor::kThread) &&
             g.type == proto::kLengthDelimited) {
      bool thread = g.id == pf::TrackDescriptor::kThread;
      t.kind = thread ? 2 : 1;
      ProtoDecoder e(g.data, g.size);
      Field h;
      std::string name;
      while (e.Next(&h)) {
        if (h.id == 1 && h.type == proto::kVarint) t.pid = static_cast<int32_t>(h.int_value);
        else if (thread && h.id == 2 && h.type == proto::kVarint) t.tid = static_cast<int32_t>(h.int_value);
        else if (h.type == proto::kLengthDelimited &&
                 h.id == (thread ? pf::ThreadDescriptor::kThreadName : pf::ProcessDescriptor::kProcessName))
          name.assign(reinterpret_cast<const char*>(h.data), h.size);
      }
      if (t.pid > 0) {
        Process& p = procs_[{machine, t.pid}];
        if (!thread && !name.empty()) p.name = name;
        if (thread && t.tid > 0) {
          std::string& tn = p.threads[t.tid];
          if (!name.empty() || tn.empty()) tn = name;
        }
      }
      if (t.name.empty()) t.name = name;
    }
  }
  if (!t.kind) t.kind = 4;
  if (!uuid) return;
  tracks_[uuid] = t;
}

void Inspector::Event(const Field& f, Seq& seq, bool has_ts, uint64_t ts) {
  ProtoDecoder d(f.data, f.size);
  Field g;
  uint64_t track = seq.default_track;
  uint32_t type = 0;
  bool alignment_record = false;
  while (d.Next(&g)) {
    switch (g.id) {
      case pf::TrackEvent::kName: {
        static const char kRecord[] = "vperfetto_merge_alignment";
        alignment_record = g.type == proto::kLengthDelimited && g.size == sizeof(kRecord) - 1 &&
                           std::memcmp(g.data, kRecord, g.size) == 0;
        break;
      }
      case pf::TrackEvent::kType: type = static_cast<uint32_t>(g.int_value); break;
      case pf::TrackEvent::kTrackUuid: track = g.int_value; break;
      default:
        break;
    }
  }
  if (alignment_record && merge_alignments_.size() < 256) {
    MergeAlignment rec;
    ProtoDecoder d2(f.data, f.size);
    while (d2.Next(&g)) {
      if (g.id != pf::TrackEvent::kDebugAnnotations || g.type != proto::kLengthDelimited) continue;
      ProtoDecoder e(g.data, g.size);
      Field h;
      std::string key, sval;
      bool is_int = false, is_str = false;
      int64_t ival = 0;
      while (e.Next(&h)) {
        if (h.id == pf::DebugAnnotation::kName && h.type == proto::kLengthDelimited)
          key.assign(reinterpret_cast<const char*>(h.data), h.size);
        else if (h.id == pf::DebugAnnotation::kStringValue && h.type == proto::kLengthDelimited)
          sval.assign(reinterpret_cast<const char*>(h.data), h.size), is_str = true;
        else if (h.id == pf::DebugAnnotation::kIntValue && h.type == proto::kVarint)
          ival = static_cast<int64_t>(h.int_value), is_int = true;
      }
      if (is_str) rec.strings[key] = sval;
      if (is_int) rec.ints[key] = ival;
    }
    merge_alignments_.push_back(std::move(rec));
  }
  if (type < 5) events_[type]++;
  auto tr = tracks_.find(track);
  if (tr != tracks_.end() && has_ts) Touch(tr->second.pid, ts, tr->second.machine);
}

void Inspector::Packet(const uint8_t* data, size_t size, uint64_t index, uint64_t offset, int depth) {
  cur_index_ = index;
  cur_offset_ = offset;
  packets++;
  ProtoDecoder d(data, size);
  Field g;
  Field te{}, desc{}, defaults{}, snap{}, ftrace{};
  bool has_te = false, has_desc = false, has_defaults = false, has_snap = false, has_ftrace = false;
  bool cleared = false, needs = false, dropped = false, has_ts = false, has_clock = false;
  uint64_t ts = 0;
  uint32_t seq_id = 0, machine = 0, clock = 0;
  std::string kind = "(no payload)";
  while (d.Next(&g)) {
    if (!Envelope(g.id)) {
      const char* k = KindName(g.id);
      kind = k ? k : "field_" + std::to_string(g.id);
    }
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
      case pf::TracePacket::kPreviousPacketDropped:
        prev_dropped_ += g.int_value != 0;
        dropped |= g.int_value != 0;
        break;
      case pf::TracePacket::kTrackEvent: te = g, has_te = len; break;
      case pf::TracePacket::kTrackDescriptor: desc = g, has_desc = len; break;
      case pf::TracePacket::kTracePacketDefaults: defaults = g, has_defaults = len; break;
      case pf::TracePacket::kClockSnapshot: snap = g, has_snap = len; break;
      case pf::TracePacket::kFtraceEvents: ftrace = g, has_ftrace = len; break;
      case pf::TracePacket::kTraceStats: {
        if (!len) break;
        ProtoDecoder e(g.data, g.size);
        Field h;
        while (e.Next(&h)) {
          if (h.id != pf::TraceStats::kBufferStats || h.type != proto::kLengthDelimited) continue;
          ProtoDecoder b(h.data, h.size);
          Field k;
          while (b.Next(&k)) {
            if (k.id == pf::TraceStats::BufferStats::kChunksDiscarded) chunks_discarded_ += k.int_value;
            if (k.id == pf::TraceStats::BufferStats::kChunksOverwritten) chunks_overwritten_ += k.int_value;
            if (k.id == pf::TraceStats::BufferStats::kTraceWriterPacketLoss) packet_loss_ += k.int_value;
          }
        }
        break;
      }
      case pf::TracePacket::kCompressedPackets: {
        if (!len || depth > 0) break;
        compressed_++;
        if (!vpmerge::Inflate(g.data, g.size, vpmerge::kMaxInflatedPacket, &inflated_).ok()) break;
        ByteBuffer inner;
        inner.Append(inflated_.data(), inflated_.size());
        ProtoDecoder e(inner.data(), inner.size());
        Field h;
        while (e.Next(&h))
          if (h.id == 1 && h.type == proto::kLengthDelimited) Packet(h.data, h.size, index, offset, 1);
        cur_index_ = index;
        cur_offset_ = offset;
        break;
      }
      default:
        break;
    }
  }
  kinds_[kind]++;
  machines_[machine]++;
  Seq& seq = seqs_[seq_id];
  seq.packets++;
  if (cleared) {
    seq.default_track = 0;
    seq.default_clock = 0;
    seq.valid = true;
  } else if (dropped) {
    seq.valid = false;
  }
  // trace_processor skips it: no time (its clock may be an incremental one
  // whose running value is gone), no event (--check says what is lost).
  if (needs && !seq.valid) has_ts = false;
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
          if (k.id == pf::TrackEventDefaults::kTrackUuid) seq.default_track = k.int_value;
      }
    }
  }
  if (has_snap) {
    uint32_t primary = 0;
    std::vector<ClockValue> c = ReadSnapshot(snap.data, snap.size, &primary);
    bool scoped = false;
    for (const ClockValue& v : c)
      if (v.clock >= 64 && v.clock < 128) scoped = true, sequence_clocks_.insert(v.clock);
    if (scoped) {
      sequence_snapshots_++;
      seq.clocks.Define(c);
    } else {
      snapshots_++;
      for (const ClockValue& v : c) snapshot_clocks_.insert(v.clock);
      if (primary) clocks_.SetTraceClock(primary);
      clocks_.AddSnapshot(machine, c);
    }
    if (!has_ts) return;  // (a snapshot packet's own time counts for the span)
  }
  // The packet's time on the trace clock, where the clocks seen so far allow.
  int64_t t = 0;
  bool has_time = false;
  if (has_ts) {
    uint32_t c = has_clock ? clock : (seq.default_clock ? seq.default_clock : pf::BuiltinClock::kBoottime);
    uint64_t v = ts;
    bool ok = true;
    if (c >= 64 && c < 128) ok = seq.clocks.Resolve(c, ts, &c, &v);
    has_time = ok && clocks_.ToTraceTime(machine, c, v, &t) == Conversion::kOk && t >= 0;
  }
  if (has_time) {
    uint64_t u = static_cast<uint64_t>(t);
    if (!seq.first_ts) seq.first_ts = u;
    seq.last_ts = std::max(seq.last_ts, u);
    first_ts_ = std::min(first_ts_, u);
    last_ts_ = std::max(last_ts_, u);
  }
  if (has_desc) Descriptor(desc, machine);
  if (has_te) Event(te, seq, has_time, static_cast<uint64_t>(t));
  if (has_ftrace) FtraceSpan(ftrace, machine);
}

// Ftrace bundles carry their time in their events: those count for the span.
void Inspector::FtraceSpan(const Field& f, uint32_t machine) {
  ProtoDecoder d(f.data, f.size);
  Field g;
  auto at = [&](uint64_t raw) {
    int64_t t;
    if (clocks_.ToTraceTime(machine, pf::BuiltinClock::kBoottime, raw, &t) != Conversion::kOk || t < 0)
      return;
    first_ts_ = std::min(first_ts_, static_cast<uint64_t>(t));
    last_ts_ = std::max(last_ts_, static_cast<uint64_t>(t));
  };
  while (d.Next(&g)) {
    if (g.id == vpmerge::fld::FtraceEventBundle::kFtraceClock && g.int_value != 0) return;
    if (g.id == vpmerge::fld::FtraceEventBundle::kEvent && g.type == proto::kLengthDelimited) {
      ProtoDecoder e(g.data, g.size);
      Field h;
      while (e.Next(&h))
        if (h.id == vpmerge::fld::FtraceEvent::kTimestamp && h.type == proto::kVarint) at(h.int_value);
    } else if (g.id == vpmerge::fld::FtraceEventBundle::kCompactSched && g.type == proto::kLengthDelimited) {
      ProtoDecoder e(g.data, g.size);
      Field h;
      uint64_t sw = 0, wk = 0;
      while (e.Next(&h)) {
        if (h.id == vpmerge::fld::CompactSched::kSwitchTimestamp)
          vpmerge::ForEachVarint(h, [&](uint64_t v) { at(sw += v); });
        else if (h.id == vpmerge::fld::CompactSched::kWakingTimestamp)
          vpmerge::ForEachVarint(h, [&](uint64_t v) { at(wk += v); });
      }
    }
  }
}

void Inspector::Finish() {}

std::string Inspector::Json(const std::string& path, const TraceReader& r) {
  vpmerge::Json j;
  j.Open('{');
  j.Key("path"); j.String(path);
  j.Key("gzip"); j.Bool(r.gzip());
  j.Key("bytes"); j.UInt(r.bytes_read());
  j.Key("truncated_at"); j.Int(r.truncated() ? static_cast<int64_t>(r.truncated_at()) : -1);
  j.Key("packets"); j.UInt(packets);
  j.Key("first_ts"); j.UInt(first_ts_ == UINT64_MAX ? 0 : first_ts_);
  j.Key("last_ts"); j.UInt(last_ts_);
  j.Key("packet_kinds");
  j.Open('{');
  for (auto& kv : kinds_) { j.Key(kv.first.c_str()); j.UInt(kv.second); }
  j.Close('}');
  j.Key("track_events");
  j.Open('{');
  j.Key("slice_begin"); j.UInt(events_[1]);
  j.Key("slice_end"); j.UInt(events_[2]);
  j.Key("instant"); j.UInt(events_[3]);
  j.Key("counter"); j.UInt(events_[4]);
  j.Close('}');
  j.Key("sequences");
  j.Open('[');
  size_t n = 0;
  for (auto& kv : seqs_) {
    if (++n > 10000) break;
    j.Open('{');
    j.Key("id"); j.UInt(kv.first);
    j.Key("packets"); j.UInt(kv.second.packets);
    j.Key("first_ts"); j.UInt(kv.second.first_ts);
    j.Key("last_ts"); j.UInt(kv.second.last_ts);
    j.Close('}');
  }
  j.Close(']');
  j.Key("machines");
  j.Open('{');
  for (auto& kv : machines_) { j.Key(std::to_string(kv.first).c_str()); j.UInt(kv.second); }
  j.Close('}');
  j.Key("processes");
  j.Open('[');
  // A guest's process: on a machine of its own, or named "GUEST: ..." after a
  // guest the merge recorded (a name like Chrome's "Service: audio" is not).
  std::vector<std::string> guests;
  for (auto& rec : merge_alignments_) {
    auto g = rec.strings.find("guest");
    if (g != rec.strings.end()) guests.push_back(g->second);
  }
  for (auto& kv : procs_) {
    const Process& p = kv.second;
    std::string guest;
    for (const std::string& g : guests)
      if (p.name.size() > g.size() + 2 && p.name.compare(0, g.size(), g) == 0 &&
          p.name.compare(g.size(), 2, ": ") == 0)
        guest = g;
    if (guest.empty() && kv.first.first) guest = "machine " + std::to_string(kv.first.first);
    j.Open('{');
    j.Key("machine"); j.UInt(kv.first.first);
    j.Key("pid"); j.Int(kv.first.second);
    j.Key("name"); j.String(p.name);
    j.Key("guest");
    j.String(guest);
    j.Key("first_ts"); j.UInt(p.first == UINT64_MAX ? 0 : p.first);
    j.Key("last_ts"); j.UInt(p.last);
    j.Key("threads");
    j.Open('[');
    for (auto& t : p.threads) {
      j.Open('{');
      j.Key("tid"); j.Int(t.first);
      j.Key("name"); j.String(t.second);
      j.Close('}');
    }
    j.Close(']');
    j.Close('}');
  }
  j.Close(']');
  uint64_t counts[5] = {};
  for (auto& kv : tracks_) counts[kv.second.kind]++;
  j.Key("tracks");
  j.Open('{');
  j.Key("total"); j.UInt(tracks_.size());
  j.Key("process"); j.UInt(counts[1]);
  j.Key("thread"); j.UInt(counts[2]);
  j.Key("counter"); j.UInt(counts[3]);
  j.Key("other"); j.UInt(counts[4]);
  j.Close('}');
  j.Key("counter_tracks");
  j.Open('[');
  for (auto& kv : tracks_)
    if (kv.second.kind == 3) j.String(kv.second.name);
  j.Close(']');
  j.Key("clock_snapshots");
  j.Open('{');
  j.Key("count"); j.UInt(snapshots_);
  j.Key("clocks");
  j.Open('[');
  for (uint32_t c : snapshot_clocks_) j.UInt(c);
  j.Close(']');
  j.Key("sequence_count"); j.UInt(sequence_snapshots_);
  j.Key("sequence_clocks");
  j.Open('[');
  for (uint32_t c : sequence_clocks_) j.UInt(c);
  j.Close(']');
  j.Close('}');
  j.Key("compressed_packets"); j.UInt(compressed_);
  j.Key("merge_alignments");
  j.Open('[');
  for (auto& rec : merge_alignments_) {
    j.Open('{');
    for (auto& kv : rec.strings) { j.Key(kv.first.c_str()); j.String(kv.second); }
    for (auto& kv : rec.ints) { j.Key(kv.first.c_str()); j.Int(kv.second); }
    j.Close('}');
  }
  j.Close(']');
  j.Key("drops");
  j.Open('{');
  j.Key("previous_packet_dropped"); j.UInt(prev_dropped_);
  j.Key("chunks_discarded"); j.UInt(chunks_discarded_);
  j.Key("chunks_overwritten"); j.UInt(chunks_overwritten_);
  j.Key("packet_loss"); j.UInt(packet_loss_);
  j.Close('}');
  j.Key("checked"); j.Bool(checker_ != nullptr);
  if (checker_) checker_->Json(&j);
  j.Close('}');
  return j.s;
}

}  // namespace

namespace {
// One pass for the summary (`out`), the timeline (`tl`), or both.
vpsdk::Status Run(const std::string& path, bool check, std::string* out, Timeline* tl) {
  std::unique_ptr<Checker> checker;
  if (out && check) {
    // What trace_processor learns before parsing: the clocks and the
    // tracing-start times of the whole file.
    checker.reset(new Checker());
    TraceReader r;
    vpsdk::Status st = r.Open(path);
    if (!st.ok()) return st;
    PacketView pv;
    int rc;
    while ((rc = r.Next(&pv)) == 1) checker->Learn(pv.data, pv.size, 0);
    if (rc < 0) return r.status();
  }
  TraceReader r;
  vpsdk::Status st = r.Open(path);
  if (!st.ok()) return st;
  Inspector in(checker.get());
  PacketView pv;
  int rc;
  uint64_t index = 0;
  while ((rc = r.Next(&pv)) == 1) {
    if (out) {
      in.Packet(pv.data, pv.size, index, pv.offset, 0);
      if (checker) checker->Packet(pv.data, pv.size, index, pv.offset, 0);
    }
    if (tl) {
      tl->Packet(pv.data, pv.size);
      if (index == 0 && tl->damaged() && !out)
        return vpsdk::Status::Error(vpsdk::kFormatError, path + ": not a Perfetto trace");
    }
    index++;
  }
  if (rc < 0) {
    if (out || index == 0) return r.status();
    tl->SetTruncated();  // garbage after good packets: the model of those
  }
  if (tl && r.truncated()) tl->SetTruncated();
  if (out) {
    if (index == 0)
      return vpsdk::Status::Error(vpsdk::kFormatError, path + ": no packets (empty or not a trace)");
    in.Finish();
    if (checker) checker->Finish();
    *out = in.Json(path, r);
  }
  return vpsdk::Status::Ok();
}
}  // namespace

vpsdk::Status Inspect(const std::string& path, bool check, std::string* out) {
  return Run(path, check, out, nullptr);
}

vpsdk::Status InspectTimeline(const std::string& path, const TimelineOptions& options, bool check,
                              std::string* tracks, std::string* rows, std::string* json) {
  Timeline tl(options);
  vpsdk::Status st = Run(path, check, json, &tl);
  if (!st.ok()) return st;
  tl.Finish(tracks, rows);
  return vpsdk::Status::Ok();
}

}  // namespace vpinspect
