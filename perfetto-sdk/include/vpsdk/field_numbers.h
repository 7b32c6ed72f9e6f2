// Field numbers of the Perfetto trace protos that vpsdk writes and reads.
// They are facts of the public wire format (protos/perfetto/trace/*.proto).
#ifndef VPSDK_FIELD_NUMBERS_H_
#define VPSDK_FIELD_NUMBERS_H_

#include <cstdint>

namespace vpsdk {
namespace pf {

namespace Trace {
constexpr uint32_t kPacket = 1;
}

namespace TracePacket {
constexpr uint32_t kFtraceEvents = 1;
constexpr uint32_t kProcessTree = 2;
constexpr uint32_t kTrustedUid = 3;
constexpr uint32_t kClockSnapshot = 6;
constexpr uint32_t kTimestamp = 8;
constexpr uint32_t kProcessStats = 9;
constexpr uint32_t kTrustedPacketSequenceId = 10;
constexpr uint32_t kTrackEvent = 11;
constexpr uint32_t kInternedData = 12;
constexpr uint32_t kSequenceFlags = 13;
constexpr uint32_t kTraceConfig = 33;
constexpr uint32_t kTraceStats = 35;
constexpr uint32_t kSynchronizationMarker = 36;
constexpr uint32_t kIncrementalStateCleared = 41;
constexpr uint32_t kPreviousPacketDropped = 42;
constexpr uint32_t kSystemInfo = 45;
constexpr uint32_t kCompressedPackets = 50;
constexpr uint32_t kTimestampClockId = 58;
constexpr uint32_t kTracePacketDefaults = 59;
constexpr uint32_t kTrackDescriptor = 60;
constexpr uint32_t kServiceEvent = 69;
constexpr uint32_t kTrustedPid = 79;
constexpr uint32_t kFirstPacketOnSequence = 87;
constexpr uint32_t kMachineId = 98;

constexpr uint32_t kSeqIncrementalStateCleared = 1;
constexpr uint32_t kSeqNeedsIncrementalState = 2;
}  // namespace TracePacket

namespace TracePacketDefaults {
constexpr uint32_t kTrackEventDefaults = 11;
constexpr uint32_t kTimestampClockId = 58;
}
namespace TrackEventDefaults {
constexpr uint32_t kTrackUuid = 11;
}

namespace TrackEvent {
constexpr uint32_t kCategoryIids = 3;
constexpr uint32_t kDebugAnnotations = 4;
constexpr uint32_t kType = 9;
constexpr uint32_t kNameIid = 10;
constexpr uint32_t kTrackUuid = 11;
constexpr uint32_t kCategories = 22;
constexpr uint32_t kName = 23;
constexpr uint32_t kCounterValue = 30;
constexpr uint32_t kExtraCounterTrackUuids = 31;
constexpr uint32_t kDoubleCounterValue = 44;
constexpr uint32_t kFlowIds = 47;
constexpr uint32_t kTerminatingFlowIds = 48;
constexpr uint32_t kLogMessage = 21;
constexpr uint32_t kSourceLocationIid = 34;

constexpr uint32_t kTypeSliceBegin = 1;
constexpr uint32_t kTypeSliceEnd = 2;
constexpr uint32_t kTypeInstant = 3;
constexpr uint32_t kTypeCounter = 4;
}  // namespace TrackEvent

namespace DebugAnnotation {
constexpr uint32_t kNameIid = 1;
constexpr uint32_t kBoolValue = 2;
constexpr uint32_t kUintValue = 3;
constexpr uint32_t kIntValue = 4;
constexpr uint32_t kDoubleValue = 5;
constexpr uint32_t kStringValue = 6;
constexpr uint32_t kPointerValue = 7;
constexpr uint32_t kName = 10;
constexpr uint32_t kDictEntries = 11;
constexpr uint32_t kArrayValues = 12;
}  // namespace DebugAnnotation

namespace InternedData {
constexpr uint32_t kEventCategories = 1;
constexpr uint32_t kEventNames = 2;
constexpr uint32_t kDebugAnnotationNames = 3;
constexpr uint32_t kSourceLocations = 4;
constexpr uint32_t kLogMessageBody = 20;
}
namespace SourceLocation {
constexpr uint32_t kIid = 1;
constexpr uint32_t kFileName = 2;
constexpr uint32_t kFunctionName = 3;
constexpr uint32_t kLineNumber = 4;
}
namespace LogMessage {
constexpr uint32_t kSourceLocationIid = 1;
constexpr uint32_t kBodyIid = 2;
constexpr uint32_t kPrio = 3;
}
// EventCategory, EventName and DebugAnnotationName share this layout.
namespace InternedString {
constexpr uint32_t kIid = 1;
constexpr uint32_t kName = 2;
}

namespace TrackDescriptor {
constexpr uint32_t kUuid = 1;
constexpr uint32_t kName = 2;
constexpr uint32_t kProcess = 3;
constexpr uint32_t kThread = 4;
constexpr uint32_t kParentUuid = 5;
constexpr uint32_t kCounter = 8;
}
namespace ProcessDescriptor {
constexpr uint32_t kPid = 1;
constexpr uint32_t kProcessName = 6;
}
namespace ThreadDescriptor {
constexpr uint32_t kPid = 1;
constexpr uint32_t kTid = 2;
constexpr uint32_t kThreadName = 5;
}
namespace CounterDescriptor {
constexpr uint32_t kUnit = 3;
constexpr uint32_t kUnitName = 6;
constexpr uint32_t kUnitTimeNs = 1;
constexpr uint32_t kUnitCount = 2;
constexpr uint32_t kUnitSizeBytes = 3;
}

namespace ClockSnapshot {
constexpr uint32_t kClocks = 1;
constexpr uint32_t kPrimaryTraceClock = 2;
namespace Clock {
constexpr uint32_t kClockId = 1;
constexpr uint32_t kTimestamp = 2;
constexpr uint32_t kIsIncremental = 3;
constexpr uint32_t kUnitMultiplierNs = 4;
}
}  // namespace ClockSnapshot

// The first sequence-scoped clock id: what the Perfetto SDK's track-event
// runtime uses for its incremental (delta-encoded) timestamps.
constexpr uint32_t kSequenceClockIncremental = 64;

namespace BuiltinClock {
constexpr uint32_t kRealtime = 1;
constexpr uint32_t kRealtimeCoarse = 2;
constexpr uint32_t kMonotonic = 3;
constexpr uint32_t kMonotonicCoarse = 4;
constexpr uint32_t kMonotonicRaw = 5;
constexpr uint32_t kBoottime = 6;
constexpr uint32_t kTsc = 9;
}

namespace TraceStats {
constexpr uint32_t kBufferStats = 1;
constexpr uint32_t kChunksDiscarded = 8;
namespace BufferStats {
constexpr uint32_t kBytesWritten = 1;
constexpr uint32_t kChunksWritten = 2;
constexpr uint32_t kChunksOverwritten = 3;
constexpr uint32_t kBufferSize = 12;
constexpr uint32_t kBytesOverwritten = 13;
constexpr uint32_t kChunksDiscarded = 18;
constexpr uint32_t kTraceWriterPacketLoss = 19;
}
}  // namespace TraceStats

namespace TraceConfig {
constexpr uint32_t kBuffers = 1;
constexpr uint32_t kDataSources = 2;
constexpr uint32_t kCompressionType = 24;
constexpr uint32_t kCompressionTypeDeflate = 1;
namespace BufferConfig {
constexpr uint32_t kSizeKb = 1;
constexpr uint32_t kFillPolicy = 4;
constexpr uint32_t kRingBuffer = 1;
constexpr uint32_t kDiscard = 2;
}
namespace DataSource {
constexpr uint32_t kConfig = 1;
}
}  // namespace TraceConfig
namespace DataSourceConfig {
constexpr uint32_t kName = 1;
constexpr uint32_t kTrackEventConfig = 113;
}
namespace TrackEventConfig {
constexpr uint32_t kDisabledCategories = 1;
constexpr uint32_t kEnabledCategories = 2;
constexpr uint32_t kDisableIncrementalTimestamps = 5;
constexpr uint32_t kTimestampUnitMultiplier = 6;
}

}  // namespace pf
}  // namespace vpsdk

#endif  // VPSDK_FIELD_NUMBERS_H_
