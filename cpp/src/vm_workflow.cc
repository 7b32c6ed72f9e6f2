// The host-side VM workflow of the original vperfetto (vp_vm_* in
// vperfetto.h): enable -> events -> disable saves the host trace, waits for
// the guest's trace file to stop growing and writes the combined trace.
// Implemented once here; the original C++ API (vperfetto.h at the include
// root) and the Python API (vperfetto.vm) are thin layers over it.
#include <sys/stat.h>

#include <atomic>
#include <cstdarg>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vperfetto/vperfetto.h"
#include "vpsdk/clock.h"
#include "vpsdk/tracing.h"
#ifndef VPERFETTO_MINIMAL
#include "merge/merge.h"
#endif

namespace {

int32_t Fail(vp_error* err, int32_t code, const std::string& msg) {
  if (err) {
    err->code = code;
    std::snprintf(err->message, sizeof(err->message), "%s", msg.c_str());
  }
  return code;
}
[[maybe_unused]] int32_t Report(vp_error* err, const vpsdk::Status& st) {
  if (st.ok()) {
    if (err) err->code = VP_OK, err->message[0] = 0;
    return VP_OK;
  }
  return Fail(err, st.code, st.message);
}

const char* const kEnvNames[3] = {"VPERFETTO_HOST_FILE", "VPERFETTO_GUEST_FILE",
                                  "VPERFETTO_COMBINED_FILE"};
const char* const kRoles[3] = {"host", "guest", "combined"};

struct State {
  std::mutex mu;
  std::condition_variable saved;
  std::string files[3] = {"vmm.trace", "", ""};
  bool has_file[3] = {true, false, false};
  int64_t time_diff = 0;
  bool has_time_diff = false;
  uint64_t host_start = 0, guest_start = 0;
  bool add_traces = false;
  uint32_t poll_ms = 1000, timeout_ms = 20000;
  bool verbose = true;
  std::unique_ptr<vpsdk::Session> session;
  std::atomic<uint8_t> disabled{1};
  bool saving = false;
  vpsdk::Status last_save;
  std::thread saver;
};

// Leaked on purpose: a saver thread may still run while the process exits.
State& S() {
  static State* s = new State();
  return *s;
}

[[maybe_unused]] void Log(const State& s, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
[[maybe_unused]] void Log(const State& s, const char* fmt, ...) {
  if (!s.verbose) return;
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
}

bool ValidFile(int32_t which) { return which >= VP_VM_HOST_FILE && which <= VP_VM_COMBINED_FILE; }

#ifndef VPERFETTO_MINIMAL
int64_t FileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return static_cast<int64_t>(st.st_size);
}

// The background part of disable: wait for the guest trace, then combine.
void SaveCombined(std::string host, std::string guest, std::string combined, bool has_diff,
                  int64_t diff, bool add_traces, uint32_t poll_ms, uint32_t timeout_ms) {
  State& s = S();
  vpsdk::Status result;
  Log(s, "vperfetto: waiting for the guest trace %s to stop growing...\n", guest.c_str());
  int64_t last = -2;
  int stable = 0;
  bool ready = false;
  for (uint64_t waited = 0; waited < timeout_ms; waited += poll_ms) {
    vpsdk::SleepUs(uint64_t{poll_ms} * 1000);
    int64_t size = FileSize(guest);
    if (size <= 0) {
      stable = 0;  // not there yet (or empty)
      continue;
    }
    if (size != last) {
      last = size;
      stable = 0;
      continue;
    }
    if (++stable >= 2) {
      ready = true;
      break;
    }
  }
  if (!ready) {
    result = vpsdk::Status::Error(
        VP_E_IO, "the guest trace '" + guest + "' did not appear or stop growing within " +
                     std::to_string(timeout_ms) + " ms; the host trace is in '" + host + "'");
    Log(s, "vperfetto: %s\n", result.message.c_str());
  } else {
    vpmerge::MergeOptions opt;
    opt.host_path = host;
    opt.guests.push_back({"guest", guest});
    opt.output_path = combined;
    opt.mode = add_traces ? vpmerge::MergeMode::kAddTraces : vpmerge::MergeMode::kHostIntoGuest;
    if (has_diff) {
      opt.align.has_time_diff = true;
      opt.align.time_diff = diff;
    }
    std::string report;
    try {
      result = vpmerge::Merge(opt, &report);
    } catch (const std::exception& e) {
      result = vpsdk::Status::Error(VP_E_INTERNAL, e.what());
    }
    if (result.ok()) Log(s, "vperfetto: wrote the combined trace %s\n", combined.c_str());
    else Log(s, "vperfetto: combining failed: %s\n", result.message.c_str());
  }
  std::lock_guard<std::mutex> lock(s.mu);
  s.last_save = result;
  s.saving = false;
  s.saved.notify_all();
}
#endif

}  // namespace

extern "C" {

int32_t vp_vm_set_file(int32_t which, const char* path, vp_error* err) {
  if (!ValidFile(which)) return Fail(err, VP_E_INVALID_ARGUMENT, "unknown file role");
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  s.has_file[which] = path && *path;
  s.files[which] = s.has_file[which] ? path : "";
  return Fail(err, VP_OK, "");
}

const char* vp_vm_file(int32_t which) {
  if (!ValidFile(which)) return nullptr;
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.has_file[which] ? s.files[which].c_str() : nullptr;
}

void vp_vm_set_guest_time(uint64_t guest_boot_ns) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.disabled.load()) return;  // as the original: not while tracing
  s.guest_start = guest_boot_ns;
  s.host_start = vpsdk::BootTimeNs();  // the host trace's clock
  s.time_diff = static_cast<int64_t>(guest_boot_ns - s.host_start);
  s.has_time_diff = true;
}

void vp_vm_set_time_diff(int64_t d) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  s.time_diff = d;
  s.has_time_diff = true;
}
int64_t vp_vm_time_diff(void) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.time_diff;
}
int32_t vp_vm_has_time_diff(void) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.has_time_diff ? 1 : 0;
}
uint64_t vp_vm_host_start_time(void) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.host_start;
}
uint64_t vp_vm_guest_start_time(void) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.guest_start;
}
void vp_vm_set_start_times(uint64_t host_ns, uint64_t guest_ns) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  s.host_start = host_ns;
  s.guest_start = guest_ns;
  // The original's meaning: the host's and the guest's BOOTTIME at one
  // instant, i.e. the alignment (as setGuestTime records it).
  if (host_ns && guest_ns) {
    s.time_diff = static_cast<int64_t>(guest_ns - host_ns);
    s.has_time_diff = true;
  }
}
void vp_vm_set_add_traces(int32_t enable) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  s.add_traces = enable != 0;
}
int32_t vp_vm_add_traces(void) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.add_traces ? 1 : 0;
}
void vp_vm_set_guest_wait(uint32_t poll_ms, uint32_t timeout_ms) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (poll_ms) s.poll_ms = poll_ms;
  if (timeout_ms) s.timeout_ms = timeout_ms;
}
void vp_vm_set_verbose(int32_t enable) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  s.verbose = enable != 0;
}

int32_t vp_vm_is_enabled(void) { return S().disabled.load() ? 0 : 1; }
int32_t vp_vm_is_saving(void) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.saving ? 1 : 0;
}
const uint8_t* vp_vm_disabled_flag(void) {
  static_assert(sizeof(std::atomic<uint8_t>) == 1, "the flag is read as a plain byte");
  return reinterpret_cast<const uint8_t*>(&S().disabled);
}

#ifdef VPERFETTO_MINIMAL

int32_t vp_vm_enable(vp_error* err) {
  return Fail(err, VP_E_UNSUPPORTED, "the tracing-only build has no host-side workflow");
}
int32_t vp_vm_disable(vp_error* err) {
  return Fail(err, VP_E_UNSUPPORTED, "the tracing-only build has no host-side workflow");
}
int32_t vp_vm_wait_saving_done(vp_error* err) { return Fail(err, VP_OK, ""); }

#else

int32_t vp_vm_enable(vp_error* err) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  try {
    for (int i = 0; i < 3; i++) {
      const char* v = std::getenv(kEnvNames[i]);
      if (v && *v) {
        s.files[i] = v;
        s.has_file[i] = true;
        Log(s, "vperfetto: using %s [%s] for the %s trace\n", kEnvNames[i], v, kRoles[i]);
      }
    }
    if (!s.has_file[VP_VM_HOST_FILE])
      return Fail(err, VP_E_INVALID_ARGUMENT, "no host trace file is set");
    if (s.saving || s.session) return Fail(err, VP_OK, "");  // still saving, or enabled
    if (s.saver.joinable()) s.saver.join();
    if (vpsdk::ProcessName().empty()) vpsdk::SetProcessName("VirtualMachineMonitorProcess");
    vpsdk::SessionConfig cfg;
    cfg.output_path = s.files[VP_VM_HOST_FILE];
    cfg.buffer_kb = 100 * 1024;
    cfg.mode = vpsdk::BufferMode::kRing;
    std::unique_ptr<vpsdk::Session> session;
    vpsdk::Status st = vpsdk::Session::Start(cfg, &session);
    if (!st.ok()) return Report(err, st);
    s.session = std::move(session);
    s.disabled.store(0);
    Log(s, "vperfetto: tracing begins; host trace %s, guest trace %s, combined trace %s, "
           "guest time diff %lld ns%s\n",
        s.files[0].c_str(), s.has_file[1] ? s.files[1].c_str() : "(none)",
        s.has_file[2] ? s.files[2].c_str() : "(none)", static_cast<long long>(s.time_diff),
        s.has_time_diff ? "" : " (to be derived from the traces)");
    return Fail(err, VP_OK, "");
  } catch (const std::exception& e) {
    return Fail(err, VP_E_INTERNAL, e.what());
  }
}

int32_t vp_vm_disable(vp_error* err) {
  State& s = S();
  std::unique_lock<std::mutex> lock(s.mu);
  if (!s.session) return Fail(err, VP_OK, "");
  s.disabled.store(1);
  if (s.saving) return Fail(err, VP_OK, "");
  s.saving = true;
  s.last_save = vpsdk::Status::Ok();
  std::unique_ptr<vpsdk::Session> session = std::move(s.session);
  vpsdk::Status st = session->Stop();
  session.reset();
  const std::string host = s.files[VP_VM_HOST_FILE];
  if (!st.ok()) {
    s.saving = false;
    s.last_save = st;
    s.saved.notify_all();
    return Report(err, st);
  }
  Log(s, "vperfetto: tracing ended; host trace saved to %s\n", host.c_str());
  if (!s.has_file[VP_VM_GUEST_FILE] || !s.has_file[VP_VM_COMBINED_FILE]) {
    Log(s, "vperfetto: no guest or combined trace file set: saved only the host trace\n");
    s.saving = false;
    s.saved.notify_all();
    return Fail(err, VP_OK, "");
  }
  uint32_t poll = s.poll_ms;
  if (const char* v = std::getenv("VPERFETTO_GUEST_POLL_MS")) {
    long ms = std::strtol(v, nullptr, 10);
    if (ms > 0) poll = static_cast<uint32_t>(ms);
  }
  if (s.saver.joinable()) s.saver.join();
  try {
    s.saver = std::thread(SaveCombined, host, s.files[VP_VM_GUEST_FILE], s.files[VP_VM_COMBINED_FILE],
                          s.has_time_diff, s.time_diff, s.add_traces, poll, s.timeout_ms);
  } catch (const std::exception& e) {
    s.saving = false;
    return Fail(err, VP_E_INTERNAL, std::string("cannot start the saver thread: ") + e.what());
  }
  return Fail(err, VP_OK, "");
}

int32_t vp_vm_wait_saving_done(vp_error* err) {
  State& s = S();
  std::thread saver;
  vpsdk::Status result;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    if (s.saving) Log(s, "vperfetto: waiting for the trace saving to be done...\n");
    s.saved.wait(lock, [&] { return !s.saving; });
    saver = std::move(s.saver);
    result = s.last_save;
  }
  if (saver.joinable() && saver.get_id() != std::this_thread::get_id()) saver.join();
  return Report(err, result);
}

#endif  // VPERFETTO_MINIMAL

}  // extern "C"
