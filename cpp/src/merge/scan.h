// The merge's first pass: what each input holds that alignment and id
// remapping need, in one streaming read.
#ifndef VPERFETTO_MERGE_SCAN_H_
#define VPERFETTO_MERGE_SCAN_H_

#include <string>
#include <vector>

#include "trace_io.h"
#include "trace_model.h"

namespace vpmerge {

// Limits that keep hostile inputs bounded.
constexpr size_t kMaxInflatedPacket = 64u << 20;  // one compressed_packets field

class Progress;
Status ScanInput(const std::string& path, InputSummary* out, Progress* progress = nullptr);

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_SCAN_H_
