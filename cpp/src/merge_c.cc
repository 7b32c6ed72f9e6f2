// The C ABI of the offline merge (vp_merge_* in vperfetto.h). In the
// tracing-only build (VPERFETTO_MINIMAL) the options still work and
// vp_merge_run reports VP_E_UNSUPPORTED: the ABI is the same in both builds.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "vperfetto/vperfetto.h"
#ifndef VPERFETTO_MINIMAL
#include "inspect/inspect.h"
#include "merge/merge.h"
#else
namespace vpmerge {
enum class MergeMode : int32_t { kHostIntoGuest = 0, kGuestIntoHost = 1, kAddTraces = 2 };
struct GuestInput {
  std::string name, path;
};
struct AlignOptions {
  bool has_time_diff = false;
  int64_t time_diff = 0;
  bool has_guest_boot = false;
  uint64_t guest_boot = 0;
  int64_t guest_tsc_offset = 0;
};
struct MergeOptions {
  std::string host_path;
  std::vector<GuestInput> guests;
  std::string output_path;
  MergeMode mode = MergeMode::kHostIntoGuest;
  AlignOptions align;
  bool machine_ids = false, link_flows = false, dry_run = false, progress = false;
  unsigned threads = 0;
};
}  // namespace vpmerge
#endif

struct vp_merge_options {
  vpmerge::MergeOptions opt;
};

namespace {
int32_t Fail(vp_error* err, int32_t code, const char* msg) {
  if (err) {
    err->code = code;
    std::snprintf(err->message, sizeof(err->message), "%s", msg);
  }
  return code;
}
int32_t Ok(vp_error* err) {
  if (err) {
    err->code = VP_OK;
    err->message[0] = 0;
  }
  return VP_OK;
}
#ifndef VPERFETTO_MINIMAL
// Runs `f` and hands its JSON report to the caller as a malloc'ed string; no
// exception crosses the C boundary.
template <typename F>
int32_t RunForJson(char** report, vp_error* err, F&& f) {
  try {
    std::string json;
    vpsdk::Status st = f(&json);
    if (!st.ok()) return Fail(err, st.code, st.message.c_str());
    char* out = static_cast<char*>(std::malloc(json.size() + 1));
    if (!out) return Fail(err, VP_E_NO_MEMORY, "out of memory");
    std::memcpy(out, json.c_str(), json.size() + 1);
    *report = out;
    return Ok(err);
  } catch (const std::bad_alloc&) {
    return Fail(err, VP_E_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return Fail(err, VP_E_INTERNAL, e.what());
  } catch (...) {
    return Fail(err, VP_E_INTERNAL, "internal error");
  }
}
#endif

}  // namespace

extern "C" {

vp_merge_options* vp_merge_options_new(void) { return new (std::nothrow) vp_merge_options(); }
void vp_merge_options_free(vp_merge_options* o) { delete o; }

int32_t vp_merge_set_host(vp_merge_options* o, const char* path, vp_error* err) {
  if (!o || !path || !*path) return Fail(err, VP_E_INVALID_ARGUMENT, "host path is empty");
  try {
    o->opt.host_path = path;
  } catch (...) {
    return Fail(err, VP_E_NO_MEMORY, "out of memory");
  }
  return Ok(err);
}

int32_t vp_merge_add_guest(vp_merge_options* o, const char* name, const char* path, vp_error* err) {
  if (!o || !path || !*path) return Fail(err, VP_E_INVALID_ARGUMENT, "guest path is empty");
  try {
    o->opt.guests.push_back({name && *name ? name : "guest", path});
  } catch (...) {
    return Fail(err, VP_E_NO_MEMORY, "out of memory");
  }
  return Ok(err);
}

int32_t vp_merge_set_output(vp_merge_options* o, const char* path, vp_error* err) {
  if (!o || !path || !*path) return Fail(err, VP_E_INVALID_ARGUMENT, "output path is empty");
  try {
    o->opt.output_path = path;
  } catch (...) {
    return Fail(err, VP_E_NO_MEMORY, "out of memory");
  }
  return Ok(err);
}

int32_t vp_merge_set_mode(vp_merge_options* o, int32_t mode, vp_error* err) {
  if (!o) return Fail(err, VP_E_INVALID_ARGUMENT, "options are NULL");
  if (mode < VP_MERGE_HOST_INTO_GUEST || mode > VP_MERGE_ADD_TRACES)
    return Fail(err, VP_E_INVALID_ARGUMENT, "unknown merge mode");
  o->opt.mode = static_cast<vpmerge::MergeMode>(mode);
  return Ok(err);
}

void vp_merge_set_time_diff(vp_merge_options* o, int64_t d) {
  if (o) o->opt.align.has_time_diff = true, o->opt.align.time_diff = d;
}
void vp_merge_set_guest_boot_time(vp_merge_options* o, uint64_t t) {
  if (o) o->opt.align.has_guest_boot = true, o->opt.align.guest_boot = t;
}
void vp_merge_set_guest_tsc_offset(vp_merge_options* o, int64_t d) {
  if (o) o->opt.align.guest_tsc_offset = d;
}
void vp_merge_set_machine_ids(vp_merge_options* o, int32_t enable) {
  if (o) o->opt.machine_ids = enable != 0;
}
void vp_merge_set_link_flows(vp_merge_options* o, int32_t enable) {
  if (o) o->opt.link_flows = enable != 0;
}

void vp_merge_set_threads(vp_merge_options* o, uint32_t threads) {
  if (o) o->opt.threads = threads > 256 ? 256 : threads;
}

void vp_merge_set_dry_run(vp_merge_options* o, int32_t enable) {
  if (o) o->opt.dry_run = enable != 0;
}

void vp_merge_set_progress(vp_merge_options* o, int32_t enable) {
  if (o) o->opt.progress = enable != 0;
}

int32_t vp_merge_run(const vp_merge_options* o, char** report, vp_error* err) {
  if (!o || !report) return Fail(err, VP_E_INVALID_ARGUMENT, "options or report is NULL");
  *report = nullptr;
#ifdef VPERFETTO_MINIMAL
  return Fail(err, VP_E_UNSUPPORTED,
              "this libvperfetto is the tracing-only build (VPERFETTO_MINIMAL): no merge engine");
#else
  return RunForJson(report, err, [&](std::string* json) { return vpmerge::Merge(o->opt, json); });
#endif
}

int32_t vp_inspect(const char* path, uint32_t flags, char** report, vp_error* err) {
  if (!path || !*path || !report) return Fail(err, VP_E_INVALID_ARGUMENT, "path or report is NULL");
  *report = nullptr;
#ifdef VPERFETTO_MINIMAL
  (void)flags;
  return Fail(err, VP_E_UNSUPPORTED, "this libvperfetto is the tracing-only build (VPERFETTO_MINIMAL)");
#else
  return RunForJson(report, err, [&](std::string* json) {
    return vpinspect::Inspect(path, (flags & VP_INSPECT_CHECK) != 0, json);
  });
#endif
}

void vp_string_free(char* s) { std::free(s); }

}  // extern "C"
