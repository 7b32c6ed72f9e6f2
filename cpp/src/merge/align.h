// Finding the offset between a guest's clock and the host's.
#ifndef VPERFETTO_MERGE_ALIGN_H_
#define VPERFETTO_MERGE_ALIGN_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trace_model.h"

namespace vpmerge {

struct AlignOptions {
  bool has_time_diff = false;
  int64_t time_diff = 0;            // guest BOOTTIME - host BOOTTIME
  bool has_guest_boot = false;
  uint64_t guest_boot = 0;          // guest BOOTTIME when host tracing started
  int64_t guest_tsc_offset = 0;     // guest TSC - host TSC
};

struct Alignment {
  std::string method;        // how the offset was found (see Align)
  int64_t offset_ns = 0;     // guest BOOTTIME - host BOOTTIME at the same instant
  bool approximate = false;  // a heuristic: say so
  int64_t spread_ns = -1;    // disagreement between samples, when there are several
  int samples = 0;
  std::string detail;
  // Piecewise-linear offsets (guest BOOTTIME -> offset) when the link synced
  // more than once: drift between them is corrected by interpolation.
  std::vector<std::pair<uint64_t, int64_t>> points;
  double drift_ppm = 0;
};

// The most exact method the inputs allow, in this order: "time-diff",
// "guest-boot-time", "link-sync" (the rounds vperfetto's guest<->host link
// recorded for this guest, in either trace), "tsc-markers" (guest_clock_sync
// events in both),
// "tsc-snapshots" (clock snapshots with a TSC in both), "realtime-snapshots"
// and "start-of-trace" (both approximate). "none" if nothing applies.
Alignment Align(const InputSummary& guest, const InputSummary& host, const AlignOptions& opt,
                const std::string& guest_name = "");

// First timestamped packet, in BOOTTIME where the input's snapshots allow.
bool FirstBoottime(const InputSummary& s, uint64_t* out);

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_ALIGN_H_
