// vperfetto.h - the C++ API of the original vperfetto, as a drop-in.
//
// A program written against the original header compiles against this one
// unchanged and links with -lvperfetto (python -m vperfetto --includes/--libs).
// Every call is an inline function over the C ABI in <vperfetto/vperfetto.h>,
// so no C++ symbols cross the library boundary; the online workflow itself
// (enable -> events -> disable -> host trace saved -> combined trace once the
// guest file stops growing) lives in the library and is shared with Python.
//
// Differences from the original, all fixes: traceCounter works; the time
// diff recorded by setGuestTime is taken on CLOCK_BOOTTIME (the host trace's
// clock); without a time diff the combined trace is aligned from the traces
// themselves (clock-sync markers, TSC snapshots...); the host trace is kept
// even when the guest trace never arrives; combineTraces reports errors on
// stderr instead of writing an empty file.
#ifndef VPERFETTO_ORIGINAL_API_H_
#define VPERFETTO_ORIGINAL_API_H_

#include <functional>
#include <cstdint>

#include <cstdio>
#include <cstring>

#include <vperfetto/vperfetto.hpp>

#ifndef VPERFETTO_EXPORT
#define VPERFETTO_EXPORT
#endif

namespace vperfetto {

struct VirtualDeviceTraceConfig {
  bool initialized;
  bool tracingDisabled;
  uint32_t packetsWritten;
  bool sequenceIdWritten;
  uint32_t currentInterningId;
  uint32_t currentThreadId;
  const char* hostFilename;
  const char* guestFilename;
  const char* combinedFilename;
  uint64_t hostStartTime;
  uint64_t guestStartTime;
  int64_t guestTimeDiff;  // guest - host
  uint32_t perThreadStorageMb;
  bool saving;
  bool addTraces;
};

struct TraceCombineConfig {
  const char* guestFile;
  const char* hostFile;
  const char* combinedFile;
  // Use guestClockBootTimeNs: the guest's CLOCK_BOOTTIME when host tracing
  // started (that is, at the host trace's first timestamp).
  bool useGuestAbsoluteTime = false;
  uint64_t guestClockBootTimeNs;
  // Use guestClockTimeDiffNs (guest - host); useGuestAbsoluteTime wins.
  bool useGuestTimeDiff = false;
  int64_t guestClockTimeDiffNs;
  // Guest TSC - host TSC, for time sync through clock-sync markers.
  int64_t guestTscOffset = 0;
  bool mergeGuestIntoHost = false;  // the host is the main timeline
  bool addTraces = false;           // both in one file, unchanged
};

namespace original_detail {

inline bool& Initialized() {
  static bool initialized = false;
  return initialized;
}

inline void Warn(const char* what, const vp_error& err) {
  std::fprintf(stderr, "vperfetto::%s: %s\n", what, err.message);
}

}  // namespace original_detail

VPERFETTO_EXPORT inline void initialize(const bool** tracingDisabledPtr = nullptr) {
  original_detail::Initialized() = true;
  if (tracingDisabledPtr)
    *tracingDisabledPtr = reinterpret_cast<const bool*>(vp_vm_disabled_flag());
}

VPERFETTO_EXPORT inline VirtualDeviceTraceConfig queryTraceConfig() {
  VirtualDeviceTraceConfig c{};
  c.initialized = original_detail::Initialized();
  c.tracingDisabled = !vp_vm_is_enabled();
  c.currentInterningId = 1;
  c.currentThreadId = 1;
  c.hostFilename = vp_vm_file(VP_VM_HOST_FILE);
  c.guestFilename = vp_vm_file(VP_VM_GUEST_FILE);
  c.combinedFilename = vp_vm_file(VP_VM_COMBINED_FILE);
  c.hostStartTime = vp_vm_host_start_time();
  c.guestStartTime = vp_vm_guest_start_time();
  c.guestTimeDiff = vp_vm_time_diff();
  c.perThreadStorageMb = 1;
  c.saving = vp_vm_is_saving() != 0;
  c.addTraces = vp_vm_add_traces() != 0;
  return c;
}

VPERFETTO_EXPORT inline void setTraceConfig(std::function<void(VirtualDeviceTraceConfig&)> f) {
  VirtualDeviceTraceConfig before = queryTraceConfig();
  VirtualDeviceTraceConfig c = before;
  f(c);
  vp_vm_set_file(VP_VM_HOST_FILE, c.hostFilename, nullptr);
  vp_vm_set_file(VP_VM_GUEST_FILE, c.guestFilename, nullptr);
  vp_vm_set_file(VP_VM_COMBINED_FILE, c.combinedFilename, nullptr);
  if (c.guestTimeDiff != before.guestTimeDiff) vp_vm_set_time_diff(c.guestTimeDiff);
  if (c.hostStartTime != before.hostStartTime || c.guestStartTime != before.guestStartTime)
    vp_vm_set_start_times(c.hostStartTime, c.guestStartTime);
  vp_vm_set_add_traces(c.addTraces ? 1 : 0);
}

// The guest's CLOCK_BOOTTIME in ns, now. Ignored while tracing is enabled.
VPERFETTO_EXPORT inline void setGuestTime(uint64_t guestTime) { vp_vm_set_guest_time(guestTime); }

VPERFETTO_EXPORT inline void enableTracing() {
  vp_error err;
  if (vp_vm_enable(&err) != VP_OK) original_detail::Warn("enableTracing", err);
}

VPERFETTO_EXPORT inline void disableTracing() {
  vp_error err;
  if (vp_vm_disable(&err) != VP_OK) original_detail::Warn("disableTracing", err);
}

// Slices in category "gfx" on the calling thread's track.
VPERFETTO_EXPORT inline void beginTrace(const char* eventName) {
  static const uint32_t category = vp_category("gfx");
  vp_begin_str(category, eventName, eventName ? std::strlen(eventName) : 0);
}

VPERFETTO_EXPORT inline void endTrace() { vp_end(); }

VPERFETTO_EXPORT inline void traceCounter(const char* name, int64_t value) {
  counter(name, value);
}

VPERFETTO_EXPORT inline uint64_t bootTimeNs() { return vp_boot_time_ns(); }

VPERFETTO_EXPORT inline void sleepUs(unsigned us) { vp_sleep_us(us); }

VPERFETTO_EXPORT inline void waitSavingDone() {
  vp_error err;
  if (vp_vm_wait_saving_done(&err) != VP_OK) original_detail::Warn("waitSavingDone", err);
}

inline void combineTraces(const TraceCombineConfig* config) {
  if (!config) return;
  vp_error err;
  vp_merge_options* m = vp_merge_options_new();
  char* report = nullptr;
  int32_t rc = vp_merge_set_host(m, config->hostFile, &err);
  if (rc == VP_OK) rc = vp_merge_add_guest(m, "guest", config->guestFile, &err);
  if (rc == VP_OK) rc = vp_merge_set_output(m, config->combinedFile, &err);
  if (rc == VP_OK)
    rc = vp_merge_set_mode(m, config->addTraces            ? VP_MERGE_ADD_TRACES
                              : config->mergeGuestIntoHost ? VP_MERGE_GUEST_INTO_HOST
                                                           : VP_MERGE_HOST_INTO_GUEST,
                           &err);
  if (config->useGuestAbsoluteTime) vp_merge_set_guest_boot_time(m, config->guestClockBootTimeNs);
  else if (config->useGuestTimeDiff) vp_merge_set_time_diff(m, config->guestClockTimeDiffNs);
  vp_merge_set_guest_tsc_offset(m, config->guestTscOffset);
  if (rc == VP_OK) rc = vp_merge_run(m, &report, &err);
  if (rc != VP_OK) original_detail::Warn("combineTraces", err);
  vp_string_free(report);
  vp_merge_options_free(m);
}

}  // namespace vperfetto

#endif  // VPERFETTO_ORIGINAL_API_H_
