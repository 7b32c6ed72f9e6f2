// Clock domains of a trace as trace_processor resolves them: global clock
// snapshots per machine, the trace clock (BOOTTIME unless a snapshot names
// another primary clock), and sequence-scoped clocks (ids 64..127, defined by
// a snapshot on their sequence, optionally incremental and with a unit).
#ifndef VPERFETTO_INSPECT_CLOCKS_H_
#define VPERFETTO_INSPECT_CLOCKS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace vpinspect {

struct ClockValue {
  uint32_t clock;
  uint64_t value;
  uint64_t unit_ns;   // unit_multiplier_ns, 1 when unset
  bool incremental;
};

enum class Conversion { kOk, kUnknownClock, kNoPath };

// The clocks of a ClockSnapshot message; *primary gets its primary_trace_clock
// (left alone when unset).
std::vector<ClockValue> ReadSnapshot(const uint8_t* data, size_t size, uint32_t* primary);
// The snapshots of a RemoteClockSync message (TracePacket.remote_clock_sync):
// each synced_clocks entry's client_clocks, the remote machine's clocks.
std::vector<std::vector<ClockValue>> ReadRemoteSnapshots(const uint8_t* data, size_t size);

// Global clocks, per machine. A remote machine's BOOTTIME is tied to the
// trace clock by identity (as trace_processor does without a remote_clock_sync).
class ClockGraph {
 public:
  void AddSnapshot(uint32_t machine, const std::vector<ClockValue>& clocks);
  void SetTraceClock(uint32_t clock) { trace_clock_ = clock; }
  uint32_t trace_clock() const { return trace_clock_; }
  bool empty() const { return machines_.empty(); }
  // The trace time of `t` on `clock` of `machine`: through the snapshot whose
  // value of `clock` is the latest not after t (else the earliest), directly
  // or through one intermediate clock.
  Conversion ToTraceTime(uint32_t machine, uint32_t clock, uint64_t t, int64_t* out) const;

 private:
  using Points = std::vector<std::pair<uint64_t, uint64_t>>;  // (from value, to value)
  struct Machine {
    // from clock -> to clock -> points sorted by `from`
    std::map<uint32_t, std::map<uint32_t, Points>> edges;
    bool sorted = true;
  };
  static bool Convert(const Points& p, uint64_t t, uint64_t* out);
  Machine* Get(uint32_t machine);
  std::unordered_map<uint32_t, Machine> machines_;
  uint32_t trace_clock_ = 6;  // BOOTTIME
  mutable std::vector<Machine*> unsorted_;
};

// trace_processor's checks on each global clock snapshot (its
// invalid_clock_snapshots): a clock keeps the unit and encoding it was first
// seen with, only sequence-scoped clocks may be incremental, no clock twice in
// one snapshot, and the trace clock never goes back between snapshots of the
// same clocks. A rejected snapshot relates nothing.
class SnapshotValidator {
 public:
  // nullptr when the snapshot (on sequence `seq`) is taken (and
  // remembered); else why not.
  const char* Check(uint32_t machine, uint32_t seq, const std::vector<ClockValue>& clocks,
                    uint32_t trace_clock);

 private:
  struct Domain {
    uint64_t unit_ns;
    bool incremental;
  };
  std::map<std::pair<uint32_t, uint32_t>, Domain> domains_;  // (machine, clock)
  // (machine, the snapshot's clocks in order, a scoped one with its
  // sequence) -> its last trace clock value
  std::map<std::pair<uint32_t, std::vector<uint64_t>>, uint64_t> last_;
};

// The sequence-scoped clocks of one sequence.
class SequenceClocks {
 public:
  void Clear() { clocks_.clear(); }
  // From a snapshot on the sequence: each scoped clock is tied to the first
  // global clock of the snapshot.
  void Define(const std::vector<ClockValue>& snapshot);
  bool Has(uint32_t clock) const { return clocks_.count(clock) != 0; }
  // Resolves `t` on scoped `clock` (advancing an incremental clock) to a
  // global clock and its value; false when the clock is undefined here.
  bool Resolve(uint32_t clock, uint64_t t, uint32_t* global, uint64_t* value);

 private:
  struct Scoped {
    uint64_t unit_ns = 1;
    bool incremental = false;
    uint64_t last = 0;         // the clock's current value (in its units)
    uint64_t base = 0;         // its value at the snapshot
    uint32_t global = 0;
    uint64_t global_base = 0;  // the global clock's value at the snapshot
  };
  std::map<uint32_t, Scoped> clocks_;
};

}  // namespace vpinspect

#endif  // VPERFETTO_INSPECT_CLOCKS_H_
