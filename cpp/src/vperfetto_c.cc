// The C ABI (vperfetto.h) over the vpsdk runtime. No exception crosses it:
// every entry point that can fail catches and returns a status.
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "vperfetto/vperfetto.h"
#include "vpsdk/clock.h"
#include "vpsdk/tracing.h"

#ifndef VPERFETTO_VERSION_STRING
#error "VPERFETTO_VERSION_STRING must be defined by the build"
#endif

struct vp_config {
  vpsdk::SessionConfig cfg;
};

struct vp_session {
  std::unique_ptr<vpsdk::Session> session;
};

// vp_arg and vp_event must be the same bytes as their vpsdk twins.
static_assert(sizeof(vp_arg) == sizeof(vpsdk::Arg), "vp_arg layout");
static_assert(offsetof(vp_arg, len) == offsetof(vpsdk::Arg, len), "vp_arg layout");
static_assert(sizeof(vp_event) == sizeof(vpsdk::Event), "vp_event layout");
static_assert(offsetof(vp_event, counter_double) == offsetof(vpsdk::Event, counter_double),
              "vp_event layout");
static_assert(offsetof(vp_event, terminating_flows) ==
                  offsetof(vpsdk::Event, terminating_flows), "vp_event layout");
static_assert(static_cast<int>(VP_E_INTERNAL) == static_cast<int>(vpsdk::kInternal), "status codes");

namespace {

int32_t Fail(vp_error* err, int32_t code, const char* fmt, const char* arg = "") {
  if (err) {
    err->code = code;
    std::snprintf(err->message, sizeof(err->message), fmt, arg);
  }
  return code;
}

int32_t Report(vp_error* err, const vpsdk::Status& st) {
  if (st.ok()) {
    if (err) {
      err->code = VP_OK;
      err->message[0] = 0;
    }
    return VP_OK;
  }
  return Fail(err, st.code, "%s", st.message.c_str());
}

template <typename F>
int32_t Guard(vp_error* err, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return Fail(err, VP_E_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return Fail(err, VP_E_INTERNAL, "internal error: %s", e.what());
  } catch (...) {
    return Fail(err, VP_E_INTERNAL, "internal error");
  }
}

}  // namespace

extern "C" {

const char* vp_status_name(int32_t code) {
  switch (code) {
    case VP_OK: return "ok";
    case VP_E_INVALID_ARGUMENT: return "invalid argument";
    case VP_E_STATE: return "invalid state";
    case VP_E_IO: return "I/O error";
    case VP_E_NO_MEMORY: return "out of memory";
    case VP_E_FORMAT: return "invalid trace format";
    case VP_E_UNSUPPORTED: return "unsupported";
    case VP_E_INTERNAL: return "internal error";
    default: return "unknown status";
  }
}

uint32_t vp_abi_version(void) { return VPERFETTO_ABI_VERSION; }
const char* vp_version(void) { return VPERFETTO_VERSION_STRING; }

uint64_t vp_boot_time_ns(void) { return vpsdk::BootTimeNs(); }
void vp_sleep_us(uint64_t us) { vpsdk::SleepUs(us); }
uint64_t vp_uuid_lsb(void) { return vpsdk::UuidLsb(); }
uint64_t vp_tsc(void) { return vpsdk::ReadTsc(); }

void vp_clock_sync_marker(void) {
  if (!vpsdk::IsTracing()) return;
  static const uint32_t kCat = vpsdk::RegisterCategory("vperfetto");
  static const uint32_t kName = vpsdk::InternString("guest_clock_sync", 16);
  static const uint32_t kBoot = vpsdk::InternString("clock_sync_boottime", 19);
  static const uint32_t kMono = vpsdk::InternString("clock_sync_monotonic", 20);
  static const uint32_t kTsc = vpsdk::InternString("clock_sync_cputime", 18);
  vpsdk::Arg args[3] = {};
  args[0].name = kBoot;
  args[1].name = kMono;
  args[2].name = kTsc;
  for (auto& a : args) a.type = vpsdk::kArgUint;
  args[2].u = vpsdk::ReadTsc();
  args[0].u = vpsdk::BootTimeNs();
  args[1].u = vpsdk::ReadClockNs(CLOCK_MONOTONIC);
  vpsdk::Event ev = {};
  ev.type = vpsdk::kBegin;
  ev.category = kCat;
  ev.name = kName;
  ev.timestamp_ns = args[0].u;
  ev.args = args;
  ev.nargs = 3;
  vpsdk::Emit(ev);
  vpsdk::Event end = {};
  end.type = vpsdk::kEnd;
  vpsdk::Emit(end);
}

vp_config* vp_config_new(void) { return new (std::nothrow) vp_config(); }
void vp_config_free(vp_config* c) { delete c; }

int32_t vp_config_set_output(vp_config* c, const char* path, vp_error* err) {
  if (!c) return Fail(err, VP_E_INVALID_ARGUMENT, "config is NULL");
  if (!path || !*path) return Fail(err, VP_E_INVALID_ARGUMENT, "output path is empty");
  return Guard(err, [&] {
    c->cfg.output_path = path;
    return Report(err, vpsdk::Status::Ok());
  });
}

int32_t vp_config_set_buffer(vp_config* c, uint32_t size_kb, int32_t mode, vp_error* err) {
  if (!c) return Fail(err, VP_E_INVALID_ARGUMENT, "config is NULL");
  if (mode != VP_BUFFER_RING && mode != VP_BUFFER_DISCARD && mode != VP_BUFFER_STREAM)
    return Fail(err, VP_E_INVALID_ARGUMENT, "unknown buffer mode");
  if (size_kb < 4 || size_kb > (64u << 20))
    return Fail(err, VP_E_INVALID_ARGUMENT, "buffer size must be 4 KiB .. 64 GiB");
  c->cfg.buffer_kb = size_kb;
  c->cfg.mode = static_cast<vpsdk::BufferMode>(mode);
  return Report(err, vpsdk::Status::Ok());
}

static int32_t AddCategory(vp_config* c, const char* name, bool enable, vp_error* err) {
  if (!c) return Fail(err, VP_E_INVALID_ARGUMENT, "config is NULL");
  if (!name || !*name) return Fail(err, VP_E_INVALID_ARGUMENT, "category name is empty");
  return Guard(err, [&] {
    (enable ? c->cfg.enabled_categories : c->cfg.disabled_categories).emplace_back(name);
    return Report(err, vpsdk::Status::Ok());
  });
}

int32_t vp_config_enable_category(vp_config* c, const char* name, vp_error* err) {
  return AddCategory(c, name, true, err);
}
int32_t vp_config_disable_category(vp_config* c, const char* name, vp_error* err) {
  return AddCategory(c, name, false, err);
}

int32_t vp_config_set_sequence_base(vp_config* c, uint32_t base, vp_error* err) {
  if (!c) return Fail(err, VP_E_INVALID_ARGUMENT, "config is NULL");
  if (base > UINT32_MAX - (1u << 16))
    return Fail(err, VP_E_INVALID_ARGUMENT, "sequence base leaves no room for sequences");
  c->cfg.sequence_base = base;
  return Report(err, vpsdk::Status::Ok());
}

int32_t vp_config_set_incremental_timestamps(vp_config* c, int32_t incremental, uint32_t unit_ns,
                                             vp_error* err) {
  if (!c) return Fail(err, VP_E_INVALID_ARGUMENT, "config is NULL");
  if (unit_ns > 1000000000u)
    return Fail(err, VP_E_INVALID_ARGUMENT, "timestamp unit must be 1 ns .. 1 s");
  c->cfg.incremental_timestamps = incremental != 0;
  c->cfg.timestamp_unit_ns = unit_ns ? unit_ns : 1;
  return Report(err, vpsdk::Status::Ok());
}

int32_t vp_config_set_crash_safe(vp_config* c, int32_t on, vp_error* err) {
  if (!c) return Fail(err, VP_E_INVALID_ARGUMENT, "config is NULL");
  c->cfg.crash_safe = on != 0;
  return Report(err, vpsdk::Status::Ok());
}

int32_t vp_config_set_flush_period_ms(vp_config* c, uint32_t ms, vp_error* err) {
  if (!c) return Fail(err, VP_E_INVALID_ARGUMENT, "config is NULL");
  if (ms > 3600000) return Fail(err, VP_E_INVALID_ARGUMENT, "flush period must be 0 .. 3600000 ms");
  c->cfg.flush_period_ms = ms;
  return Report(err, vpsdk::Status::Ok());
}

int32_t vp_config_set_compression(vp_config* c, uint32_t level, vp_error* err) {
  if (!c) return Fail(err, VP_E_INVALID_ARGUMENT, "config is NULL");
  if (level > 9) return Fail(err, VP_E_INVALID_ARGUMENT, "compression level must be 0 .. 9");
  c->cfg.compression_level = level;
  return Report(err, vpsdk::Status::Ok());
}

int32_t vp_session_start(const vp_config* c, vp_session** out, vp_error* err) {
  if (!c || !out) return Fail(err, VP_E_INVALID_ARGUMENT, "config or out is NULL");
  *out = nullptr;
  return Guard(err, [&] {
    std::unique_ptr<vpsdk::Session> s;
    vpsdk::Status st = vpsdk::Session::Start(c->cfg, &s);
    if (!st.ok()) return Report(err, st);
    *out = new vp_session{std::move(s)};
    return Report(err, st);
  });
}

int32_t vp_session_flush(vp_session* s, vp_error* err) {
  if (!s) return Fail(err, VP_E_INVALID_ARGUMENT, "session is NULL");
  return Guard(err, [&] { return Report(err, s->session->Flush()); });
}

int32_t vp_session_stop(vp_session* s, vp_error* err) {
  if (!s) return Fail(err, VP_E_INVALID_ARGUMENT, "session is NULL");
  return Guard(err, [&] { return Report(err, s->session->Stop()); });
}

void vp_session_free(vp_session* s) {
  try {
    delete s;
  } catch (...) {
  }
}

int32_t vp_session_is_active(const vp_session* s) { return s && s->session->active() ? 1 : 0; }
int32_t vp_is_tracing(void) { return vpsdk::IsTracing() ? 1 : 0; }

uint64_t vp_session_stat(const vp_session* s, int32_t stat) {
  return s ? s->session->Stat(stat) : 0;
}

const char* vp_session_recovered(const vp_session* s) {
  return s ? s->session->recovered_path().c_str() : "";
}

int32_t vp_recover(const char* image, const char* output, vp_recovery* report, vp_error* err) {
  if (!image || !*image) return Fail(err, VP_E_INVALID_ARGUMENT, "no crash image was given");
  return Guard(err, [&] {
    vpsdk::RecoverReport r;
    vpsdk::Status st = vpsdk::RecoverImage(image, output ? output : "", &r);
    if (report) {
      std::memset(report, 0, sizeof(*report));
      report->image_version = r.image_version;
      report->pid = r.pid;
      report->mode = r.mode;
      report->sequences = r.sequences;
      report->packets = r.packets;
      report->bytes = r.bytes;
      report->chunks = r.chunks;
      report->stream_bytes = r.stream_bytes;
      report->packets_lost = r.packets_lost;
      report->packets_skipped = r.packets_skipped;
      report->chunks_lost = r.chunks_lost;
      report->last_timestamp_ns = r.last_timestamp_ns;
      std::snprintf(report->session_output, sizeof(report->session_output), "%s",
                    r.output_path.c_str());
    }
    return Report(err, st);
  });
}

uint32_t vp_category(const char* name) {
  try {
    return vpsdk::RegisterCategory(name);
  } catch (...) {
    return 0;
  }
}

uint32_t vp_intern(const char* name, size_t len) {
  try {
    return vpsdk::InternString(name, len);
  } catch (...) {
    return 0;
  }
}

int32_t vp_track_new(const char* name, uint32_t parent, uint32_t* out, vp_error* err) {
  return Guard(err, [&] { return Report(err, vpsdk::NewTrack(name, parent, out)); });
}

int32_t vp_counter_track(const char* name, const char* unit, uint32_t* out, vp_error* err) {
  return Guard(err, [&] { return Report(err, vpsdk::CounterTrack(name, unit, out)); });
}

uint64_t vp_track_uuid(uint32_t track) { return vpsdk::TrackUuid(track); }

int32_t vp_track_new_for_thread(const char* name, uint32_t* out, vp_error* err) {
  return Guard(err, [&] { return Report(err, vpsdk::NewThreadTrack(name, out)); });
}
void vp_track_free(uint32_t track) {
  try {
    vpsdk::FreeTrack(track);
  } catch (...) {
  }
}
int32_t vp_category_enabled(uint32_t category) {
  return vpsdk::CategoryEnabled(category) ? 1 : 0;
}

void vp_set_process_name(const char* name) {
  try {
    vpsdk::SetProcessName(name);
  } catch (...) {
  }
}

void vp_set_thread_name(const char* name) {
  try {
    vpsdk::SetThreadName(name);
  } catch (...) {
  }
}

void vp_set_default_process_name(const char* name) {
  try {
    vpsdk::SetProcessNameDefault(name);
  } catch (...) {
  }
}

uint32_t vp_func_register(const char* name, size_t name_len, const char* file, size_t file_len,
                          uint32_t line) {
  try {
    return vpsdk::RegisterFunc(name, name_len, file, file_len, line);
  } catch (...) {
    return 0;
  }
}
// The profile calls throw nothing (profile.cc's general paths catch).
void vp_func_enter(uint32_t func) { vpsdk::FuncEnter(func); }
void vp_func_exit(void) { vpsdk::FuncExit(); }
void vp_func_enter_keyed(uint32_t func, const void* key) { vpsdk::FuncEnter(func, key); }
int32_t vp_func_exit_keyed(const void* key) { return vpsdk::FuncExitKeyed(key) ? 1 : 0; }
void vp_profile_set_options(uint64_t min_duration_ns, uint32_t max_depth) {
  vpsdk::SetProfileOptions(min_duration_ns, max_depth);
}
uint32_t vp_func_depth(void) { return vpsdk::FuncDepth(); }
void vp_func_close_all(void) { vpsdk::FuncCloseAll(); }

void vp_begin(uint32_t category, uint32_t name) { vpsdk::SliceBegin(category, name); }
void vp_end(void) { vpsdk::SliceEnd(); }
void vp_instant(uint32_t category, uint32_t name) { vpsdk::Instant(category, name); }
void vp_begin_str(uint32_t category, const char* name, size_t len) {
  vpsdk::SliceBeginStr(category, name, len);
}
void vp_instant_str(uint32_t category, const char* name, size_t len) {
  vpsdk::InstantStr(category, name, len);
}
void vp_counter_int(uint32_t track, int64_t value) { vpsdk::CounterInt(track, value); }
void vp_counter_double(uint32_t track, double value) { vpsdk::CounterDouble(track, value); }

void vp_emit(const vp_event* event) {
  if (!event) return;
  vpsdk::Event ev = *reinterpret_cast<const vpsdk::Event*>(event);
  // Counts without arrays are read as empty rather than dereferenced.
  if (!ev.args) ev.nargs = 0;
  if (!ev.flows) ev.nflows = 0;
  if (!ev.terminating_flows) ev.nterminating_flows = 0;
  vpsdk::Emit(ev);
}

}  // extern "C"

// --- VPERFETTO_AUTOSTART ---------------------------------------------------------
// A C/C++ program linked to libvperfetto traces from its start into the file
// VPERFETTO_AUTOSTART names -- streaming, stopped at exit -- as a Python
// process does (`python -m vperfetto guest ... -- CMD` sets it for CMD). The
// variable is taken out of the environment, so the program's own children do
// not write to the same file. The Python package takes it out before it loads
// this library (vperfetto/_native.py), and starts its own session from it.
//
// A dynamic initializer: this file comes after clock.cc and session.cc on the
// link line (CMakeLists.txt), so their globals are initialised before it runs.
namespace {

vp_session* g_autostarted = nullptr;

void StopAutostarted() {
  vp_error err = {};
  if (g_autostarted && vp_session_stop(g_autostarted, &err) != VP_OK)
    std::fprintf(stderr, "vperfetto: VPERFETTO_AUTOSTART: the trace was not saved: %s\n",
                 err.message);
}

struct Autostart {
  Autostart() {
    const char* env = std::getenv("VPERFETTO_AUTOSTART");
    if (!env || !*env) return;
    std::string path = env;
    unsetenv("VPERFETTO_AUTOSTART");
    vp_error err = {};
    vp_config* c = vp_config_new();
    if (!c) {
      std::snprintf(err.message, sizeof(err.message), "out of memory");
    } else if (vp_config_set_output(c, path.c_str(), &err) == VP_OK &&
               vp_config_set_buffer(c, 16384, VP_BUFFER_STREAM, &err) == VP_OK &&
               vp_session_start(c, &g_autostarted, &err) == VP_OK) {
      // Registered after the session started: runs before the destructors
      // of what the start constructed.
      std::atexit(StopAutostarted);
    }
    vp_config_free(c);
    if (!g_autostarted)
      std::fprintf(stderr, "vperfetto: VPERFETTO_AUTOSTART=%s: not tracing: %s\n", path.c_str(),
                   err.message);
  }
};

Autostart g_autostart;

}  // namespace
