// `inspect --check`: what trace_processor (the Perfetto UI's engine) will
// lose or misread in a trace. Each finding is named after the stat
// trace_processor itself counts for it (src/trace_processor/storage/stats.h
// in google/perfetto), with its severity there, and says what happens to the
// data: dropped, misread, or nothing. A few findings have no such stat and
// are named here (prefix "vperfetto_").
#ifndef VPERFETTO_INSPECT_CHECKER_H_
#define VPERFETTO_INSPECT_CHECKER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "inspect/clocks.h"
#include "merge/byte_buffer.h"
#include "merge/task_state.h"
#include "merge/json.h"

namespace vpinspect {

enum class Severity { kInfo, kNotice, kError, kDataLoss };
enum class Effect { kNone, kMisread, kDropped };

struct Rule {
  const char* stat;
  Severity severity;  // trace_processor's
  Effect effect;
  const char* meaning;
};

struct Finding {
  const Rule* rule;
  uint64_t packet;
  uint64_t offset;
  std::string message;
};

class Checker {
 public:
  Checker();
  ~Checker();
  // Pass 1 (every packet, in order): what trace_processor learns before it
  // parses anything -- clock snapshots and the tracing-start service events.
  void Learn(const uint8_t* data, size_t size, int depth);
  // Pass 2 (every packet, in order).
  void Packet(const uint8_t* data, size_t size, uint64_t index, uint64_t offset, int depth);
  void Finish();

  // True when a finding loses or misreads data (an error or data-loss stat,
  // or an effect other than none): `--check` then exits 1.
  bool Fails() const;
  void Json(vpmerge::Json* j) const;

 private:
  struct Seq;
  struct MachineState;
  void Find(const Rule& r, std::string msg);
  Seq& SeqOf(uint32_t machine, uint32_t seq);
  MachineState& Machine(uint32_t machine);
  bool ToTrace(uint32_t machine, Seq& seq, uint32_t clock, uint64_t t, bool has_clock,
               int64_t* out, bool track_event);
  void TrackEvent(const uint8_t* data, size_t size, uint32_t machine, Seq& seq, int64_t ts,
                  bool ts_ok);
  bool Annotations(const uint8_t* data, size_t size, Seq& seq, int depth, std::string* why);
  void Descriptor(const uint8_t* data, size_t size, uint32_t machine);
  void Ftrace(const uint8_t* data, size_t size, uint32_t machine);
  void AndroidLog(const uint8_t* data, size_t size, uint32_t machine);
  void Interned(const uint8_t* data, size_t size, Seq& seq);
  // checker_session.cc: the recording session, its kernel, flows and clocks.
  void LearnSystemInfo(const uint8_t* data, size_t size, uint32_t machine);
  void LearnSnapshot(uint32_t machine, uint32_t seq, const std::vector<ClockValue>& clocks);
  void Snapshot(uint32_t machine, uint32_t seq, const std::vector<ClockValue>& clocks);
  void FirstConversion(uint32_t machine);
  void TraceConfig(const uint8_t* data, size_t size, uint32_t machine);
  void TraceStats(const uint8_t* data, size_t size, uint32_t machine);
  void SessionFinish(uint32_t machine);
  void PerfSample(const uint8_t* data, size_t size);
  void TaskStates(const uint8_t* data, size_t size, uint32_t machine);
  void DefaultTrackParent(uint64_t uuid, uint64_t parent);
  struct FlowRefs {
    std::vector<uint64_t> ids, terminating;
    uint64_t bind_id = 0;
    uint32_t direction = 0;
    bool has_bind = false;
  };
  static void ReadFlows(const vpsdk::Field& g, FlowRefs* f);
  void Flows(uint32_t machine, const FlowRefs& f);

  ClockGraph clocks_;
  SnapshotValidator learn_validator_, validator_;
  ClockGraph seen_;  // the snapshots read so far (pass 2)
  std::map<uint32_t, std::unique_ptr<MachineState>> machines_;
  std::unordered_map<uint64_t, std::unique_ptr<Seq>> seqs_;
  std::vector<Finding> findings_;
  std::map<const Rule*, uint64_t> counts_;
  uint64_t index_ = 0, offset_ = 0;
  // The sorter has a packet (it can no longer defer one whose clock is not
  // yet known until the end), and the last ToTrace() failed to convert.
  bool pushed_any_ = false, unconverted_ = false;
  vpmerge::ByteBuffer inflated_;
};

}  // namespace vpinspect

#endif  // VPERFETTO_INSPECT_CHECKER_H_
