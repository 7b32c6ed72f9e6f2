// Test helper: the absolute CLOCK_BOOTTIME time of each packet of one
// sequence, read the way trace_processor reads it: the clock of a packet is
// its timestamp_clock_id, else its sequence's default (TracePacketDefaults);
// a sequence-scoped clock (64..127) is defined by a ClockSnapshot on the
// sequence that ties it to BOOTTIME, and an incremental one adds each
// packet's value (times its unit) to its running time.
#ifndef VPSDK_TESTS_SEQ_TIME_H_
#define VPSDK_TESTS_SEQ_TIME_H_

#include <cstdint>
#include <map>
#include <vector>

#include "vpsdk/field_numbers.h"
#include "vpsdk/proto_decoder.h"

namespace vpsdk_test {

struct SnapshotClock {
  uint32_t id = 0;
  uint64_t ts = 0;
  bool incremental = false;
  uint64_t unit = 1;
};

// The clocks of a ClockSnapshot message; false on a field it does not know.
inline bool ReadSnapshotClocks(const uint8_t* data, size_t size, std::vector<SnapshotClock>* out,
                               uint32_t* primary = nullptr) {
  namespace CS = vpsdk::pf::ClockSnapshot;
  vpsdk::ProtoDecoder d(data, size);
  vpsdk::Field f;
  while (d.Next(&f)) {
    if (f.id == CS::kPrimaryTraceClock && f.type == vpsdk::proto::kVarint) {
      if (primary) *primary = static_cast<uint32_t>(f.int_value);
      continue;
    }
    if (f.id != CS::kClocks || f.type != vpsdk::proto::kLengthDelimited) return false;
    SnapshotClock c;
    bool has_id = false, has_ts = false;
    vpsdk::ProtoDecoder cd(f.data, f.size);
    vpsdk::Field g;
    while (cd.Next(&g)) {
      if (g.type != vpsdk::proto::kVarint) return false;
      if (g.id == CS::Clock::kClockId) c.id = static_cast<uint32_t>(g.int_value), has_id = true;
      else if (g.id == CS::Clock::kTimestamp) c.ts = g.int_value, has_ts = true;
      else if (g.id == CS::Clock::kIsIncremental) c.incremental = g.int_value != 0;
      else if (g.id == CS::Clock::kUnitMultiplierNs) c.unit = g.int_value ? g.int_value : 1;
      else return false;
    }
    if (cd.error() || !has_id || !has_ts) return false;
    out->push_back(c);
  }
  return !d.error();
}

class SequenceTime {
 public:
  void SetDefaultClock(uint32_t clock) { default_clock_ = clock; }
  uint32_t default_clock() const { return default_clock_; }
  // A snapshot on this sequence: its scoped clocks are tied to its BOOTTIME.
  // False when it has scoped clocks but no BOOTTIME.
  bool Snapshot(const std::vector<SnapshotClock>& clocks) {
    const SnapshotClock* boot = nullptr;
    for (const SnapshotClock& c : clocks)
      if (c.id == vpsdk::pf::BuiltinClock::kBoottime) boot = &c;
    for (const SnapshotClock& c : clocks) {
      if (c.id < 64 || c.id > 127) continue;
      if (!boot) return false;
      Scoped& s = scoped_[c.id];
      s.incremental = c.incremental;
      s.unit = c.unit;
      s.last_ns = c.ts * c.unit;
      s.offset = static_cast<int64_t>(boot->ts) - static_cast<int64_t>(c.ts * c.unit);
      s.defined = true;
    }
    return true;
  }
  // The BOOTTIME of a packet's timestamp `ts` on `clock` (0: the default).
  // False when its clock is not defined on this sequence or not BOOTTIME.
  bool Absolute(uint64_t ts, uint32_t clock, uint64_t* out) {
    if (!clock) clock = default_clock_ ? default_clock_ : vpsdk::pf::BuiltinClock::kBoottime;
    if (clock == vpsdk::pf::BuiltinClock::kBoottime) {
      *out = ts;
      return true;
    }
    auto it = scoped_.find(clock);
    if (it == scoped_.end() || !it->second.defined) return false;
    Scoped& s = it->second;
    uint64_t ns = ts * s.unit;
    if (s.incremental) ns = s.last_ns += ns;
    *out = static_cast<uint64_t>(static_cast<int64_t>(ns) + s.offset);
    return true;
  }

 private:
  struct Scoped {
    bool defined = false, incremental = false;
    uint64_t unit = 1, last_ns = 0;
    int64_t offset = 0;
  };
  uint32_t default_clock_ = 0;
  std::map<uint32_t, Scoped> scoped_;
};

}  // namespace vpsdk_test

#endif  // VPSDK_TESTS_SEQ_TIME_H_
