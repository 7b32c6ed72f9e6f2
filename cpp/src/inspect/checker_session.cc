// `inspect --check`, continued: what trace_processor says about how a trace
// was recorded (its config, the profiler's losses, the kernel's task states),
// about flows, and about the clock snapshots themselves.
#include <cstdlib>
#include <string>

#include "inspect/checker.h"
#include "inspect/checker_state.h"
#include "merge/proto_fields.h"

namespace vpinspect {
namespace {

using vpmerge::Field;
using vpmerge::ProtoDecoder;
namespace pf = vpsdk::pf;
namespace proto = vpsdk::proto;
namespace fld = vpmerge::fld;

constexpr Severity kError = Severity::kError, kDataLoss = Severity::kDataLoss;
constexpr Effect kNone = Effect::kNone, kMisread = Effect::kMisread;

const Rule kWriteIntoFileDiscard{"config_write_into_file_discard", kDataLoss, kNone,
    "recorded into a file through a DISCARD buffer: what came after the buffer filled was not "
    "recorded"};
const Rule kWriteIntoFileNoFlush{"config_write_into_file_no_flush", kError, kNone,
    "recorded into a file without periodic flushes (an old tracing service): more memory when "
    "loading it"};
const Rule kLongTraceOverwritten{"long_trace_mode_bytes_overwritten", kDataLoss, kNone,
    "a buffer wrapped while streaming into the file: what it overwrote never reached the file"};
const Rule kPerfLostRecords{"perf_cpu_lost_records", kDataLoss, kNone,
    "the kernel's perf buffer overran while recording: samples are missing"};
const Rule kPerfSkipped{"perf_samples_skipped", kError, kNone,
    "perf samples the profiler skipped while recording (read or unwind stage)"};
const Rule kPerfSkippedLoss{"perf_samples_skipped_dataloss", kDataLoss, kNone,
    "perf samples the profiler dropped while recording (its unwind queue was full)"};
const Rule kTaskStateInvalid{"task_state_invalid", kError, kMisread,
    "a sched_switch state the machine's kernel version cannot have: shown as unknown"};
const Rule kDefaultTrackParent{"track_descriptor_default_track_with_parent", kError, kMisread,
    "a descriptor of the default track (uuid 0) with a parent: ignored"};
const Rule kFlowDuplicate{"flow_duplicate_id", kError, kMisread,
    "a flow begun again with the id of one still open: its arrow is lost"};
const Rule kInvalidSnapshot{"invalid_clock_snapshots", kError, kMisread,
    "a clock snapshot trace_processor rejects: its clocks are related by the others only"};
const Rule kUnrelatable{"clock_sync_unrelatable_clock_domains", kError, kNone,
    "the machine's BOOTTIME is not related to the trace clock (events on it cannot be placed)"};

// TraceConfig, TraceStats, SystemInfo
constexpr uint32_t kBuffers = 1, kWriteIntoFile = 8, kFileWritePeriodMs = 9, kFlushPeriodMs = 13,
                   kFillPolicy = 4, kDiscard = 2;
constexpr uint64_t kRingBufferIntentPeriodMs = 24ull * 60 * 60 * 1000;  // a day: still a ring buffer
constexpr uint32_t kBufferStats = 1, kBytesOverwritten = 13, kServiceVersion = 4;
// PerfSample
constexpr uint32_t kKernelRecordsLost = 17, kSkippedReason = 18;
constexpr uint64_t kSkipReadStage = 1, kSkipUnwindStage = 2, kSkipUnwindEnqueue = 3;
// TrackEvent flows, and its LegacyEvent's
constexpr uint32_t kFlowIdsOld = 36, kFlowIds = 47, kTerminatingOld = 42, kTerminating = 48;
constexpr uint32_t kLegacyEvent = 6, kBindId = 8, kFlowDirection = 13;
constexpr uint64_t kFlowOut = 2;  // LegacyEvent.FlowDirection.FLOW_OUT

}  // namespace

void Checker::LearnSystemInfo(const uint8_t* data, size_t size, uint32_t machine) {
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g)) {
    if (g.id == kServiceVersion && g.type == proto::kLengthDelimited)
      Machine(machine).service_version.assign(reinterpret_cast<const char*>(g.data), g.size);
    if (g.id != fld::SystemInfo::kUtsname || g.type != proto::kLengthDelimited) continue;
    std::string sysname, release;
    ProtoDecoder e(g.data, g.size);
    Field h;
    while (e.Next(&h)) {
      if (h.type != proto::kLengthDelimited) continue;
      if (h.id == fld::Utsname::kSysname) sysname.assign(reinterpret_cast<const char*>(h.data), h.size);
      if (h.id == fld::Utsname::kRelease) release.assign(reinterpret_cast<const char*>(h.data), h.size);
    }
    Machine(machine).era = vpmerge::EraOfKernel(sysname, release);
  }
}

void Checker::LearnSnapshot(uint32_t machine, uint32_t seq, const std::vector<ClockValue>& clocks) {
  if (!learn_validator_.Check(machine, seq, clocks, clocks_.trace_clock())) clocks_.AddSnapshot(machine, clocks);
}

void Checker::Snapshot(uint32_t machine, uint32_t seq, const std::vector<ClockValue>& clocks) {
  if (const char* why = validator_.Check(machine, seq, clocks, clocks_.trace_clock())) {
    Find(kInvalidSnapshot, std::string("clock snapshot with ") + why);
    return;
  }
  seen_.SetTraceClock(clocks_.trace_clock());
  seen_.AddSnapshot(machine, clocks);
}

// trace_processor ties each machine's BOOTTIME to the trace clock on its first
// conversion, from the snapshots read until then: through them, through a
// RemoteClockSync, or (another machine's BOOTTIME) by identity; a trace clock
// of another kind that nothing relates it to cannot be.
void Checker::FirstConversion(uint32_t machine) {
  MachineState& m = Machine(machine);
  m.converted = true;
  const uint32_t boot = pf::BuiltinClock::kBoottime, trace = clocks_.trace_clock();
  if (trace == boot || m.remote_sync) return;
  seen_.SetTraceClock(trace);
  int64_t t;
  if (machine == 0) {
    if (seen_.ToTraceTime(0, boot, 0, &t) == Conversion::kOk) return;
  } else {
    // another machine: through its REALTIME and the host's, the rendezvous
    const uint32_t real = pf::BuiltinClock::kRealtime;
    if (seen_.ToTraceTime(0, real, 0, &t) == Conversion::kOk &&
        seen_.ToTraceTime(machine, real, 0, &t) != Conversion::kUnknownClock)
      return;
  }
  Find(kUnrelatable, std::string("BOOTTIME") + (machine ? " of machine " + std::to_string(machine) : "") +
                         " and the trace clock " + std::to_string(trace) + " are not related");
}

void Checker::TraceConfig(const uint8_t* data, size_t size, uint32_t machine) {
  MachineState& m = Machine(machine);
  m.config_packet = index_, m.config_offset = offset_;
  ProtoDecoder d(data, size);
  Field g;
  std::vector<uint64_t> policies;
  m.into_file = false;
  m.file_write_period_ms = m.flush_period_ms = 0;
  while (d.Next(&g)) {
    if (g.type == proto::kVarint) {
      if (g.id == kWriteIntoFile) m.into_file = g.int_value != 0;
      if (g.id == kFileWritePeriodMs) m.file_write_period_ms = g.int_value;
      if (g.id == kFlushPeriodMs) m.flush_period_ms = g.int_value;
    }
    if (g.id != kBuffers || g.type != proto::kLengthDelimited) continue;
    uint64_t policy = 0;
    ProtoDecoder e(g.data, g.size);
    Field h;
    while (e.Next(&h))
      if (h.id == kFillPolicy && h.type == proto::kVarint) policy = h.int_value;
    policies.push_back(policy);
  }
  if (!m.into_file) return;
  for (size_t i = 0; i < policies.size(); i++)
    if (policies[i] == kDiscard)
      Find(kWriteIntoFileDiscard, "buffer " + std::to_string(i) + " is DISCARD with write_into_file");
}

void Checker::TraceStats(const uint8_t* data, size_t size, uint32_t machine) {
  MachineState& m = Machine(machine);
  m.bytes_overwritten.clear();
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g)) {
    if (g.id != kBufferStats || g.type != proto::kLengthDelimited) continue;
    uint64_t over = 0;
    ProtoDecoder e(g.data, g.size);
    Field h;
    while (e.Next(&h))
      if (h.id == kBytesOverwritten && h.type == proto::kVarint) over = h.int_value;
    m.bytes_overwritten.push_back(over);
  }
}

// Once the trace is read, from its last config, system info and stats.
void Checker::SessionFinish(uint32_t machine) {
  MachineState& m = Machine(machine);
  if (!m.into_file) return;
  index_ = m.config_packet, offset_ = m.config_offset;
  if (m.file_write_period_ms < kRingBufferIntentPeriodMs)
    for (size_t i = 0; i < m.bytes_overwritten.size(); i++)
      if (m.bytes_overwritten[i])
        Find(kLongTraceOverwritten, "buffer " + std::to_string(i) + " overwrote " +
                                        std::to_string(m.bytes_overwritten[i]) +
                                        " bytes before they were written into the file");
  if (m.flush_period_ms) return;
  // services since v54 flush on every write into the file
  const std::string prefix = "Perfetto v";
  unsigned long major = 0;
  if (m.service_version.compare(0, prefix.size(), prefix) == 0) {
    const char* p = m.service_version.c_str() + prefix.size();
    char* end = nullptr;
    major = std::strtoul(p, &end, 10);
    if (end == p || (*end != '.' && *end != '-')) major = 0;
  }
  if (major < 54)
    Find(kWriteIntoFileNoFlush, "write_into_file without flush_period_ms (tracing service " +
                                    (m.service_version.empty() ? std::string("unknown") : m.service_version) + ")");
}

void Checker::PerfSample(const uint8_t* data, size_t size) {
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g)) {
    if (g.type != proto::kVarint) continue;
    if (g.id == kKernelRecordsLost && g.int_value) {
      Find(kPerfLostRecords, std::to_string(g.int_value) + " perf record(s) lost in the kernel");
      return;  // not a sample
    }
    if (g.id == kSkippedReason) {
      if (g.int_value == kSkipReadStage || g.int_value == kSkipUnwindStage)
        Find(kPerfSkipped, "a perf sample skipped at the profiler's " +
                               std::string(g.int_value == kSkipReadStage ? "read" : "unwind") + " stage");
      else if (g.int_value == kSkipUnwindEnqueue)
        Find(kPerfSkippedLoss, "a perf sample dropped: the unwind queue was full");
    }
  }
}

// Read with the machine's kernel version, as trace_processor does.
void Checker::TaskStates(const uint8_t* data, size_t size, uint32_t machine) {
  const vpmerge::KernelEra era = Machine(machine).era;
  uint64_t invalid = 0, first = 0;
  auto check = [&](uint64_t raw) {
    if (vpmerge::ReadTaskState(raw, era) == vpmerge::task::kInvalid && !invalid++) first = raw;
  };
  ProtoDecoder d(data, size);
  Field g;
  while (d.Next(&g)) {
    if (g.type != proto::kLengthDelimited) continue;
    ProtoDecoder e(g.data, g.size);
    Field h;
    if (g.id == fld::FtraceEventBundle::kEvent) {
      while (e.Next(&h)) {
        if (h.id != fld::FtraceEvent::kSchedSwitch || h.type != proto::kLengthDelimited) continue;
        ProtoDecoder s(h.data, h.size);
        Field k;
        while (s.Next(&k))
          if (k.id == fld::SchedSwitch::kPrevState && k.type == proto::kVarint) check(k.int_value);
      }
    } else if (g.id == fld::FtraceEventBundle::kCompactSched) {
      while (e.Next(&h))
        if (h.id == fld::CompactSched::kSwitchPrevState) vpmerge::ForEachVarint(h, check);
    }
  }
  if (invalid)
    Find(kTaskStateInvalid, std::to_string(invalid) + " sched_switch state(s) such as " +
                                std::to_string(first) + " that the machine's kernel (" +
                                (era == vpmerge::KernelEra::kSince4_14 ? "4.14 or later"
                                                                       : "before 4.14") +
                                ") cannot have");
}

void Checker::DefaultTrackParent(uint64_t uuid, uint64_t parent) {
  Find(kDefaultTrackParent, "track " + std::to_string(uuid) + " with parent " + std::to_string(parent));
}

void Checker::ReadFlows(const Field& g, FlowRefs* f) {
  // flow_ids and terminating_flow_ids are fixed64, their old forms varints;
  // either packed or not
  auto all = [&](std::vector<uint64_t>* out, bool fixed) {
    if (g.type != proto::kLengthDelimited) {
      out->push_back(g.int_value);
    } else if (fixed) {
      for (size_t i = 0; i + 8 <= g.size; i += 8) {
        uint64_t v = 0;
        for (int b = 7; b >= 0; b--) v = v << 8 | g.data[i + static_cast<size_t>(b)];
        out->push_back(v);
      }
    } else {
      vpmerge::ForEachVarint(g, [&](uint64_t v) { out->push_back(v); });
    }
  };
  if (g.id == kFlowIds || g.id == kFlowIdsOld) {
    all(&f->ids, g.id == kFlowIds);
  } else if (g.id == kTerminating || g.id == kTerminatingOld) {
    all(&f->terminating, g.id == kTerminating);
  } else if (g.id == kLegacyEvent && g.type == proto::kLengthDelimited) {
    ProtoDecoder d(g.data, g.size);
    Field h;
    while (d.Next(&h)) {
      if (h.type != proto::kVarint) continue;
      if (h.id == kBindId) f->bind_id = h.int_value, f->has_bind = true;
      if (h.id == kFlowDirection) f->direction = static_cast<uint32_t>(h.int_value);
    }
  }
}

// As trace_processor's flow tracker: an id is open from its first flow begin
// until a terminating flow id closes it; a legacy FLOW_OUT begins one (a
// second while it is open is the duplicate), flow ids step an open one.
void Checker::Flows(uint32_t machine, const FlowRefs& f) {
  if (!f.has_bind && f.ids.empty() && f.terminating.empty()) return;
  MachineState& m = Machine(machine);
  if (f.has_bind && f.direction == kFlowOut && !m.flows.insert(f.bind_id).second)
    Find(kFlowDuplicate, "flow " + std::to_string(f.bind_id) + " begun again while open");
  for (uint64_t id : f.ids) m.flows.insert(id);
  for (uint64_t id : f.terminating) m.flows.erase(id);
}

}  // namespace vpinspect
