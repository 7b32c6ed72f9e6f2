#include "vpsdk/clock.h"

#include <errno.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

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
