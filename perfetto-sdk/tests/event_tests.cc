// End-to-end through the C ABI: big payloads, long track names across
// resets, thread track uuids, events outside a session, slices across
// sessions, deep nesting, malformed events.
#include "trace_expect.h"

namespace vpsdk_test {

void TestBigPayloads(int32_t mode, uint32_t kb) {
  Cfg c;
  c.path = TmpPath(std::string("big_") + ModeName(mode) + std::to_string(kb) + ".pftrace");
  c.mode = mode;
  c.kb = kb;
  uint32_t cat = vp_category("big");
  std::string long_name(200000, 'n');
  std::string long_str(1u << 20, 's');
  std::string mid_name(5000, 'm');
  uint32_t mid = vp_intern(mid_name.data(), mid_name.size());
  uint32_t argn = vp_intern(mid_name.data(), 3000);
  vp_session* s = START(c);
  if (!s) return;
  vp_begin_str(cat, long_name.data(), long_name.size());
  vp_arg a = {};
  a.name = argn;
  a.type = VP_ARG_STRING;
  a.s = long_str.data();
  a.len = long_str.size();
  vp_event e = {};
  e.type = VP_EVENT_INSTANT;
  e.category = cat;
  e.name = mid;
  e.args = &a;
  e.nargs = 1;
  for (int i = 0; i < 3; i++) vp_emit(&e);
  for (int i = 0; i < 200; i++) {
    vp_begin(cat, mid);
    vp_end();
  }
  vp_end();
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
  if (dropped == 0) {
    uint64_t seen_long = 0, seen_str = 0, seen_mid = 0;
    for (auto& p : t.packets) {
      if (!p.has_te) continue;
      seen_long += p.name == long_name;
      seen_mid += p.name == mid_name;
      for (auto& an : p.anns) seen_str += an.s == long_str && an.name == mid_name.substr(0, 3000);
    }
    CHECK_EQ(seen_long, 1);
    CHECK_EQ(seen_str, 3);
    CHECK_EQ(seen_mid, 203);
  } else {
    CHECK(mode != VP_BUFFER_STREAM);
  }
}

void TestBigStream() { TestBigPayloads(VP_BUFFER_STREAM, 1024); }
void TestBigRing() { TestBigPayloads(VP_BUFFER_RING, 65536); }
void TestBigRingSmall() { TestBigPayloads(VP_BUFFER_RING, 64); }
void TestBigDiscardSmall() { TestBigPayloads(VP_BUFFER_DISCARD, 64); }

// Track descriptors are re-emitted after every incremental-state reset; the
// space they need must be reserved even when the reset happens inside the
// room check (after a flush, or at a chunk boundary).
void TestLongTrackNamesWithResets(int32_t mode) {
  Cfg c;
  c.path = TmpPath(std::string("long_tracks_") + ModeName(mode) + ".pftrace");
  c.mode = mode;
  c.kb = 65536;
  std::string cname(3000, 'c'), tname(3000, 't');
  uint32_t ctr = 0, track = 0, deep = 0;
  vp_error err{};
  CHECK(vp_counter_track(cname.c_str(), "bytes", &ctr, &err) == VP_OK);
  CHECK(vp_track_new(tname.c_str(), 0, &track, &err) == VP_OK);
  // A chain of 60 tracks, each with a longish name.
  uint32_t parent = 0;
  for (int i = 0; i < 60; i++) {
    std::string n = std::string(200, 'd') + std::to_string(i);
    CHECK(vp_track_new(n.c_str(), parent, &deep, &err) == VP_OK);
    parent = deep;
  }
  uint32_t cat = vp_category("long_tracks");
  vp_session* s = START(c);
  if (!s) return;
  int flush_failures = 0;
  // Phase 1: each kind of track alone, a flush before every event (a reset
  // follows), padding moving the write position through a chunk.
  for (int phase = 0; phase < 3; phase++) {
    for (int i = 0; i < 1500; i++) {
      if (phase == 0) {
        vp_counter_int(ctr, i);
      } else {
        vp_event e = {};
        e.type = VP_EVENT_INSTANT;
        e.category = cat;
        e.name_str = "x";
        e.name_len = 1;
        e.track = phase == 1 ? track : deep;
        vp_emit(&e);
      }
      for (int k = 0; k < i % 13; k++) vp_instant_str(cat, "pad", 3);
      flush_failures += vp_session_flush(s, &err) != VP_OK;
    }
  }
  CHECK_EQ(flush_failures, 0);
  STOP(s);
  uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
  CHECK_EQ(t.CountEvents(4), 1500);
  CHECK_EQ(t.CountEvents(3), 3000 + 3 * 8980);
  CHECK(t.described.count(vp_track_uuid(ctr)) && t.described[vp_track_uuid(ctr)].name == cname);
}

void TestLongTracksRing() { TestLongTrackNamesWithResets(VP_BUFFER_RING); }
void TestLongTracksStream() { TestLongTrackNamesWithResets(VP_BUFFER_STREAM); }

void TestThreadTrackUuid() {
  uint64_t u1 = 0, u2 = 0, in_session = 0;
  std::thread th([&] {
    u1 = vp_track_uuid(VP_TRACK_THREAD);
    u2 = vp_track_uuid(VP_TRACK_THREAD);
  });
  th.join();
  CHECK(u1 != 0);
  CHECK(u1 == u2);
  CHECK(vp_track_uuid(VP_TRACK_THREAD) == vp_track_uuid(VP_TRACK_THREAD));
  CHECK(vp_track_uuid(VP_TRACK_PROCESS) != 0);
  Cfg c;
  c.path = TmpPath("thread_uuid.pftrace");
  uint64_t before = 0;
  vp_session* s = START(c);
  if (!s) return;
  std::thread th2([&] {
    before = vp_track_uuid(VP_TRACK_THREAD);
    vp_set_thread_name("uuid-thread");
    vp_instant_str(0, "here", 4);
    in_session = vp_track_uuid(VP_TRACK_THREAD);
  });
  th2.join();
  STOP(s);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  const SeqInfo* si = t.ByThreadName("uuid-thread");
  CHECK(si && si->thread_uuid == in_session && in_session == before);
  CHECK(t.described.count(vp_track_uuid(VP_TRACK_PROCESS)) == 1);
}

// Events outside any session do nothing (and cost no allocation).
void TestNoSession() {
  CHECK(vp_is_tracing() == 0);
  uint32_t cat = vp_category("nosession");
  uint32_t name = vp_intern("ns", 2);
  for (int i = 0; i < 1000; i++) {
    vp_begin(cat, name);
    vp_instant(cat, name);
    vp_end();
  }
  vp_event e = {};
  e.type = VP_EVENT_BEGIN;
  vp_emit(&e);
  e.type = VP_EVENT_END;
  vp_emit(&e);
  // A slice begun outside a session is not ended inside one.
  vp_begin(cat, name);
  Cfg c;
  c.path = TmpPath("no_session.pftrace");
  vp_session* s = START(c);
  if (!s) return;
  vp_end();
  STOP(s);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK_EQ(t.CountEvents(2), 0);
  vp_end();
}

// A slice open when a session stops is not closed by an end in the next.
void TestSliceAcrossSessions() {
  uint32_t cat = vp_category("across");
  uint32_t name = vp_intern("across", 6);
  Cfg c;
  c.path = TmpPath("across1.pftrace");
  vp_session* s = START(c);
  if (!s) return;
  vp_begin(cat, name);
  STOP(s);
  vp_session_free(s);
  c.path = TmpPath("across2.pftrace");
  s = START(c);
  if (!s) return;
  vp_end();  // belongs to the previous session
  vp_begin(cat, name);
  vp_end();
  STOP(s);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK_EQ(t.CountEvents(1), 1);
  CHECK_EQ(t.CountEvents(2), 1);
}

// Deep nesting past the writer's recorded-begin bitmap.
void TestDeepNesting() {
  uint32_t on = vp_category("deep_on");
  uint32_t off = vp_category("deep_off");
  uint32_t name = vp_intern("deep", 4);
  Cfg c;
  c.path = TmpPath("deep.pftrace");
  c.disable = {"deep_off"};
  vp_session* s = START(c);
  if (!s) return;
  const int kDepth = 4096;  // ThreadWriter::kMaxDepth
  for (int i = 0; i < kDepth; i++) vp_begin(i % 3 == 0 ? off : on, name);
  for (int i = 0; i < kDepth; i++) vp_end();
  STOP(s);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  uint64_t begins = t.CountEvents(1), ends = t.CountEvents(2);
  CHECK_EQ(begins, kDepth - (kDepth + 2) / 3);
  CHECK_EQ(ends, begins);
}

// Malformed events from a careless caller never write outside the chunk.
void TestMalformedEvents() {
  Cfg c;
  c.path = TmpPath("malformed.pftrace");
  c.kb = 1024;
  uint32_t cat = vp_category("malformed");
  uint32_t argn = vp_intern("m", 1);
  std::string big(200000, 'q');
  vp_session* s = START(c);
  if (!s) return;
  for (int i = 0; i < 50; i++) {
    vp_arg a[3] = {};
    a[0].name = argn;
    a[0].type = 99;  // unknown type with a string attached
    a[0].s = big.data();
    a[0].len = big.size();
    a[1].name = 0xfffffff;  // unknown name id
    a[1].type = -3;
    a[1].s = big.data();
    a[1].len = 5;
    a[2].name = argn;
    a[2].type = VP_ARG_STRING;  // NULL string with a length
    a[2].len = 1000;
    vp_event e = {};
    e.type = VP_EVENT_INSTANT;
    e.category = cat;
    e.name = 0xffffff;   // unknown interned id: no name
    e.name_len = 1000;   // with no inline name
    e.args = a;
    e.nargs = 3;
    vp_emit(&e);
    vp_begin_str(cat, nullptr, 12345);
    vp_instant_str(cat, nullptr, 99);
    vp_end();
    vp_begin(cat, 0xffffff);
    vp_end();
    vp_instant(0xffff, argn);  // unknown category id
  }
  STOP(s);
  uint64_t written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  vp_session_free(s);
  Trace t = LoadTrace(c.path);
  CHECK_TRACE(t);
  CHECK_EQ(t.packets.size(), written);  // the session's own packets count too
  CHECK_EQ(t.CountEvents(3), 100);
  CHECK_EQ(t.CountEvents(1), 100);
}

}  // namespace vpsdk_test
