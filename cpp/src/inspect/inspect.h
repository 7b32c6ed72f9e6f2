// Summary and validation of a trace (vp_inspect in vperfetto.h).
#ifndef VPERFETTO_INSPECT_INSPECT_H_
#define VPERFETTO_INSPECT_INSPECT_H_

#include <string>

#include "inspect/timeline.h"
#include "vpsdk/tracing.h"

namespace vpinspect {

// One streaming pass over `path` (plain or gzip); `json` receives the summary
// and, with `check`, the findings.
vpsdk::Status Inspect(const std::string& path, bool check, std::string* json);

// The timeline model of `path` (timeline.h) and, with `json`, the summary
// (and with `check` the findings) from the same pass. Without a summary, a
// trace that goes bad after its first packets gives the model of those
// packets (it says it is truncated) and an empty file an empty model.
vpsdk::Status InspectTimeline(const std::string& path, const TimelineOptions& options, bool check,
                              std::string* tracks, std::string* rows, std::string* json);

}  // namespace vpinspect

#endif  // VPERFETTO_INSPECT_INSPECT_H_
