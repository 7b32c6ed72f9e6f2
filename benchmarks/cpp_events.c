/*
 * cpp_events.c - cost of the native hot path, measured through the public
 * C ABI (vperfetto.h) exactly as a C or C++ program would call it.
 *
 * Built and run by cpp_events.py, which turns the raw numbers printed here
 * into the report table. Usage:
 *
 *     cpp_events PAIRS REPS TMPDIR
 *
 * What is measured, each as ns per operation over loops of PAIRS operations,
 * REPS times; the benchmarks run round-robin (every benchmark once per
 * repetition) so that the noise of a shared machine falls on all of them
 * alike:
 *
 *   floor         two clock_gettime(CLOCK_BOOTTIME) reads. Every begin/end
 *                 pair has to read the trace clock twice, so this is the
 *                 least a pair can cost; everything else is the tracer's own
 *                 work (encoding, bookkeeping, handing chunks to the file).
 *   begin/end     vp_begin(cat, id) + vp_end() with an interned name,
 *   begin_str     vp_begin_str(cat, "name", 4) + vp_end(),
 *   counter       vp_counter_int(track, i), per sample (one clock read),
 *   emit2         vp_emit(begin with 2 debug annotations) + vp_emit(end),
 *                 all in a session in "stream" mode (straight to a file in
 *                 TMPDIR, so the cost of write(2) is included, amortised over
 *                 64 KiB chunks), and begin/end again in a "ring" session big
 *                 enough that nothing is overwritten;
 *   off / disabled  begin/end with no session, and in a disabled category;
 *   mt            2 threads doing begin/end pairs at the same time, ns per
 *                 pair per thread (each thread's own wall time / its pairs),
 *                 with the 2-thread floor (two clock reads) for reference.
 *
 * Bytes per pair (and per counter sample): two stream sessions with different
 * numbers of pairs; the difference of the file sizes divided by the
 * difference of the pair counts (the clock snapshots, descriptors and stats
 * at the start and end cancel). With incremental timestamps (the default)
 * and, in the same run, absolute ones ("_abs": as before issue 14), for the
 * sizes and for the ns of a pair and a counter sample.
 *
 * Output: one line per result, tab separated:
 *     ns  <key>  <v1,v2,...>      ns per op, one value per repetition
 *     bytes  <key>  <value>       bytes per pair
 *     info  <key>  <value>
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vperfetto/vperfetto.h>

static long g_pairs;
static int g_reps;
static const char* g_dir;

/* Results: ns per op, per benchmark and repetition. */
#define MAX_BENCH 32
#define MAX_REPS 64
static const char* g_keys[MAX_BENCH];
static double g_ns[MAX_BENCH][MAX_REPS];
static int g_nbench;

static void record(const char* key, int rep, double ns) {
  int i;
  for (i = 0; i < g_nbench; i++)
    if (strcmp(g_keys[i], key) == 0) break;
  if (i == g_nbench) g_keys[g_nbench++] = key;
  g_ns[i][rep] = ns;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char* what, const vp_error* err) {
  fprintf(stderr, "cpp_events: %s: %s\n", what, err ? err->message : "");
  exit(1);
}

/* --- sessions --------------------------------------------------------------- */

/* incremental: timestamps as deltas on the sequence's clock (the default);
 * 0: absolute CLOCK_BOOTTIME on every packet (as before issue 14). */
static vp_session* start_ts(const char* path, int32_t mode, uint32_t kb, const char* disabled,
                            int incremental) {
  vp_error err;
  vp_config* c = vp_config_new();
  vp_session* s = NULL;
  if (!c) die("vp_config_new", NULL);
  if (vp_config_set_output(c, path, &err)) die("set_output", &err);
  if (vp_config_set_buffer(c, kb, mode, &err)) die("set_buffer", &err);
  if (vp_config_set_incremental_timestamps(c, incremental, 1, &err)) die("set_incremental", &err);
  if (disabled && vp_config_disable_category(c, disabled, &err)) die("disable", &err);
  if (vp_session_start(c, &s, &err)) die("session_start", &err);
  vp_config_free(c);
  return s;
}

static vp_session* start(const char* path, int32_t mode, uint32_t kb, const char* disabled) {
  return start_ts(path, mode, kb, disabled, 1);
}

static void stop(vp_session* s, uint64_t min_packets) {
  vp_error err;
  uint64_t written, dropped;
  if (vp_session_stop(s, &err)) die("session_stop", &err);
  written = vp_session_stat(s, VP_STAT_PACKETS_WRITTEN);
  dropped = vp_session_stat(s, VP_STAT_PACKETS_DROPPED);
  /* Honesty check: the events timed were really recorded. */
  if (written < min_packets || dropped != 0) {
    fprintf(stderr, "cpp_events: expected >= %llu packets, got %llu (%llu dropped)\n",
            (unsigned long long)min_packets, (unsigned long long)written,
            (unsigned long long)dropped);
    exit(1);
  }
  vp_session_free(s);
}

static long file_size(const char* path) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  return (long)st.st_size;
}

/* --- the measured loops ----------------------------------------------------- */

static uint32_t g_cat, g_off_cat, g_name, g_arg_a, g_arg_b, g_counter;
static volatile uint64_t g_sink;

static uint64_t boottime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double loop_floor(long n) {
  uint64_t acc = 0, t0 = mono_ns();
  for (long i = 0; i < n; i++) {
    acc += boottime();
    acc ^= boottime();
  }
  uint64_t t1 = mono_ns();
  g_sink = acc;
  return (double)(t1 - t0) / (double)n;
}

static double loop_pairs(long n, uint32_t cat) {
  uint64_t t0 = mono_ns();
  for (long i = 0; i < n; i++) {
    vp_begin(cat, g_name);
    vp_end();
  }
  return (double)(mono_ns() - t0) / (double)n;
}

static double loop_pairs_str(long n) {
  uint64_t t0 = mono_ns();
  for (long i = 0; i < n; i++) {
    vp_begin_str(g_cat, "name", 4);
    vp_end();
  }
  return (double)(mono_ns() - t0) / (double)n;
}

static double loop_counter(long n) {
  uint64_t t0 = mono_ns();
  for (long i = 0; i < n; i++) vp_counter_int(g_counter, (int64_t)i);
  return (double)(mono_ns() - t0) / (double)n;
}

static double loop_emit2(long n) {
  vp_arg args[2];
  vp_event b, e;
  memset(args, 0, sizeof(args));
  memset(&b, 0, sizeof(b));
  memset(&e, 0, sizeof(e));
  args[0].name = g_arg_a;
  args[0].type = VP_ARG_INT;
  args[1].name = g_arg_b;
  args[1].type = VP_ARG_STRING;
  args[1].s = "value";
  args[1].len = 5;
  b.type = VP_EVENT_BEGIN;
  b.category = g_cat;
  b.name = g_name;
  b.args = args;
  b.nargs = 2;
  e.type = VP_EVENT_END;
  uint64_t t0 = mono_ns();
  for (long i = 0; i < n; i++) {
    args[0].i = i;
    vp_emit(&b);
    vp_emit(&e);
  }
  return (double)(mono_ns() - t0) / (double)n;
}

/* --- two threads at once ------------------------------------------------------ */

struct mt_arg {
  pthread_barrier_t* barrier;
  int floor;
  double ns;
};

static void* mt_thread(void* p) {
  struct mt_arg* a = p;
  pthread_barrier_wait(a->barrier);
  a->ns = a->floor ? loop_floor(g_pairs) : loop_pairs(g_pairs, g_cat);
  return NULL;
}

/* ns per pair per thread: the mean of the two threads' own timings. */
static double run_mt(int floor) {
  pthread_barrier_t barrier;
  pthread_t th[2];
  struct mt_arg a[2];
  pthread_barrier_init(&barrier, NULL, 2);
  for (int i = 0; i < 2; i++) {
    a[i].barrier = &barrier;
    a[i].floor = floor;
    if (pthread_create(&th[i], NULL, mt_thread, &a[i]) != 0) die("pthread_create", NULL);
  }
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&barrier);
  return (a[0].ns + a[1].ns) / 2;
}

/* --- bytes per pair ----------------------------------------------------------- */

/* counter: counter samples (vp_counter_int(track, i)) instead of pairs. */
static long trace_size(const char* path, long pairs, uint32_t cat, int incremental, int counter) {
  vp_session* s = start_ts(path, VP_BUFFER_STREAM, 16384, NULL, incremental);
  if (counter) loop_counter(pairs);
  else loop_pairs(pairs, cat);
  stop(s, (uint64_t)((counter ? 1 : 2) * pairs));
  long size = file_size(path);
  unlink(path);
  return size;
}

static void bytes_per(const char* key, const char* path, uint32_t cat, int incremental,
                      int counter) {
  long n1 = g_pairs / 4, n2 = g_pairs;
  long s1 = trace_size(path, n1, cat, incremental, counter);
  long s2 = trace_size(path, n2, cat, incremental, counter);
  printf("bytes\t%s\t%.2f\n", key, (double)(s2 - s1) / (double)(n2 - n1));
}

int main(int argc, char** argv) {
  char path[4096];
  vp_error err;
  if (argc != 4) {
    fprintf(stderr, "usage: %s PAIRS REPS TMPDIR\n", argv[0]);
    return 2;
  }
  g_pairs = atol(argv[1]);
  g_reps = atoi(argv[2]);
  g_dir = argv[3];
  if (g_pairs < 1000 || g_reps < 1 || g_reps > MAX_REPS) {
    fprintf(stderr, "cpp_events: PAIRS >= 1000 and 1 <= REPS <= %d\n", MAX_REPS);
    return 2;
  }
  snprintf(path, sizeof(path), "%s/cpp_events.pftrace", g_dir);

  g_cat = vp_category("bench");
  g_off_cat = vp_category("off");
  g_name = vp_intern("name", 4);
  g_arg_a = vp_intern("a", 1);
  g_arg_b = vp_intern("b", 1);
  if (!g_cat || !g_off_cat || !g_name || !g_arg_a || !g_arg_b) die("registration", NULL);
  if (vp_counter_track("bench_counter", "count", &g_counter, &err)) die("counter", &err);
  printf("info\tversion\t%s\n", vp_version());

  /* Warm-up: page in the code and the writer's chunk. */
  {
    vp_session* s = start(path, VP_BUFFER_STREAM, 16384, NULL);
    loop_pairs(g_pairs / 10, g_cat);
    stop(s, 0);
    unlink(path);
  }

  for (int rep = 0; rep < g_reps; rep++) {
    vp_session* s;
    long n = g_pairs;

    /* No session. */
    record("floor", rep, loop_floor(n));
    record("off", rep, loop_pairs(n, g_cat));
    record("off_str", rep, loop_pairs_str(n));

    /* Stream session: every traced row. */
    s = start(path, VP_BUFFER_STREAM, 16384, NULL);
    record("stream", rep, loop_pairs(n, g_cat));
    record("stream_nocat", rep, loop_pairs(n, 0));
    record("stream_str", rep, loop_pairs_str(n));
    record("counter", rep, loop_counter(n));
    record("emit2", rep, loop_emit2(n));
    record("mt", rep, run_mt(0));
    /* 3 x begin/end, counter, emit2, 2 threads x begin/end */
    stop(s, (uint64_t)(2 * n * 3 + n + 2 * n + 2 * 2 * n));
    unlink(path);

    /* The same pairs and counters with absolute timestamps (issue 14's "before"). */
    s = start_ts(path, VP_BUFFER_STREAM, 16384, NULL, 0);
    record("stream_abs", rep, loop_pairs(n, g_cat));
    record("counter_abs", rep, loop_counter(n));
    stop(s, (uint64_t)(2 * n + n));
    unlink(path);

    /* No session again: two threads reading the clock. */
    record("mt_floor", rep, run_mt(1));

    /* Ring big enough for all of it (~40 B per pair, 1 pair per loop). */
    s = start(path, VP_BUFFER_RING, (uint32_t)(n * 64 / 1024 + 1024), NULL);
    record("ring", rep, loop_pairs(n, g_cat));
    stop(s, (uint64_t)(2 * n));
    unlink(path);

    /* A session in which the category is disabled. */
    s = start(path, VP_BUFFER_STREAM, 16384, "off");
    record("disabled", rep, loop_pairs(n, g_off_cat));
    stop(s, 0);
    unlink(path);
  }

  for (int i = 0; i < g_nbench; i++) {
    printf("ns\t%s\t", g_keys[i]);
    for (int r = 0; r < g_reps; r++) printf(r ? ",%.3f" : "%.3f", g_ns[i][r]);
    printf("\n");
  }
  bytes_per("pair", path, g_cat, 1, 0);
  bytes_per("pair_nocat", path, 0, 1, 0);
  bytes_per("counter", path, 0, 1, 1);
  bytes_per("pair_abs", path, g_cat, 0, 0);
  bytes_per("pair_nocat_abs", path, 0, 0, 0);
  bytes_per("counter_abs", path, 0, 0, 1);
  return 0;
}
