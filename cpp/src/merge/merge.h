// Merging guest and host traces into one, on one clock.
#ifndef VPERFETTO_MERGE_MERGE_H_
#define VPERFETTO_MERGE_MERGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "align.h"
#include "vpsdk/tracing.h"

namespace vpmerge {

enum class MergeMode : int32_t {
  kHostIntoGuest = 0,  // the original's default: the guest is the main timeline
  kGuestIntoHost = 1,  // the host is the main timeline (always with several guests)
  kAddTraces = 2,      // both in one file, unchanged
};

struct GuestInput {
  std::string name;
  std::string path;
};

struct MergeOptions {
  std::string host_path;
  std::vector<GuestInput> guests;
  std::string output_path;
  MergeMode mode = MergeMode::kHostIntoGuest;
  AlignOptions align;
  bool machine_ids = false;  // tag moved packets with TracePacket.machine_id
  // Keep the moved sides' flow ids as they are, so that one both sides use
  // links their events (ids passed across the VM boundary); by default they
  // are renumbered apart from the main's (ids that meet by chance).
  bool link_flows = false;
  unsigned threads = 0;      // 0: as many as pay (AutoThreads()); the output is the same
  bool dry_run = false;      // scan and align only: no output is written
  bool progress = false;     // a progress line on stderr (terminals, large inputs)
};

// Runs the merge; on success `report_json` describes what was done.
vpsdk::Status Merge(const MergeOptions& opt, std::string* report_json);

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_MERGE_H_
