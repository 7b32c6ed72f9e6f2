// The merge's second pass over one input: packets rewritten in batches, on
// several threads when there are cores to spare, written in input order.
#ifndef VPERFETTO_MERGE_COPY_SIDE_H_
#define VPERFETTO_MERGE_COPY_SIDE_H_

#include <string>

#include "progress.h"
#include "rewrite.h"
#include "trace_io.h"

namespace vpmerge {

// The threads a merge uses when asked for 0 ("as many as pay"): the cores,
// at most 4 (beyond that the writer and the page cache are the limit).
unsigned AutoThreads();

// Rewrites the input `in` (scanned) with `t` into `out` (a dry run when
// null: only `stats` are produced). The output does not depend on `threads`:
// each batch of packets is rewritten from the sequences' state at its start.
// An input that stays as it is and holds nothing but packets is copied as a
// byte range.
Status RewriteSide(const InputSummary& in, const Transform& t, unsigned threads, OutputFile* out,
                   Progress* progress, RewriteStats* stats);

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_COPY_SIDE_H_
