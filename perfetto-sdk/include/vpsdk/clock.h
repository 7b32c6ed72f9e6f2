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

// Sleeps at least `us` microseconds, resuming after signal interruptions.
void SleepUs(uint64_t us);

// A random non-zero 64-bit value, as Perfetto's Uuidv4 lsb. Thread-safe;
// reseeded in a forked child so parent and child never share a sequence.
uint64_t UuidLsb();
void ReseedUuid();

}  // namespace vpsdk

#endif  // VPSDK_CLOCK_H_
