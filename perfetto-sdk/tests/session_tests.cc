// End-to-end through the C ABI: every kind of event in each buffer mode,
// threads, a tiny discard buffer, ring overwrite, session errors, unmatched
// ends and disabled categories; each written trace decoded and validated.
#include "trace_expect.h"

namespace vpsdk_test {

// --- end-to-end tests ------------------------------------------------------------------

void TestEmitEverything(int32_t mode) {
  Cfg c;
  c.path = TmpPath(std::string("everything_") + ModeName(mode) + ".pftrace");
  c.mode = mode;
  vp_set_process_name("vpsdk-tests");
  vp_set_thread_name("main-thread");
  uint32_t cat = vp_category("cat_a");
  CHECK(cat != 0);
  CHECK(vp_category("cat_a") == cat);
  CHECK(vp_category("") == 0);
  CHECK(vp_category(nullptr) == 0);
  uint32_t slice = vp_intern("slice_a", 7);
  uint32_t inst = vp_intern("inst", 4);
  CHECK(slice != 0 && inst != 0 && slice != inst);
  CHECK(vp_intern("slice_a", 7) == slice);
  const char* argnames[] = {"a_int", "a_uint", "a_double", "a_bool", "a_str", "a_ptr"};
  uint32_t an[6];
  for (int i = 0; i < 6; i++) an[i] = vp_intern(argnames[i], std::strlen(argnames[i]));
  uint32_t heap = 0, load = 0, plain = 0;
  vp_error err{};
  CHECK(vp_counter_track("heap", "bytes", &heap, &err) == VP_OK);
  CHECK(vp_counter_track("load", "%", &load, &err) == VP_OK);
  CHECK(vp_counter_track("plain", nullptr, &plain, &err) == VP_OK);
  uint32_t heap2 = 0;
  CHECK(vp_counter_track("heap", "bytes", &heap2, &err) == VP_OK && heap2 == heap);
  uint32_t async = 0, child = 0;
  CHECK(vp_track_new("async-track", 0, &async, &err) == VP_OK);
  CHECK(vp_track_new("child-track", async, &child, &err) == VP_OK);
  CHECK(vp_track_new("bad", heap, &child, &err) == VP_E_INVALID_ARGUMENT);
  CHECK(vp_track_new("child-track", async, &child, &err) == VP_OK);
  CHECK(vp_track_uuid(async) != 0 && vp_track_uuid(async) != vp_track_uuid(child));
  CHECK(vp_track_uuid(999999) == 0);

  vp_session* s = START(c);
  if (!s) return;
  CHECK(vp_is_tracing() == 1);
  CHECK(vp_session_is_active(s) == 1);
  uint64_t my_uuid = vp_track_uuid(VP_TRACK_THREAD);

  vp_begin(cat, slice);
  vp_instant(cat, inst);
  vp_begin_str(cat, "inline", 6);
  vp_instant_str(cat, "inline_inst", 11);
  vp_end();
  vp_end();
  vp_counter_int(heap, 1234);
  vp_counter_double(load, 0.5);
  vp_counter_int(heap, -7);
  vp_counter_int(plain, 1);
  vp_counter_int(async, 5);  // not a counter track: ignored

  vp_arg args[6] = {};
  args[0].name = an[0]; args[0].type = VP_ARG_INT; args[0].i = -5;
  args[1].name = an[1]; args[1].type = VP_ARG_UINT; args[1].u = (1ull << 63) + 1;
  args[2].name = an[2]; args[2].type = VP_ARG_DOUBLE; args[2].d = 3.25;
  args[3].name = an[3]; args[3].type = VP_ARG_BOOL; args[3].i = 1;
  args[4].name = an[4]; args[4].type = VP_ARG_STRING; args[4].s = "hello"; args[4].len = 5;
  args[5].name = an[5]; args[5].type = VP_ARG_POINTER; args[5].u = 0xdeadbeef;
  uint64_t flows[2] = {0x1111, 0x2222};
  uint64_t term[1] = {0x1111};
  uint64_t ts0 = vp_boot_time_ns();

  vp_event ev = {};
  ev.type = VP_EVENT_BEGIN;
  ev.category = cat;
  ev.name = vp_intern("emitted", 7);
  ev.timestamp_ns = ts0;
  ev.args = args;
  ev.nargs = 6;
  ev.flows = flows;
  ev.nflows = 2;
  vp_emit(&ev);

  vp_event end = {};
  end.type = VP_EVENT_END;
  end.timestamp_ns = ts0 + 10;
  end.terminating_flows = term;
  end.nterminating_flows = 1;
  vp_emit(&end);

  vp_event in = {};
  in.type = VP_EVENT_INSTANT;
  in.category = cat;
  in.name_str = "inline-emit";
  in.name_len = 11;
  in.args = args + 4;
  in.nargs = 1;
  vp_emit(&in);

  vp_event ctr = {};
  ctr.type = VP_EVENT_COUNTER;
  ctr.track = load;
  ctr.counter_is_double = 1;
  ctr.counter_double = 0.75;
  ctr.timestamp_ns = ts0 + 20;
  vp_emit(&ctr);

  // An async slice on a custom track, begun here and ended on another thread.
  vp_event ab = {};
  ab.type = VP_EVENT_BEGIN;
  ab.category = cat;
  ab.name = vp_intern("async-op", 8);
  ab.track = async;
  vp_emit(&ab);
  vp_event ci = {};
  ci.type = VP_EVENT_INSTANT;
  ci.category = cat;
  ci.name_str = "on-child";
  ci.name_len = 8;
  ci.track = child;
  vp_emit(&ci);
  std::thread other([&] {
    vp_set_thread_name("other-thread");
    vp_event ae = {};
    ae.type = VP_EVENT_END;
    ae.category = cat;
    ae.track = async;
    vp_emit(&ae);
    vp_counter_int(heap, 99);
  });
  other.join();
  // Bad events are ignored.
  vp_event bad = {};
  bad.type = 77;
  vp_emit(&bad);
  bad.type = VP_EVENT_BEGIN;
  bad.track = 424242;  // unknown track
  vp_emit(&bad);
  bad.track = heap;  // a counter track cannot hold slices
  vp_emit(&bad);
  vp_emit(nullptr);

  STOP(s);
  CHECK(vp_is_tracing() == 0);
  CHECK(vp_session_is_active(s) == 0);
  uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  uint64_t dropped = vp_session_stat(s, VP_STAT_PACKETS_DROPPED);
  uint64_t seqs = vp_session_stat(s, VP_STAT_SEQUENCES);
  CHECK(vp_session_stat(s, 12345) == 0);
  vp_session_free(s);

  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
  CHECK_EQ(dropped, 0);
  CHECK_EQ(seqs, 2);
  CHECK_EQ(t.seqs.size(), 2);
  const SeqInfo* main_seq = t.ByThreadName("main-thread");
  const SeqInfo* other_seq = t.ByThreadName("other-thread");
  CHECK(main_seq && other_seq);
  if (!main_seq || !other_seq) return;
  CHECK(main_seq->thread_uuid == my_uuid);
  CHECK_EQ(main_seq->begins, 4);
  CHECK_EQ(main_seq->ends, 3);  // the async end is on the other thread
  CHECK_EQ(main_seq->instants, 4);
  CHECK_EQ(main_seq->counters, 5);
  CHECK_EQ(main_seq->depth, 0);
  CHECK_EQ(other_seq->ends, 1);
  CHECK_EQ(other_seq->counters, 1);

  std::vector<const Packet*> evs = t.Events(main_seq->seq);
  CHECK_EQ(evs.size(), 16);
  if (evs.size() != 16) return;
  // Order and names.
  CHECK(evs[0]->type == 1 && evs[0]->name == "slice_a" && evs[0]->cat == "cat_a" &&
        evs[0]->has_name_iid);
  CHECK(evs[1]->type == 3 && evs[1]->name == "inst");
  CHECK(evs[2]->type == 1 && evs[2]->name == "inline" && !evs[2]->has_name_iid);
  CHECK(evs[3]->type == 3 && evs[3]->name == "inline_inst");
  CHECK(evs[4]->type == 2 && evs[5]->type == 2);
  // Counters.
  std::map<uint64_t, TrackDesc>& d = t.described;
  CHECK(evs[6]->type == 4 && evs[6]->has_cint && evs[6]->cint == 1234 &&
        evs[6]->track == vp_track_uuid(heap));
  CHECK(evs[7]->has_cdouble && evs[7]->cdouble == 0.5 && evs[7]->track == vp_track_uuid(load));
  CHECK(evs[8]->has_cint && evs[8]->cint == -7);
  CHECK(evs[9]->has_cint && evs[9]->cint == 1 && evs[9]->track == vp_track_uuid(plain));
  CHECK(d[vp_track_uuid(heap)].counter && d[vp_track_uuid(heap)].unit == 3 &&
        d[vp_track_uuid(heap)].name == "heap");
  CHECK(d[vp_track_uuid(load)].counter && d[vp_track_uuid(load)].unit == 0 &&
        d[vp_track_uuid(load)].unit_name == "%");
  CHECK(d[vp_track_uuid(plain)].counter && d[vp_track_uuid(plain)].unit == 0 &&
        d[vp_track_uuid(plain)].unit_name.empty());
  // The emitted begin with every argument type and flows.
  const Packet& e = *evs[10];
  CHECK(e.type == 1 && e.name == "emitted" && e.ts == ts0 && e.cat == "cat_a");
  CHECK_EQ(e.anns.size(), 6);
  const Ann* a;
  CHECK((a = FindAnn(e, "a_int")) && a->kind == VP_ARG_INT && a->i == -5);
  CHECK((a = FindAnn(e, "a_uint")) && a->kind == VP_ARG_UINT && a->u == (1ull << 63) + 1);
  CHECK((a = FindAnn(e, "a_double")) && a->kind == VP_ARG_DOUBLE && a->d == 3.25);
  CHECK((a = FindAnn(e, "a_bool")) && a->kind == VP_ARG_BOOL && a->i == 1);
  CHECK((a = FindAnn(e, "a_str")) && a->kind == VP_ARG_STRING && a->s == "hello");
  CHECK((a = FindAnn(e, "a_ptr")) && a->kind == VP_ARG_POINTER && a->u == 0xdeadbeef);
  CHECK(e.flows == std::vector<uint64_t>({0x1111, 0x2222}));
  CHECK(evs[11]->type == 2 && evs[11]->ts == ts0 + 10 &&
        evs[11]->term_flows == std::vector<uint64_t>({0x1111}));
  CHECK(evs[12]->type == 3 && evs[12]->name == "inline-emit" && evs[12]->anns.size() == 1 &&
        evs[12]->anns[0].s == "hello" && evs[12]->anns[0].name == "a_str");
  CHECK(evs[13]->type == 4 && evs[13]->cdouble == 0.75 && evs[13]->ts == ts0 + 20);
  CHECK(evs[14]->type == 1 && evs[14]->name == "async-op" &&
        evs[14]->track == vp_track_uuid(async));
  CHECK(evs[15]->type == 3 && evs[15]->name == "on-child" &&
        evs[15]->track == vp_track_uuid(child));
  // Track hierarchy.
  uint64_t proc = d[main_seq->thread_uuid].parent;
  CHECK(d.count(proc) && d[proc].process && d[proc].process_pid == getpid() &&
        d[proc].process_name == "vpsdk-tests");
  CHECK(d[vp_track_uuid(async)].name == "async-track" && d[vp_track_uuid(async)].parent == proc);
  CHECK(d[vp_track_uuid(child)].name == "child-track" &&
        d[vp_track_uuid(child)].parent == vp_track_uuid(async));
  CHECK(d[vp_track_uuid(heap)].parent == proc);
  CHECK(d[main_seq->thread_uuid].thread && d[main_seq->thread_uuid].pid == getpid() &&
        d[main_seq->thread_uuid].tid == static_cast<int64_t>(gettid()));
  // The other thread ended the async slice on the async track.
  std::vector<const Packet*> oev = t.Events(other_seq->seq);
  CHECK(oev.size() == 2 && oev[0]->type == 2 && oev[0]->track == vp_track_uuid(async) &&
        oev[1]->cint == 99);
  // trace_stats agrees.
  CHECK(t.stats.buffer_stats[pf::TraceStats::BufferStats::kTraceWriterPacketLoss] == 0);
  CHECK(t.stats.buffer_stats[pf::TraceStats::BufferStats::kChunksDiscarded] == 0);
}

void TestEverythingRing() { TestEmitEverything(VP_BUFFER_RING); }
void TestEverythingDiscard() { TestEmitEverything(VP_BUFFER_DISCARD); }
void TestEverythingStream() { TestEmitEverything(VP_BUFFER_STREAM); }

// N threads x M begin/end pairs; `stop_while_alive`: the threads are still
// alive (and bound) at stop, else they exit first.
void RunThreads(int32_t mode, bool stop_while_alive) {
  constexpr int kThreads = 4;
  constexpr int kPairs = 20000;
  Cfg c;
  c.path = TmpPath(std::string("threads_") + ModeName(mode) +
                   (stop_while_alive ? "_alive" : "_exited") + ".pftrace");
  c.mode = mode;
  c.kb = 65536;
  uint32_t cat = vp_category("threads");
  uint32_t names[8];
  for (int i = 0; i < 8; i++) {
    std::string n = "work_" + std::to_string(i);
    names[i] = vp_intern(n.data(), n.size());
  }
  vp_session* s = START(c);
  if (!s) return;
  std::atomic<int> done{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> threads;
  for (int k = 0; k < kThreads; k++) {
    threads.emplace_back([&, k] {
      std::string tn = "w" + std::to_string(k);
      vp_set_thread_name(tn.c_str());
      for (int i = 0; i < kPairs; i++) {
        vp_begin(cat, names[(i + k) % 8]);
        if (i % 100 == 0) vp_instant_str(cat, "tick", 4);
        vp_end();
      }
      done++;
      while (stop_while_alive && !release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  }
  if (stop_while_alive) {
    while (done.load() < kThreads) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } else {
    for (auto& th : threads) th.join();
  }
  STOP(s);
  release = true;
  for (auto& th : threads)
    if (th.joinable()) th.join();
  uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  uint64_t dropped = vp_session_stat(s, VP_STAT_PACKETS_DROPPED);
  CHECK_EQ(vp_session_stat(s, VP_STAT_SEQUENCES), kThreads);
  vp_session_free(s);

  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK_EQ(dropped, 0);
  CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
  CHECK_EQ(t.seqs.size(), kThreads);
  std::set<uint32_t> seq_ids;
  for (int k = 0; k < kThreads; k++) {
    const SeqInfo* si = t.ByThreadName("w" + std::to_string(k));
    CHECK_MSG(si, "thread w%d", k);
    if (!si) continue;
    seq_ids.insert(si->seq);
    CHECK_EQ(si->begins, kPairs);
    CHECK_EQ(si->ends, kPairs);
    CHECK_EQ(si->instants, kPairs / 100);
    CHECK_EQ(si->depth, 0);
    CHECK_EQ(si->tids.size(), 1);
  }
  CHECK_EQ(seq_ids.size(), kThreads);
}

void TestThreadsStream() { RunThreads(VP_BUFFER_STREAM, false); }
void TestThreadsRing() { RunThreads(VP_BUFFER_RING, false); }
void TestThreadsDiscard() { RunThreads(VP_BUFFER_DISCARD, false); }
void TestThreadsAliveAtStopStream() { RunThreads(VP_BUFFER_STREAM, true); }
void TestThreadsAliveAtStopRing() { RunThreads(VP_BUFFER_RING, true); }

void TestDiscardTiny() {
  Cfg c;
  c.path = TmpPath("discard_tiny.pftrace");
  c.mode = VP_BUFFER_DISCARD;
  c.kb = 4;
  uint32_t cat = vp_category("tiny");
  uint32_t name = vp_intern("tiny_slice", 10);
  vp_session* s = START(c);
  if (!s) return;
  for (int i = 0; i < 20000; i++) {
    vp_begin(cat, name);
    vp_end();
  }
  STOP(s);
  uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  uint64_t dropped = vp_session_stat(s, VP_STAT_PACKETS_DROPPED);
  uint64_t discarded = vp_session_stat(s, VP_STAT_CHUNKS_DISCARDED);
  CHECK(vp_session_stat(s, VP_STAT_BUFFER_BYTES) == 0);  // written out at stop
  vp_session_free(s);
  CHECK(dropped > 0);
  CHECK(discarded > 0);
  CHECK(written > 0);
  Expect ex;
  ex.never_negative = false;
  Trace t = LoadTrace(c.path, ex);
  CHECK_TRACE(t);
  CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
  CHECK(written + dropped >= 40000);
  CHECK_EQ(t.stats.stats_chunks_discarded, discarded);
  CHECK_EQ(t.stats.buffer_stats[pf::TraceStats::BufferStats::kChunksDiscarded], discarded);
  CHECK_EQ(t.stats.buffer_stats[pf::TraceStats::BufferStats::kTraceWriterPacketLoss], dropped);
  CHECK_EQ(t.stats.buffer_stats[pf::TraceStats::BufferStats::kBufferSize], 4096);
}

void TestRingOverwrite() {
  Cfg c;
  c.path = TmpPath("ring_small.pftrace");
  c.mode = VP_BUFFER_RING;
  c.kb = 64;
  uint32_t cat = vp_category("ringcat");
  uint32_t name = vp_intern("ring_slice", 10);
  uint32_t argn = vp_intern("ring_arg", 8);
  vp_session* s = START(c);
  if (!s) return;
  for (int i = 0; i < 30000; i++) {
    vp_begin(cat, name);
    vp_arg a = {};
    a.name = argn;
    a.type = VP_ARG_INT;
    a.i = i;
    vp_event e = {};
    e.type = VP_EVENT_INSTANT;
    e.category = cat;
    e.name = name;
    e.args = &a;
    e.nargs = 1;
    vp_emit(&e);
    vp_end();
  }
  STOP(s);
  uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  uint64_t dropped = vp_session_stat(s, VP_STAT_PACKETS_DROPPED);
  uint64_t overwritten = vp_session_stat(s, VP_STAT_CHUNKS_OVERWRITTEN);
  vp_session_free(s);
  CHECK(overwritten > 0);
  CHECK(dropped > 0);
  Expect ex;
  ex.first_packet = false;
  ex.never_negative = false;
  Trace t = LoadTrace(c.path, ex);
  CHECK_TRACE(t);
  CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
  CHECK(written + dropped >= 90000);
  // The newest data survives: the last instant carries i = 29999.
  int64_t last = -1;
  for (auto& p : t.packets)
    if (p.has_te && p.type == 3 && !p.anns.empty()) last = p.anns[0].i;
  CHECK_EQ(last, 29999);
  CHECK(t.stats.buffer_stats[pf::TraceStats::BufferStats::kChunksOverwritten] == overwritten);
}

void TestSessionErrors() {
  vp_error err{};
  Cfg c;
  c.path = TmpPath("errors.pftrace");
  vp_session* s = START(c);
  if (!s) return;
  // A second session fails with VP_E_STATE and says why.
  {
    vp_config* cfg = vp_config_new();
    std::string p2 = TmpPath("errors2.pftrace");
    vp_config_set_output(cfg, p2.c_str(), &err);
    vp_session* s2 = nullptr;
    std::memset(&err, 0, sizeof(err));
    int32_t rc = vp_session_start(cfg, &s2, &err);
    CHECK_EQ(rc, VP_E_STATE);
    CHECK(err.code == VP_E_STATE);
    CHECK(std::strlen(err.message) > 0);
    CHECK(s2 == nullptr);
    // The failed start did not touch its output file.
    struct stat st;
    CHECK(::stat(p2.c_str(), &st) != 0);
    // With a NULL error pointer too.
    CHECK(vp_session_start(cfg, &s2, nullptr) == VP_E_STATE);
    vp_config_free(cfg);
  }
  CHECK(vp_session_is_active(s) == 1);
  STOP(s);
  // Stop is idempotent; flush after stop is a state error.
  CHECK(vp_session_stop(s, &err) == VP_OK);
  CHECK(vp_session_flush(s, &err) == VP_E_STATE && std::strlen(err.message) > 0);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);

  // Unwritable output path.
  {
    vp_config* cfg = vp_config_new();
    std::string bad = TmpPath("no-such-dir/sub/trace.pftrace");
    CHECK(vp_config_set_output(cfg, bad.c_str(), &err) == VP_OK);
    vp_session* s2 = nullptr;
    int32_t rc = vp_session_start(cfg, &s2, &err);
    CHECK_EQ(rc, VP_E_IO);
    CHECK(err.code == VP_E_IO && std::strstr(err.message, "no-such-dir") != nullptr);
    CHECK(s2 == nullptr);
    CHECK(vp_is_tracing() == 0);
    // A directory is not writable as a file either.
    CHECK(vp_config_set_output(cfg, g_tmpdir.c_str(), &err) == VP_OK);
    CHECK(vp_session_start(cfg, &s2, &err) == VP_E_IO);
    vp_config_free(cfg);
  }
  // A session can start after the failures.
  s = START(c);
  if (s) {
    STOP(s);
    vp_session_free(s);
  }
  // Argument errors.
  {
    vp_config* cfg = vp_config_new();
    vp_session* s2 = nullptr;
    CHECK(vp_session_start(cfg, &s2, &err) == VP_E_INVALID_ARGUMENT);  // no output
    CHECK(vp_session_start(nullptr, &s2, &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_session_start(cfg, nullptr, &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_config_set_output(cfg, "", &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_config_set_output(cfg, nullptr, &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_config_set_output(nullptr, "x", &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_config_set_buffer(cfg, 1024, 3, &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_config_set_buffer(cfg, 1024, -1, &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_config_set_buffer(cfg, 3, VP_BUFFER_RING, &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_config_set_buffer(cfg, (64u << 20) + 1, VP_BUFFER_RING, &err) ==
          VP_E_INVALID_ARGUMENT);
    CHECK(vp_config_set_buffer(cfg, 4, VP_BUFFER_RING, &err) == VP_OK && err.code == VP_OK);
    CHECK(vp_config_enable_category(cfg, "", &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_config_disable_category(cfg, nullptr, &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_session_flush(nullptr, &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_session_stop(nullptr, &err) == VP_E_INVALID_ARGUMENT);
    CHECK(vp_session_stat(nullptr, VP_STAT_PACKETS_WRITTEN) == 0);
    CHECK(vp_session_is_active(nullptr) == 0);
    vp_session_free(nullptr);
    vp_config_free(cfg);
    vp_config_free(nullptr);
  }
  uint32_t track = 0;
  CHECK(vp_track_new(nullptr, 0, &track, &err) == VP_E_INVALID_ARGUMENT);
  CHECK(vp_track_new("x", 987654, &track, &err) == VP_E_INVALID_ARGUMENT);
  CHECK(vp_counter_track("", nullptr, &track, &err) == VP_E_INVALID_ARGUMENT);
  CHECK(vp_counter_track("c", nullptr, nullptr, &err) == VP_E_INVALID_ARGUMENT);
  CHECK(std::strcmp(vp_status_name(VP_E_IO), "I/O error") == 0);
  CHECK(std::strcmp(vp_status_name(12345), "unknown status") == 0);
  CHECK(vp_abi_version() == VPERFETTO_ABI_VERSION);
  CHECK(vp_version() && std::strlen(vp_version()) > 0);
  CHECK(vp_uuid_lsb() != 0 && vp_uuid_lsb() != vp_uuid_lsb());
  uint64_t t0 = vp_boot_time_ns();
  vp_sleep_us(1000);
  CHECK(vp_boot_time_ns() - t0 >= 1000000);
}

void TestEndWithoutBegin() {
  Cfg c;
  c.path = TmpPath("end_without_begin.pftrace");
  vp_session* s = START(c);
  if (!s) return;
  vp_end();
  vp_end();
  vp_event e = {};
  e.type = VP_EVENT_END;
  vp_emit(&e);
  std::thread th([] {
    vp_end();
    vp_event e2 = {};
    e2.type = VP_EVENT_END;
    vp_emit(&e2);
  });
  th.join();
  STOP(s);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  uint64_t events = 0;
  for (auto& p : t.packets) events += p.has_te;
  CHECK_EQ(events, 0);
  // vp_end outside a session does nothing either.
  vp_end();
}

void TestDisabledCategoryNesting() {
  Cfg c;
  c.path = TmpPath("disabled_nesting.pftrace");
  c.enable = {"on", "also_on"};
  c.disable = {"also_on"};  // disabled wins
  uint32_t on = vp_category("on");
  uint32_t off = vp_category("off");
  uint32_t also = vp_category("also_on");
  uint32_t a = vp_intern("A", 1);
  uint32_t b = vp_intern("B", 1);
  uint32_t x = vp_intern("X", 1);
  uint32_t y = vp_intern("Y", 1);
  vp_session* s = START(c);
  if (!s) return;
  uint32_t late = vp_category("late_category");  // registered mid-session: not enabled
  vp_begin(on, a);          // recorded
  vp_begin(off, b);         // not recorded
  vp_end();                 // closes B: writes nothing
  vp_instant(on, x);        // inside A
  vp_begin_str(off, "bs", 2);
  vp_begin(also, b);
  vp_begin(late, b);
  vp_event eb = {};
  eb.type = VP_EVENT_BEGIN;
  eb.category = off;
  eb.name = b;
  vp_emit(&eb);             // not recorded
  vp_event ee = {};
  ee.type = VP_EVENT_END;
  vp_emit(&ee);             // closes eb
  vp_end();                 // closes late
  vp_end();                 // closes also
  vp_end();                 // closes bs
  vp_instant(0, y);         // uncategorized: recorded in every session
  vp_instant(off, y);
  vp_instant_str(off, "nope", 4);
  vp_end();                 // closes A: written
  vp_end();                 // nothing open: ignored
  STOP(s);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK_EQ(t.seqs.size(), 1);
  if (t.seqs.empty()) return;
  std::vector<const Packet*> ev = t.Events(t.seqs.begin()->first);
  CHECK_EQ(ev.size(), 4);
  if (ev.size() == 4) {
    CHECK(ev[0]->type == 1 && ev[0]->name == "A" && ev[0]->cat == "on");
    CHECK(ev[1]->type == 3 && ev[1]->name == "X");
    CHECK(ev[2]->type == 3 && ev[2]->name == "Y" && ev[2]->cat_iids.empty());
    CHECK(ev[3]->type == 2);
  }
  for (auto& p : t.packets)
    for (auto& cat : p.i_cats)
      CHECK_MSG(cat.second == "on", "category %s interned", cat.second.c_str());
}

}  // namespace vpsdk_test
