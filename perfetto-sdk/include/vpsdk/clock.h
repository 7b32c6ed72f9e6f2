// Clocks used for timestamps and clock snapshots, and the uuid generator.
#ifndef VPSDK_CLOCK_H_
#define VPSDK_CLOCK_H_

#include <cstdint>
#include <ctime>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define VPSDK_HAS_TSC 1
#else
#define VPSDK_HAS_TSC 0
#endif

namespace vpsdk {

// Added to BOOTTIME and MONOTONIC readings, as a Linux time namespace would.
// Set once at load from VPERFETTO_SIMULATE_CLOCK_OFFSET_NS, for demos and
// tests on machines where a real time namespace (unshare --time) is not
// available; 0 otherwise.
extern int64_t g_simulated_clock_offset_ns;

inline uint64_t ReadClockNs(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  uint64_t ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull +
                static_cast<uint64_t>(ts.tv_nsec);
  if (id != CLOCK_REALTIME) ns += static_cast<uint64_t>(g_simulated_clock_offset_ns);
  return ns;
}

// CLOCK_BOOTTIME: the trace clock, as in the Perfetto SDK on Linux.
inline uint64_t BootTimeNs() { return ReadClockNs(CLOCK_BOOTTIME); }

// The x86 time-stamp counter; 0 where there is none.
inline uint64_t ReadTsc() {
#if VPSDK_HAS_TSC
  return __rdtsc();
#else
  return 0;
#endif
}

// CLOCK_BOOTTIME from the time-stamp counter, for the per-call events of
// whole-program tracing, where two vDSO clock reads were the largest cost
// (~30 ns each on a VM here, a TSC read ~12). Only where the kernel keeps
// time with the TSC itself (clocksource "tsc": invariant and synchronised
// across CPUs); elsewhere, or with VPERFETTO_TSC=0, it is BootTimeNs().
// Each thread re-anchors to the real clock every millisecond, so a reading
// is within a few tens of ns of BootTimeNs() at the same instant; the
// ns-per-tick rate is measured against CLOCK_BOOTTIME over the longest span
// seen (no calibration spin: the first 2 ms read the clock). Never goes
// back on a thread.
// Plain data, zero at thread start: `__thread` needs no initialisation
// check at each use (an `extern thread_local` does).
struct TscAnchor {
  uint64_t tsc;
  uint64_t ns;
  uint64_t span;  // ticks this anchor serves; 0: re-anchor
  uint64_t mult;  // ns per tick, 32.32 fixed point
  uint64_t last;  // the last reading returned
};
extern __thread TscAnchor t_tsc_anchor __attribute__((tls_model("initial-exec")));
uint64_t FastBootTimeSlow(uint64_t tsc);

// FastBootTimeNs() when the thread's anchor serves (true, with the time in
// `*ns`); false when it is due again (every ms) or there is no TSC: then
// FastBootTimeNs() does it. For callers whose common case makes no call.
inline bool FastBootTimeTry(uint64_t* ns) {
#if VPSDK_HAS_TSC
  TscAnchor& a = t_tsc_anchor;
  uint64_t d = __rdtsc() - a.tsc;
  if (__builtin_expect(d >= a.span, 0)) return false;
  uint64_t n = a.ns + static_cast<uint64_t>((static_cast<unsigned __int128>(d) * a.mult) >> 32);
  if (__builtin_expect(n < a.last, 0)) n = a.last;
  a.last = n;
  *ns = n;
  return true;
#else
  (void)ns;
  return false;
#endif
}

inline uint64_t FastBootTimeNs() {
#if VPSDK_HAS_TSC
  TscAnchor& a = t_tsc_anchor;
  uint64_t t = __rdtsc();
  uint64_t d = t - a.tsc;
  if (__builtin_expect(d < a.span, 1)) {
    uint64_t ns = a.ns + static_cast<uint64_t>((static_cast<unsigned __int128>(d) * a.mult) >> 32);
    if (__builtin_expect(ns < a.last, 0)) ns = a.last;
    a.last = ns;
    return ns;
  }
  return FastBootTimeSlow(t);
#else
  return BootTimeNs();
#endif
}

// Sleeps at least `us` microseconds, resuming after signal interruptions.
void SleepUs(uint64_t us);

// A random non-zero 64-bit value, as Perfetto's Uuidv4 lsb. Thread-safe;
// reseeded in a forked child so parent and child never share a sequence.
uint64_t UuidLsb();
void ReseedUuid();

}  // namespace vpsdk

#endif  // VPSDK_CLOCK_H_
