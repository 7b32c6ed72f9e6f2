// Deflate compression of a finished trace file (deflate.cc).
#ifndef VPSDK_SRC_DEFLATE_H_
#define VPSDK_SRC_DEFLATE_H_

#include <string>

#include "vpsdk/tracing.h"

namespace vpsdk {

// Whether this build has zlib (the tracing-only build has none).
bool DeflateAvailable();

// Rewrites the trace at `path` (a regular file of Trace.packet fields) with
// runs of its packets in TracePacket.compressed_packets at deflate `level`
// (1..9). Not a regular file, or not packets only: left as it is (Ok). On
// an error the uncompressed trace stays.
Status DeflateTraceFile(const std::string& path, int level);

}  // namespace vpsdk

#endif  // VPSDK_SRC_DEFLATE_H_
