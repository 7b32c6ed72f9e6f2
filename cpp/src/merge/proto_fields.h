// Field numbers the merge reads or rewrites beyond what the tracer writes
// (facts of the public Perfetto protos), and small decoding helpers.
#ifndef VPERFETTO_MERGE_PROTO_FIELDS_H_
#define VPERFETTO_MERGE_PROTO_FIELDS_H_

#include <cstdint>
#include <cstring>

#include "byte_buffer.h"
#include "vpsdk/field_numbers.h"

namespace vpmerge {

namespace pf = vpsdk::pf;

namespace fld {
// TracePacket (besides pf::TracePacket)
constexpr uint32_t kAndroidLog = 39;
constexpr uint32_t kProcessDescriptorLegacy = 43;
constexpr uint32_t kThreadDescriptorLegacy = 44;
constexpr uint32_t kPerfSample = 66;

namespace FtraceEventBundle {
constexpr uint32_t kCpu = 1, kEvent = 2, kCompactSched = 4, kFtraceClock = 5,
                   kFtraceTimestamp = 6, kBootTimestamp = 7,
                   kLastReadEventTimestamp = 9, kPreviousBundleEndTimestamp = 10;
}
namespace CompactSched {
constexpr uint32_t kSwitchTimestamp = 1, kSwitchPrevState = 2, kSwitchNextPid = 3, kWakingTimestamp = 7,
                   kWakingPid = 8, kWakingTargetCpu = 9;
}
namespace FtraceEvent {
constexpr uint32_t kTimestamp = 1, kPid = 2, kPrint = 3, kSchedSwitch = 4,
                   kCpuFrequency = 11, kCpuIdle = 13, kSchedWakeup = 17,
                   kSchedBlockedReason = 18, kSchedWaking = 20, kSchedWakeupNew = 114,
                   kTaskNewtask = 235, kTaskRename = 236, kSchedProcessExec = 237,
                   kSchedProcessExit = 238, kSchedProcessFork = 239,
                   kSchedProcessFree = 240, kSchedProcessHang = 241,
                   kSchedProcessWait = 242, kSchedPiSetprio = 353, kSchedMigrateTask = 491;
}
namespace ProcessTree {
constexpr uint32_t kProcesses = 1, kThreads = 2;
namespace Process { constexpr uint32_t kPid = 1, kPpid = 2, kCmdline = 3; }
namespace Thread { constexpr uint32_t kTid = 1, kTgid = 3; }
}
namespace ProcessStats {
constexpr uint32_t kProcesses = 1;
namespace Process { constexpr uint32_t kPid = 1, kThreads = 11; }
namespace Thread { constexpr uint32_t kTid = 1; }
}
namespace AndroidLog {
constexpr uint32_t kEvents = 1;
namespace Event { constexpr uint32_t kPid = 2, kTid = 3, kTimestamp = 5; }
}
namespace SystemInfo { constexpr uint32_t kUtsname = 1; }
namespace Utsname { constexpr uint32_t kSysname = 1, kRelease = 3, kMachine = 4; }
namespace SchedSwitch { constexpr uint32_t kPrevState = 4; }
namespace PerfSample { constexpr uint32_t kCpu = 1, kPid = 2, kTid = 3; }
// Android's FrameTimelineEvent (TracePacket extension 76, in
// protos/third_party/android/frameworks/native/tracing/): each event is one of
// ExpectedDisplayFrameStart (1), ActualDisplayFrameStart (2) {cookie 1, token
// 2, pid 3}, ExpectedSurfaceFrameStart (3), ActualSurfaceFrameStart (4)
// {cookie 1, token 2, display_frame_token 3, pid 4}, FrameEnd (5) {cookie 1}.
constexpr uint32_t kFrameTimelineEvent = 76;
namespace FrameTimeline {
constexpr uint32_t kFrameEnd = 5;
inline uint32_t PidField(uint32_t event) { return event <= 2 ? 3 : event <= 4 ? 4 : 0; }
inline bool IsIdField(uint32_t event, uint32_t field) {  // cookie, token, display_frame_token
  return field == 1 || (event <= 4 && field == 2) || ((event == 3 || event == 4) && field == 3);
}
}  // namespace FrameTimeline
namespace TrackEvent {
constexpr uint32_t kTimestampAbsoluteUs = 16, kLegacyEvent = 6, kExtraDoubleCounterTrackUuids = 45;
// flow ids: fixed64 (47, 48) and their older varint forms (36, 42)
constexpr uint32_t kFlowIdsOld = 36, kTerminatingFlowIdsOld = 42, kFlowIds = 47, kTerminatingFlowIds = 48;
namespace Legacy {
constexpr uint32_t kPhase = 2, kUnscopedId = 6, kBindId = 8, kPidOverride = 18, kTidOverride = 19;
// phases of flow events (v1) whose unscoped_id is the flow's id
inline bool IsFlowPhase(uint64_t p) { return p == 's' || p == 't' || p == 'f'; }
}  // namespace Legacy
}
namespace TrackEventDefaults {
constexpr uint32_t kExtraCounterTrackUuids = 31, kExtraDoubleCounterTrackUuids = 45;
}
}  // namespace fld

// Calls fn(value) for a repeated scalar field, packed or not.
template <typename F>
inline bool ForEachVarint(const Field& f, F&& fn) {
  if (f.type != proto::kLengthDelimited) {
    fn(f.int_value);
    return true;
  }
  const uint8_t* p = f.data;
  const uint8_t* end = f.data + f.size;
  while (p < end) {
    uint64_t v;
    p = proto::ReadVarint(p, end, &v);
    if (!p) return false;
    fn(v);
  }
  return true;
}

// Calls fn(id) for a flow id field: fixed64 (47, 48) or varint (36, 42),
// packed or not.
template <typename F>
inline bool ForEachFlowId(const Field& f, F&& fn) {
  bool fixed = f.id == fld::TrackEvent::kFlowIds || f.id == fld::TrackEvent::kTerminatingFlowIds;
  if (f.type != proto::kLengthDelimited || !fixed) return ForEachVarint(f, fn);
  if (f.size % 8) return false;
  for (size_t i = 0; i < f.size; i += 8) {
    uint64_t v;
    std::memcpy(&v, f.data + i, 8);  // little-endian, as the wire
    fn(v);
  }
  return true;
}

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_PROTO_FIELDS_H_
