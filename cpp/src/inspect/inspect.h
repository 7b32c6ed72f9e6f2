// Summary and validation of a trace (vp_inspect in vperfetto.h).
#ifndef VPERFETTO_INSPECT_INSPECT_H_
#define VPERFETTO_INSPECT_INSPECT_H_

#include <string>

#include "vpsdk/tracing.h"

namespace vpinspect {

// One streaming pass over `path` (plain or gzip); `json` receives the summary
// and, with `check`, the findings.
vpsdk::Status Inspect(const std::string& path, bool check, std::string* json);

}  // namespace vpinspect

#endif  // VPERFETTO_INSPECT_INSPECT_H_
