// Unit and end-to-end tests of the vpsdk tracing core.
//
// No framework: CHECK counts passes and failures, the program prints
// "N passed, M failed" last and exits non-zero on any failure. The library
// exports only the vp_* C ABI, so the end-to-end tests go through it and
// decode the written trace with the header-only ProtoDecoder. Built and run
// under ASan+UBSan (scripts/sanitize.sh) and TSan.
//
// Usage: vpsdk_tests [substring-of-test-name ...]
//
// The tests are in proto_tests.cc, session_tests.cc, concurrency_tests.cc and
// event_tests.cc; vpsdk_test.h is the framework, trace_decode.h and
// trace_expect.h decode and validate the written traces.
#include "vpsdk_test.h"

namespace vpsdk_test {

void TestVarint();
void TestProtoWriter();
void TestDecoderRobustness();
void TestNoSession();
void TestEverythingRing();
void TestEverythingDiscard();
void TestEverythingStream();
void TestThreadsStream();
void TestThreadsRing();
void TestThreadsDiscard();
void TestThreadsAliveAtStopStream();
void TestThreadsAliveAtStopRing();
void TestDiscardTiny();
void TestRingOverwrite();
void TestSessionErrors();
void TestTsStream();
void TestTsRing();
void TestTsRingWrap();
void TestTsDiscardSmall();
void TestTsUnitRingWrap();
void TestTsUnitStream();
void TestTsAbsoluteStream();
void TestTsAbsoluteRingWrap();
void TestTimestampConfigErrors();
void TestEndWithoutBegin();
void TestDisabledCategoryNesting();
void TestFlushRing();
void TestFlushStream();
void TestFlushDiscard();
void TestConcurrentFlushRing();
void TestConcurrentFlushStream();
void TestBigStream();
void TestBigRing();
void TestBigRingSmall();
void TestBigDiscardSmall();
void TestLongTracksRing();
void TestLongTracksStream();
void TestThreadTrackUuid();
void TestSliceAcrossSessions();
void TestDeepNesting();
void TestMalformedEvents();
void TestConcurrentStart();
void TestFork();
void TestStartStopRace();
void TestThreadExitRace();
void TestPrefaultAhead();

// --- main ------------------------------------------------------------------------------

struct TestCase {
  const char* name;
  void (*fn)();
};

const TestCase kTests[] = {
    {"varint", TestVarint},
    {"proto_writer", TestProtoWriter},
    {"decoder_robustness", TestDecoderRobustness},
    {"no_session", TestNoSession},
    {"everything_ring", TestEverythingRing},
    {"everything_discard", TestEverythingDiscard},
    {"everything_stream", TestEverythingStream},
    {"threads_stream", TestThreadsStream},
    {"threads_ring", TestThreadsRing},
    {"threads_discard", TestThreadsDiscard},
    {"threads_alive_at_stop_stream", TestThreadsAliveAtStopStream},
    {"threads_alive_at_stop_ring", TestThreadsAliveAtStopRing},
    {"discard_tiny", TestDiscardTiny},
    {"ring_overwrite", TestRingOverwrite},
    {"session_errors", TestSessionErrors},
    {"ts_stream", TestTsStream},
    {"ts_ring", TestTsRing},
    {"ts_ring_wrap", TestTsRingWrap},
    {"ts_discard_small", TestTsDiscardSmall},
    {"ts_unit_ring_wrap", TestTsUnitRingWrap},
    {"ts_unit_stream", TestTsUnitStream},
    {"ts_absolute_stream", TestTsAbsoluteStream},
    {"ts_absolute_ring_wrap", TestTsAbsoluteRingWrap},
    {"ts_config_errors", TestTimestampConfigErrors},
    {"end_without_begin", TestEndWithoutBegin},
    {"disabled_category_nesting", TestDisabledCategoryNesting},
    {"flush_ring", TestFlushRing},
    {"flush_stream", TestFlushStream},
    {"flush_discard", TestFlushDiscard},
    {"concurrent_flush_ring", TestConcurrentFlushRing},
    {"concurrent_flush_stream", TestConcurrentFlushStream},
    {"big_stream", TestBigStream},
    {"big_ring", TestBigRing},
    {"big_ring_small", TestBigRingSmall},
    {"big_discard_small", TestBigDiscardSmall},
    {"long_tracks_ring", TestLongTracksRing},
    {"long_tracks_stream", TestLongTracksStream},
    {"thread_track_uuid", TestThreadTrackUuid},
    {"slice_across_sessions", TestSliceAcrossSessions},
    {"deep_nesting", TestDeepNesting},
    {"malformed_events", TestMalformedEvents},
    {"concurrent_start", TestConcurrentStart},
    {"fork", TestFork},
    {"start_stop_race", TestStartStopRace},
    {"thread_exit_race", TestThreadExitRace},
    {"prefault_ahead", TestPrefaultAhead},
};

void RemoveTree(const std::string& dir) {
  std::string cmd = "rm -rf '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
}

}  // namespace vpsdk_test

using vpsdk_test::g_failed;
using vpsdk_test::g_passed;
using vpsdk_test::g_tmpdir;
using vpsdk_test::kTests;
using vpsdk_test::RemoveTree;
using vpsdk_test::TestCase;

int main(int argc, char** argv) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/vpsdk_tests.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back(0);
  if (!mkdtemp(buf.data())) {
    std::perror("mkdtemp");
    return 2;
  }
  g_tmpdir = buf.data();
  bool keep = std::getenv("VPSDK_KEEP_TRACES") != nullptr;
  int ran = 0;
  for (const TestCase& tc : kTests) {
    bool selected = argc < 2;
    for (int i = 1; i < argc; i++) selected |= std::strstr(tc.name, argv[i]) != nullptr;
    if (!selected) continue;
    int failed_before = g_failed.load();
    auto t0 = std::chrono::steady_clock::now();
    tc.fn();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[%s] %s (%.0f ms)\n", g_failed.load() == failed_before ? "  OK  " : "FAILED",
                tc.name, ms);
    std::fflush(stdout);
    ran++;
  }
  if (keep) std::printf("traces kept in %s\n", g_tmpdir.c_str());
  else RemoveTree(g_tmpdir);
  if (ran == 0) {
    std::printf("no test matched\n");
    return 2;
  }
  std::printf("%d passed, %d failed\n", g_passed.load(), g_failed.load());
  return g_failed.load() == 0 ? 0 : 1;
}
