// End-to-end through the C ABI, with threads and processes: flushes during a
// session, start/stop races, threads exiting, fork, concurrent starts, the
// session's prefaulter running ahead of a writer.
#include <sys/resource.h>
#include <sys/utsname.h>

#include <thread>

#include "trace_expect.h"

namespace vpsdk_test {

void TestFlushMidSession(int32_t mode) {
  Cfg c;
  c.path = TmpPath(std::string("flush_") + ModeName(mode) + ".pftrace");
  c.mode = mode;
  uint32_t cat = vp_category("flushcat");
  uint32_t name = vp_intern("flushed", 7);
  vp_session* s = START(c);
  if (!s) return;
  for (int i = 0; i < 1500; i++) {
    vp_begin(cat, name);
    vp_end();
  }
  vp_error err{};
  CHECK(vp_session_flush(s, &err) == VP_OK);
  uint64_t after_flush = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  CHECK(after_flush >= 2000);
  if (mode == VP_BUFFER_STREAM) {
    struct stat st;
    CHECK(::stat(c.path.c_str(), &st) == 0 && st.st_size > 2000 * 10);
  }
  for (int i = 0; i < 1500; i++) {
    vp_begin(cat, name);
    vp_end();
  }
  CHECK(vp_session_flush(s, &err) == VP_OK);
  CHECK(vp_session_flush(s, &err) == VP_OK);  // nothing new: fine
  vp_begin(cat, name);
  vp_end();
  STOP(s);
  uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
  CHECK_EQ(t.seqs.size(), 1);
  if (t.seqs.empty()) return;
  const SeqInfo& si = t.seqs.begin()->second;
  CHECK_EQ(si.begins, 3001);
  CHECK_EQ(si.ends, 3001);
  // A flush restarts no incremental state: a stream needs none, and ring
  // and discard chunks are in the buffer as they are written (each chunk,
  // not each flushed piece, decodes on its own): ~84 KB of packets (120 KB
  // with absolute timestamps) fill two 64 KiB chunks whatever the flushes.
  if (mode == VP_BUFFER_STREAM) CHECK_EQ(si.clears, 1);
  else CHECK_EQ(si.clears, 2);
}

void TestFlushRing() { TestFlushMidSession(VP_BUFFER_RING); }
void TestFlushStream() { TestFlushMidSession(VP_BUFFER_STREAM); }
void TestFlushDiscard() { TestFlushMidSession(VP_BUFFER_DISCARD); }

// Flushes from one thread while others emit.
void TestConcurrentFlush(int32_t mode) {
  Cfg c;
  c.path = TmpPath(std::string("concurrent_flush_") + ModeName(mode) + ".pftrace");
  c.mode = mode;
  c.kb = 65536;
  uint32_t cat = vp_category("cflush");
  uint32_t argn = vp_intern("k", 1);
  vp_session* s = START(c);
  if (!s) return;
  constexpr int kThreads = 3, kPairs = 20000;
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < kThreads; k++)
    threads.emplace_back([&, k] {
      std::string tn = "cf" + std::to_string(k);
      vp_set_thread_name(tn.c_str());
      for (int i = 0; i < kPairs; i++) {
        // A new interned name now and then keeps interning going.
        std::string n = "n" + std::to_string(i % 500);
        vp_begin(cat, vp_intern(n.data(), n.size()));
        vp_arg a = {};
        a.name = argn;
        a.type = VP_ARG_UINT;
        a.u = static_cast<uint64_t>(i);
        vp_event e = {};
        e.type = VP_EVENT_INSTANT;
        e.category = cat;
        e.name_str = "i";
        e.name_len = 1;
        e.args = &a;
        e.nargs = 1;
        vp_emit(&e);
        vp_end();
      }
      done++;
    });
  vp_error err{};
  int flushes = 0;
  while (done.load() < kThreads) {
    CHECK(vp_session_flush(s, &err) == VP_OK);
    flushes++;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  for (auto& th : threads) th.join();
  STOP(s);
  uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK(flushes > 0);
  CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
  for (int k = 0; k < kThreads; k++) {
    const SeqInfo* si = t.ByThreadName("cf" + std::to_string(k));
    CHECK(si != nullptr);
    if (!si) continue;
    CHECK_EQ(si->begins, kPairs);
    CHECK_EQ(si->ends, kPairs);
    CHECK_EQ(si->instants, kPairs);
  }
}

void TestConcurrentFlushRing() { TestConcurrentFlush(VP_BUFFER_RING); }
void TestConcurrentFlushStream() { TestConcurrentFlush(VP_BUFFER_STREAM); }

// Sessions start and stop while threads emit all the time, some of them
// short-lived.
void TestStartStopRace() {
  uint32_t cat = vp_category("race");
  uint32_t off = vp_category("race_off");
  uint32_t names[4];
  for (int i = 0; i < 4; i++) {
    std::string n = "race_" + std::to_string(i);
    names[i] = vp_intern(n.data(), n.size());
  }
  uint32_t argn = vp_intern("race_arg", 8);
  uint32_t ctr = 0, track = 0;
  vp_error err{};
  CHECK(vp_counter_track("race_counter", "count", &ctr, &err) == VP_OK);
  CHECK(vp_track_new("race_track", 0, &track, &err) == VP_OK);
  std::atomic<bool> quit{false};
  std::atomic<uint64_t> iterations{0};
  auto body = [&](int k, int limit) {
    std::string tn = "racer" + std::to_string(k);
    vp_set_thread_name(tn.c_str());
    for (int i = 0; !quit.load(std::memory_order_relaxed) && (limit == 0 || i < limit); i++) {
      vp_begin(cat, names[i & 3]);
      vp_begin(off, names[0]);
      vp_arg a[2] = {};
      a[0].name = argn;
      a[0].type = VP_ARG_STRING;
      a[0].s = "value";
      a[0].len = 5;
      a[1].name = argn;
      a[1].type = VP_ARG_DOUBLE;
      a[1].d = 1.5;
      uint64_t flow = static_cast<uint64_t>(i) + 1;
      vp_event e = {};
      e.type = VP_EVENT_INSTANT;
      e.category = cat;
      e.name = names[1];
      e.args = a;
      e.nargs = 2;
      e.flows = &flow;
      e.nflows = 1;
      vp_emit(&e);
      vp_end();
      vp_counter_int(ctr, i);
      e.type = (i & 1) ? VP_EVENT_END : VP_EVENT_BEGIN;
      e.track = track;
      e.nargs = 0;
      vp_emit(&e);
      vp_instant_str(cat, "s", 1);
      if (i % 1000 == 0) vp_set_thread_name(tn.c_str());
      vp_end();
      iterations.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::vector<std::thread> threads;
  for (int k = 0; k < 3; k++) threads.emplace_back(body, k, 0);
  // A thread that keeps spawning short-lived emitters.
  threads.emplace_back([&] {
    for (int n = 0; !quit.load(); n++) {
      std::thread sh(body, 100 + (n % 50), 200);
      sh.join();
    }
  });
  int bad = 0;
  for (int round = 0; round < 50; round++) {
    Cfg c;
    c.path = TmpPath("race_" + std::to_string(round % 5) + ".pftrace");
    c.mode = round % 3 == 0 ? VP_BUFFER_RING : round % 3 == 1 ? VP_BUFFER_DISCARD : VP_BUFFER_STREAM;
    c.kb = 8192;
    c.disable = {"race_off"};
    if (round % 7 == 3) c.disable.push_back("race");
    vp_session* s = START(c);
    if (!s) break;
    uint64_t before = iterations.load();
    while (iterations.load() < before + 200) std::this_thread::sleep_for(std::chrono::microseconds(100));
    if (round % 2) CHECK(vp_session_flush(s, &err) == VP_OK);
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    STOP(s);
    uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
    uint64_t dropped = vp_session_stat(s, VP_STAT_PACKETS_DROPPED);
    vp_session_free(s);
    Expect ex;
    ex.first_packet = dropped == 0;
    ex.never_negative = dropped == 0;
    Trace t = LoadTrace(c.path, ex);
    CHECK_TRACE(t);
    CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
    if (round % 7 == 3)
      for (auto& p : t.packets)
        if (p.has_te && !p.cat_iids.empty()) bad++;
  }
  CHECK_EQ(bad, 0);
  quit = true;
  for (auto& th : threads) th.join();
}

// Many sessions back to back with short-lived threads (binding and
// thread-exit hand-over racing with stop).
void TestThreadExitRace() {
  uint32_t cat = vp_category("exitrace");
  uint32_t name = vp_intern("exit_slice", 10);
  for (int round = 0; round < 20; round++) {
    Cfg c;
    c.path = TmpPath("exitrace.pftrace");
    c.mode = round % 2 ? VP_BUFFER_STREAM : VP_BUFFER_RING;
    vp_session* s = START(c);
    if (!s) return;
    std::vector<std::thread> threads;
    std::atomic<int> emitted{0};
    for (int k = 0; k < 4; k++)
      threads.emplace_back([&] {
        for (int i = 0; i < 500; i++) {
          vp_begin(cat, name);
          vp_end();
        }
        emitted++;
      });
    if (round % 4 == 0)  // stop while they may still run
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    else
      while (emitted.load() < 4) std::this_thread::yield();
    STOP(s);
    for (auto& th : threads) th.join();
    uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
    vp_session_free(s);
    Trace t = LoadTrace(c.path);
    CHECK_TRACE(t);
    CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
    if (round % 4 != 0) {
      for (auto& kv : t.seqs) {
        CHECK_EQ(kv.second.begins, 500);
        CHECK_EQ(kv.second.ends, 500);
      }
    }
  }
}

void TestFork() {
  Cfg c;
  c.path = TmpPath("fork_parent.pftrace");
  std::string child_path = TmpPath("fork_child.pftrace");
  uint32_t cat = vp_category("forkcat");
  uint32_t name = vp_intern("fork_slice", 10);
  vp_session* s = START(c);
  if (!s) return;
  vp_set_thread_name("forker");
  vp_begin(cat, name);
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    // The child: the parent's session is not ours.
    int rc = 0;
    if (vp_is_tracing() != 0) rc |= 1;
    if (vp_session_is_active(s) != 0) rc |= 2;
    vp_error err{};
    if (vp_session_stop(s, &err) != VP_E_STATE) rc |= 4;
    vp_end();
    vp_begin(cat, name);
    vp_end();
    vp_config* cfg = vp_config_new();
    vp_config_set_output(cfg, child_path.c_str(), &err);
    vp_session* cs = nullptr;
    if (vp_session_start(cfg, &cs, &err) != VP_OK) rc |= 8;
    vp_config_free(cfg);
    vp_begin(cat, name);
    std::thread th([&] {
      vp_begin(cat, name);
      vp_end();
    });
    th.join();
    vp_end();
    if (cs && vp_session_stop(cs, &err) != VP_OK) rc |= 16;
    vp_session_free(cs);
    _exit(rc);
  }
  CHECK(pid > 0);
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  vp_end();
  STOP(s);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK_EQ(t.CountEvents(1), 1);
  CHECK_EQ(t.CountEvents(2), 1);
  Trace ct = LoadTrace(child_path);
  CHECK_TRACE(ct);
  CHECK_EQ(ct.CountEvents(1), 2);
  CHECK_EQ(ct.CountEvents(2), 2);
  CHECK_EQ(ct.seqs.size(), 2);
  // The child has its own process and thread identities.
  for (auto& kv : ct.described) {
    if (kv.second.process) CHECK(kv.second.process_pid == pid);
    if (kv.second.thread) CHECK(kv.second.pid == pid);
  }
  for (auto& kv : t.described) {
    if (kv.second.process) CHECK(kv.second.process_pid == getpid());
    CHECK(!ct.described.count(kv.first));
  }
}
// Several threads start sessions at once: exactly one wins. Then stop,
// flush and stat race on the winner.
void TestConcurrentStart() {
  for (int round = 0; round < 10; round++) {
    constexpr int kThreads = 4;
    std::vector<vp_session*> sessions(kThreads, nullptr);
    std::vector<int32_t> rcs(kThreads, -1);
    std::vector<std::string> messages(kThreads);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int k = 0; k < kThreads; k++)
      threads.emplace_back([&, k] {
        vp_config* cfg = vp_config_new();
        vp_error err{};
        std::string p = TmpPath("concurrent_start_" + std::to_string(k) + ".pftrace");
        vp_config_set_output(cfg, p.c_str(), &err);
        ready++;
        while (ready.load() < kThreads) std::this_thread::yield();
        rcs[static_cast<size_t>(k)] = vp_session_start(cfg, &sessions[static_cast<size_t>(k)], &err);
        messages[static_cast<size_t>(k)] = err.message;
        vp_config_free(cfg);
        vp_instant_str(0, "started", 7);
      });
    for (auto& th : threads) th.join();
    int winners = 0;
    vp_session* winner = nullptr;
    for (int k = 0; k < kThreads; k++) {
      size_t i = static_cast<size_t>(k);
      if (rcs[i] == VP_OK) {
        winners++;
        winner = sessions[i];
      } else {
        CHECK_EQ(rcs[i], VP_E_STATE);
        CHECK(sessions[i] == nullptr && !messages[i].empty());
      }
    }
    CHECK_EQ(winners, 1);
    if (!winner) continue;
    std::vector<std::thread> stoppers;
    std::atomic<int> stop_failures{0};
    for (int k = 0; k < 3; k++)
      stoppers.emplace_back([&, k] {
        vp_error err{};
        for (int i = 0; i < 20; i++) {
          if (k == 0) vp_session_flush(winner, &err);  // may fail once stopped
          vp_session_stat(winner, VP_STAT_PACKETS_WRITTEN);
          vp_instant_str(0, "racing", 6);
        }
        if (vp_session_stop(winner, &err) != VP_OK) stop_failures++;
      });
    for (auto& th : stoppers) th.join();
    CHECK_EQ(stop_failures.load(), 0);
    CHECK(vp_is_tracing() == 0);
    vp_session_free(winner);
  }
}

// A fresh ring's chunks are faulted in ahead of the writers by the session's
// prefaulter, so the writing thread itself takes few page faults. Pauses
// between chunks give the prefaulter its time: what is tested is that it
// runs ahead, not how fast. Without it the writer faults in every page it
// writes (MADV_POPULATE_WRITE counts them as its faults too).
void TestPrefaultAhead() {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer's shadow memory faults in pages of its own on every write.
  std::printf("  (skipped under ThreadSanitizer)\n");
  return;
#endif
  struct utsname u;
  int major = 0, minor = 0;
  if (uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2 ||
      major < 5 || (major == 5 && minor < 14)) {
    std::printf("  (skipped: MADV_POPULATE_WRITE needs Linux 5.14)\n");
    return;
  }
  Cfg c;
  c.path = TmpPath("prefault.pftrace");
  c.kb = 16384;  // 256 chunks of 64 KiB
  vp_error err{};
  uint32_t track = 0;
  CHECK(vp_counter_track("prefault_counter", nullptr, &track, &err) == VP_OK);
  vp_session* s = START(c);
  if (!s) return;
  vp_counter_int(track, 0);
  long faults = 0;
  const int kChunks = 32;
  for (int k = 0; k < kChunks; k++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    struct rusage r0, r1;
    getrusage(RUSAGE_THREAD, &r0);
    for (int i = 0; i < 3000; i++) vp_counter_int(track, i);  // ~20 B each: a chunk
    getrusage(RUSAGE_THREAD, &r1);
    faults += r1.ru_minflt - r0.ru_minflt;
  }
  STOP(s);
  uint64_t bytes = vp_session_stat(s, VP_STAT_BYTES_WRITTEN);
  vp_session_free(s);
  long pages = static_cast<long>(bytes / 4096);
  CHECK_MSG(pages >= kChunks * 12, "%ld pages written", pages);
  // (A sanitizer's shadow memory adds its own faults: an eighth of the pages.)
  CHECK_MSG(faults < pages / 4, "the writer took %ld page faults writing %ld pages", faults, pages);
}

}  // namespace vpsdk_test
