// The checker's state per sequence and per machine (checker.cc and
// checker_session.cc share it).
#ifndef VPERFETTO_INSPECT_CHECKER_STATE_H_
#define VPERFETTO_INSPECT_CHECKER_STATE_H_

#include <climits>
#include <string>
#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "inspect/checker.h"
#include "vpsdk/field_numbers.h"

namespace vpinspect {

struct Orphan {
  int64_t ts;
  uint64_t packet, offset;
};

struct Checker::Seq {
  bool valid = false;  // trace_processor starts every sequence invalid
  uint32_t default_clock = 0;
  uint64_t default_track = 0;
  bool has_default_track = false;
  std::unordered_set<uint64_t> names, cats, anames;
  SequenceClocks clocks;
};

struct Checker::MachineState {
  bool has_start = false;
  uint32_t start_clock = vpsdk::pf::BuiltinClock::kBoottime;
  uint64_t start_raw = 0;
  int64_t start = INT64_MIN;  // trace time of the last tracing-start service event
  std::unordered_map<uint64_t, bool> tracks;  // described uuid -> is a counter track
  std::unordered_map<uint64_t, std::pair<uint64_t, uint64_t>> used, parents;  // first use / mention
  std::unordered_map<uint64_t, uint64_t> parent_of;  // described uuid -> its parent uuid
  std::unordered_map<uint64_t, std::string> kinds;  // uuid -> what it was first described as
  std::unordered_map<uint64_t, std::vector<int64_t>> open;          // begin timestamps
  std::unordered_map<uint64_t, std::vector<Orphan>> orphans;
  std::vector<std::pair<uint64_t, Orphan>> skipped_descriptors;
  size_t orphan_count = 0;
  vpmerge::KernelEra era = vpmerge::KernelEra::kBefore4_8;  // its last SystemInfo's
  bool remote_sync = false;  // RemoteClockSync ties it to the host
  bool converted = false;    // a timestamp was converted (the deferred clock sync ran)
  std::unordered_set<uint64_t> flows;  // active flow ids
  // its recording session: the last TraceConfig's, SystemInfo's and TraceStats'
  bool into_file = false;
  uint64_t file_write_period_ms = 0, flush_period_ms = 0;
  std::string service_version;
  std::vector<uint64_t> bytes_overwritten;  // per buffer
  uint64_t config_packet = 0, config_offset = 0;
};

}  // namespace vpinspect

#endif  // VPERFETTO_INSPECT_CHECKER_STATE_H_
