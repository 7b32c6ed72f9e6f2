// Incremental timestamps (issue 14): every event at the time it was put,
// read back as trace_processor resolves clocks, in every buffer mode.
#include "trace_expect.h"

namespace vpsdk_test {

// --- timestamps (issue 14) ----------------------------------------------------------------

// Events whose time is known (explicit timestamps: forward, equal, back,
// far back, far ahead) or bracketed (now), on the thread track, a named
// track and a counter track, from two threads; each carries its id (an
// annotation or the counter value). Read back as trace_processor resolves
// clocks, every surviving event is where it was put: exactly, or within
// one unit of the incremental clock; across chunk resets and ring wraps.
void TestTimestamps(int32_t mode, uint32_t kb, int incremental, uint32_t unit) {
  Cfg c;
  c.path = TmpPath(("ts_" + std::string(ModeName(mode)) + std::to_string(kb) + "_" +
                    std::to_string(incremental) + "_" + std::to_string(unit) + ".pftrace").c_str());
  c.mode = mode;
  c.kb = kb;
  c.incremental = incremental;
  c.unit = unit;
  uint32_t cat = vp_category("tscat");
  uint32_t name = vp_intern("ts_event", 8);
  uint32_t argn = vp_intern("ts_id", 5);
  uint32_t track = 0, counter = 0;
  vp_error err{};
  CHECK(vp_track_new("ts track", 1, &track, &err) == VP_OK);
  CHECK(vp_counter_track("ts counter", nullptr, &counter, &err) == VP_OK);
  constexpr int kThreads = 2, kEvents = 12000;
  // Per event id: [lo, hi] of its time (lo == hi when explicit).
  std::vector<std::pair<uint64_t, uint64_t>> want(kThreads * kEvents);
  vp_session* s = START(c);
  if (!s) return;
  auto work = [&](int k) {
    uint64_t base = vp_boot_time_ns();
    uint64_t prev = base;
    for (int i = 0; i < kEvents; i++) {
      int64_t id = k * kEvents + i;
      uint64_t ts = 0, now = vp_boot_time_ns();
      switch (i % 8) {
        case 0: break;                                     // now
        case 1: ts = now + 13; break;                      // ahead of now
        case 2: ts = now - 5000000; break;                 // 5 ms back
        case 3: ts = prev; break;                          // the previous one again
        case 4: ts = now + 7; break;
        case 5: ts = now + (i % 1024 == 5 ? 50000 : 3); break;  // rarely 50 us ahead
        case 6: break;                                     // now
        case 7: ts = base / 2 + i; break;                  // far back
      }
      if (i == kEvents - 20) ts = vp_boot_time_ns() + 3000000000ull;  // 3 s ahead, once
      vp_arg a = {};
      a.name = argn;
      a.type = VP_ARG_INT;
      a.i = id;
      vp_event e = {};
      e.timestamp_ns = ts;
      e.category = cat;
      e.name = name;
      if (i % 3 == 0) {
        e.type = VP_EVENT_COUNTER;
        e.track = counter;
        e.counter_int = id;
      } else {
        e.type = VP_EVENT_INSTANT;
        e.track = (i % 3 == 1) ? 0 : track;
        e.args = &a;
        e.nargs = 1;
      }
      uint64_t lo = ts ? ts : vp_boot_time_ns();
      vp_emit(&e);
      uint64_t hi = ts ? ts : vp_boot_time_ns();
      want[id] = {lo, hi};
      if (ts) prev = ts;
    }
  };
  std::vector<std::thread> th;
  for (int k = 0; k < kThreads; k++) th.emplace_back(work, k);
  for (auto& t : th) t.join();
  STOP(s);
  uint64_t dropped = vp_session_stat(s, VP_STAT_PACKETS_DROPPED);
  vp_session_free(s);
  bool small = mode != VP_BUFFER_STREAM && kb < 1024;
  Expect ex;
  ex.first_packet = !small;
  Trace t = LoadTrace(c.path, ex);
  CHECK_TRACE(t);
  CHECK_EQ(t.config.disable_incremental, incremental == 0);
  CHECK_EQ(t.config.unit_multiplier, incremental != 0 && unit > 1 ? unit : 0);
  uint64_t u = incremental != 0 && unit > 1 ? unit : 1;
  size_t found = 0, misplaced = 0, absolute = 0, deltas = 0;
  std::vector<bool> seen(want.size());
  for (const Packet& p : t.packets) {
    if (!p.has_te || p.seq == 1) continue;
    int64_t id = -1;
    if (p.type == pf::TrackEvent::kTypeCounter) id = p.cint;
    else if (!p.anns.empty()) id = p.anns[0].i;
    if (id < 0 || id >= static_cast<int64_t>(want.size()) || seen[id]) {
      CHECK_MSG(false, "event id %lld unknown or twice", static_cast<long long>(id));
      continue;
    }
    seen[id] = true;
    found++;
    auto w = want[id];
    // Rounded down to the unit (relative to the reset) unless written absolute.
    bool ok = p.ts <= w.second && p.ts + u > w.first;
    if (!ok && misplaced++ < 5)
      CHECK_MSG(false, "event %lld at %llu, put at [%llu, %llu] (unit %llu, clock %u, raw %llu)",
                static_cast<long long>(id), static_cast<unsigned long long>(p.ts),
                static_cast<unsigned long long>(w.first), static_cast<unsigned long long>(w.second),
                static_cast<unsigned long long>(u), p.clock_id,
                static_cast<unsigned long long>(p.raw_ts));
    if (p.clock_id == pf::BuiltinClock::kBoottime) {
      absolute++;
      if (w.first == w.second) CHECK_EQ(p.ts, w.first);  // exact
    } else if (incremental != 0) {
      deltas++;
    }
  }
  CHECK_EQ(misplaced, 0u);
  if (!small) CHECK_EQ(found, want.size());
  else CHECK(found > 1000 && found < want.size() && dropped > 0);
  size_t writer_snapshots = 0;
  for (auto& kv : t.seqs) writer_snapshots += kv.second.snapshots;
  if (incremental != 0) {
    // The ones before their sequence's time (back, far back, ...) are
    // absolute, the others deltas.
    CHECK_MSG(deltas > found / 16 && absolute > found / 5, "%zu deltas, %zu absolute of %zu", deltas,
              absolute, found);
    CHECK(writer_snapshots >= t.seqs.size());
    if (small) {
      for (auto& kv : t.seqs) CHECK(kv.second.snapshots == kv.second.clears);
      CHECK(writer_snapshots > 4);
    }
    for (const Packet& p : t.packets)
      if (p.seq != 1 && p.has_ts && !p.clock && !p.clock_id) CHECK(p.raw_ts < (uint64_t{1} << 32) / u + 1);
  } else {
    CHECK_EQ(writer_snapshots, 0u);
    CHECK_EQ(absolute, 0u);
    for (const Packet& p : t.packets) CHECK(p.clock_id == 0 && p.ts == p.raw_ts);
  }
}
void TestTsStream() { TestTimestamps(VP_BUFFER_STREAM, 1024, -1, 0); }
void TestTsRing() { TestTimestamps(VP_BUFFER_RING, 65536, 1, 0); }
void TestTsRingWrap() { TestTimestamps(VP_BUFFER_RING, 64, 1, 1); }
void TestTsDiscardSmall() { TestTimestamps(VP_BUFFER_DISCARD, 64, 1, 0); }
void TestTsUnitRingWrap() { TestTimestamps(VP_BUFFER_RING, 64, 1, 1000); }
void TestTsUnitStream() { TestTimestamps(VP_BUFFER_STREAM, 1024, 1, 7); }
void TestTsAbsoluteStream() { TestTimestamps(VP_BUFFER_STREAM, 1024, 0, 0); }
void TestTsAbsoluteRingWrap() { TestTimestamps(VP_BUFFER_RING, 64, 0, 1000); }

void TestTimestampConfigErrors() {
  vp_config* cfg = vp_config_new();
  vp_error err{};
  CHECK(vp_config_set_incremental_timestamps(nullptr, 1, 1, &err) == VP_E_INVALID_ARGUMENT);
  CHECK(vp_config_set_incremental_timestamps(cfg, 1, 1000000001u, &err) == VP_E_INVALID_ARGUMENT);
  CHECK(vp_config_set_incremental_timestamps(cfg, 1, 1000000000u, &err) == VP_OK);
  CHECK(vp_config_set_incremental_timestamps(cfg, 0, 0, &err) == VP_OK);
  vp_config_free(cfg);
}

}  // namespace vpsdk_test
