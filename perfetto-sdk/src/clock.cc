#include "vpsdk/clock.h"

#include <errno.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vpsdk {

namespace {
int64_t SimulatedOffsetFromEnv() {
  const char* v = std::getenv("VPERFETTO_SIMULATE_CLOCK_OFFSET_NS");
  if (!v || !*v) return 0;
  char* end = nullptr;
  long long x = std::strtoll(v, &end, 10);
  return (end && *end == 0) ? static_cast<int64_t>(x) : 0;
}
}  // namespace

int64_t g_simulated_clock_offset_ns = SimulatedOffsetFromEnv();

void SleepUs(uint64_t us) {
  struct timespec req;
  req.tv_sec = static_cast<time_t>(us / 1000000);
  req.tv_nsec = static_cast<long>((us % 1000000) * 1000);
  while (nanosleep(&req, &req) != 0 && errno == EINTR) {
  }
}

// --- the TSC-backed BOOTTIME -------------------------------------------------

__thread TscAnchor t_tsc_anchor __attribute__((tls_model("initial-exec")));

namespace {

constexpr uint64_t kAnchorNs = 1000000;     // each thread re-reads the clock every 1 ms
constexpr uint64_t kCalibrateNs = 2000000;  // the rate's first measurement spans >= 2 ms
constexpr uint64_t kTightTicks = 1000;      // a clock read bracketed this closely is taken

// Whether the kernel keeps time with the TSC (decided once).
bool TscUsable() {
#if VPSDK_HAS_TSC
  static const bool usable = [] {
    const char* env = std::getenv("VPERFETTO_TSC");
    if (env && std::strcmp(env, "0") == 0) return false;
    FILE* f = std::fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
    if (!f) return false;
    char buf[32] = {};
    bool tsc = std::fgets(buf, sizeof(buf), f) && std::strcmp(buf, "tsc\n") == 0;
    std::fclose(f);
    return tsc;
  }();
  return usable;
#else
  return false;
#endif
}

// The first (tsc, ns) pair read, the rate measured from it and the span it
// was measured over. The rate only changes to one measured over a longer
// span; racing threads store equally good values.
std::atomic<uint64_t> g_cal_tsc{0}, g_cal_ns{0}, g_mult{0}, g_mult_span{0};
std::atomic_flag g_cal_busy = ATOMIC_FLAG_INIT;

}  // namespace

uint64_t FastBootTimeSlow(uint64_t tsc) {
  TscAnchor& a = t_tsc_anchor;
  // Where the previous anchor put this instant: the floor of what follows.
  uint64_t projected = a.span ? a.ns + static_cast<uint64_t>(
                                           (static_cast<unsigned __int128>(tsc - a.tsc) * a.mult) >> 32)
                              : 0;
  if (!TscUsable()) {
    uint64_t ns = BootTimeNs();
    return ns;
  }
  // The clock read between two TSC reads: the anchor is their midpoint,
  // from the tightest of a few tries (a thread preempted between the reads
  // would put it anywhere in between).
  uint64_t t = 0, ns = 0, best = ~uint64_t{0};
  for (int i = 0; i < 4 && best > kTightTicks; i++) {
    uint64_t t1 = ReadTsc();
    uint64_t n = BootTimeNs();
    uint64_t t2 = ReadTsc();
    if (t2 - t1 < best) {
      best = t2 - t1;
      t = t1 + (t2 - t1) / 2;
      ns = n;
    }
  }
  // One thread at a time updates the calibration (the pair must be one
  // pair); one that finds it busy keeps the rate it has (never blocks).
  if (!g_cal_busy.test_and_set(std::memory_order_acquire)) {
    uint64_t cal_tsc = g_cal_tsc.load(std::memory_order_relaxed);
    uint64_t cal_ns = g_cal_ns.load(std::memory_order_relaxed);
    if (cal_tsc == 0 || t < cal_tsc || ns < cal_ns) {  // first use (or a TSC that went back)
      g_cal_ns.store(ns, std::memory_order_relaxed);
      g_cal_tsc.store(t, std::memory_order_relaxed);
      g_mult.store(0, std::memory_order_relaxed);
      g_mult_span.store(0, std::memory_order_relaxed);
      cal_tsc = t;
      cal_ns = ns;
    }
    uint64_t span = t - cal_tsc;
    if (ns - cal_ns >= kCalibrateNs && span > 2 * g_mult_span.load(std::memory_order_relaxed)) {
      uint64_t m = static_cast<uint64_t>((static_cast<unsigned __int128>(ns - cal_ns) << 32) / span);
      g_mult.store(m, std::memory_order_relaxed);
      g_mult_span.store(span, std::memory_order_relaxed);
    }
    g_cal_busy.clear(std::memory_order_release);
  }
  uint64_t mult = g_mult.load(std::memory_order_relaxed);
  a.tsc = t;
  a.ns = ns;
  a.mult = mult;
  // Until the rate is known, every reading is a clock read.
  a.span = mult ? static_cast<uint64_t>((static_cast<unsigned __int128>(kAnchorNs) << 32) / mult) : 0;
  // The caller's instant (its TSC read came before the anchor's).
  uint64_t back = tsc < t ? static_cast<uint64_t>((static_cast<unsigned __int128>(t - tsc) * mult) >> 32) : 0;
  uint64_t now = back < ns ? ns - back : ns;
  now = std::max(now, std::max(projected, a.last));
  a.last = now;
  return now;
}

namespace {

std::atomic<uint64_t> g_uuid_state{0};

uint64_t Mix(uint64_t z) {  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t FreshSeed() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) seed = 0;
  seed ^= ReadClockNs(CLOCK_MONOTONIC) ^ (ReadTsc() << 17);
  seed ^= static_cast<uint64_t>(getpid()) << 40;
  return Mix(seed) | 1;  // 0 means "not seeded"
}

}  // namespace

void ReseedUuid() { g_uuid_state.store(FreshSeed(), std::memory_order_relaxed); }

uint64_t UuidLsb() {
  uint64_t s = g_uuid_state.load(std::memory_order_relaxed);
  if (s == 0) {
    uint64_t seed = FreshSeed();
    g_uuid_state.compare_exchange_strong(s, seed, std::memory_order_relaxed);
  }
  for (;;) {
    uint64_t v = Mix(g_uuid_state.fetch_add(0x9e3779b97f4a7c15ull,
                                            std::memory_order_relaxed));
    if (v != 0) return v;
  }
}

}  // namespace vpsdk
