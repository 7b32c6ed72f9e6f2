// Field numbers the merge reads or rewrites beyond what the tracer writes
// (facts of the public Perfetto protos), and small decoding helpers.
#ifndef VPERFETTO_MERGE_PROTO_FIELDS_H_
#define VPERFETTO_MERGE_PROTO_FIELDS_H_

#include <cstdint>

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
constexpr uint32_t kSwitchTimestamp = 1, kSwitchNextPid = 3, kWakingTimestamp = 7,
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
namespace PerfSample { constexpr uint32_t kCpu = 1, kPid = 2, kTid = 3; }
namespace TrackEvent {
constexpr uint32_t kTimestampAbsoluteUs = 16, kLegacyEvent = 6, kExtraDoubleCounterTrackUuids = 45;
namespace Legacy { constexpr uint32_t kPidOverride = 18, kTidOverride = 19; }
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

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_PROTO_FIELDS_H_
