// The merge on several threads writes the same bytes as on one (run under
// the sanitizers by scripts/sanitize.sh: ASan, and TSan with --tsan). The
// traces are recorded through the public API: several MB each, so the moved
// side's rewrite runs in many batches on concurrent workers. Then the same
// with no thread to be had (pthread_create failing): the merge runs on the
// caller's thread alone, the same bytes, and a session still records (its
// helper threads and the deflate's workers missing).
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include <vperfetto/vperfetto.h>

std::atomic<bool> g_no_threads{false};

// This program's pthread_create comes first for the library too (and for
// std::thread): it fails while g_no_threads is set, as under a process or
// memory limit, else it is the next one (libc's, or a sanitizer's).
extern "C" int pthread_create(pthread_t* t, const pthread_attr_t* a, void* (*f)(void*), void* arg) {
  using Fn = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static Fn next = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_create"));
  if (g_no_threads.load() || !next) return EAGAIN;
  return next(t, a, f, arg);
}

namespace {

int failures = 0;
#define CHECK(c)                                                   \
  do {                                                             \
    if (!(c)) {                                                    \
      std::fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #c); \
      failures++;                                                  \
    }                                                              \
  } while (0)

std::string Temp(const char* name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/vp_merge_threads_" + std::to_string(getpid()) + "_" + name;
}

// A trace of `threads` writers, each `n` slices with args, instants and counters.
bool Record(const std::string& path, int threads, int n) {
  vp_error err;
  vp_config* c = vp_config_new();
  bool ok = vp_config_set_output(c, path.c_str(), &err) == VP_OK &&
            vp_config_set_buffer(c, 64 * 1024, VP_BUFFER_STREAM, &err) == VP_OK;
  vp_session* s = nullptr;
  ok = ok && vp_session_start(c, &s, &err) == VP_OK;
  vp_config_free(c);
  if (!ok) {
    std::fprintf(stderr, "record: %s\n", err.message);
    return false;
  }
  uint32_t counter = 0;
  vp_counter_track("load", "count", &counter, &err);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; t++)
    pool.emplace_back([&, t] {
      uint32_t cat = vp_category("bench"), name = vp_intern("work", 4);
      for (int i = 0; i < n; i++) {
        vp_begin(cat, name);
        if (i % 7 == 0) vp_instant(cat, vp_intern("tick", 4));
        if (i % 5 == 0) vp_counter_int(counter, i * (t + 1));
        vp_end();
      }
    });
  for (auto& th : pool) th.join();
  bool stopped = vp_session_stop(s, &err) == VP_OK;
  vp_session_free(s);
  return stopped;
}

// A trace written with no thread to be had: stream mode with a periodic
// flush and compression at stop (the session's helper threads and the
// deflate's workers cannot start), events from this thread. Its report.
std::string RecordAlone(const std::string& path) {
  vp_error err;
  vp_config* c = vp_config_new();
  bool ok = vp_config_set_output(c, path.c_str(), &err) == VP_OK &&
            vp_config_set_buffer(c, 64 * 1024, VP_BUFFER_STREAM, &err) == VP_OK &&
            vp_config_set_flush_period_ms(c, 5, &err) == VP_OK &&
            vp_config_set_compression(c, 1, &err) == VP_OK;
  vp_session* s = nullptr;
  ok = ok && vp_session_start(c, &s, &err) == VP_OK;
  vp_config_free(c);
  if (!ok) {
    std::fprintf(stderr, "record alone: %s\n", err.message);
    return "";
  }
  uint32_t cat = vp_category("alone"), name = vp_intern("solo", 4);
  for (int i = 0; i < 50000; i++) {
    vp_begin(cat, name);
    vp_end();
  }
  ok = vp_session_stop(s, &err) == VP_OK;
  vp_session_free(s);
  char* report = nullptr;
  if (!ok || vp_inspect(path.c_str(), 0, &report, &err) != VP_OK) {
    std::fprintf(stderr, "record alone: %s\n", err.message);
    return "";
  }
  std::string r = report;
  vp_string_free(report);
  return r;
}

std::string Slurp(const std::string& path) {
  std::string data;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[1 << 16];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, got);
    std::fclose(f);
  }
  return data;
}

std::string Merge(const std::string& host, const std::string& guest, const std::string& out,
                  uint32_t threads, bool machine_ids) {
  vp_error err;
  vp_merge_options* m = vp_merge_options_new();
  vp_merge_set_host(m, host.c_str(), &err);
  vp_merge_add_guest(m, "vm", guest.c_str(), &err);
  vp_merge_set_output(m, out.c_str(), &err);
  vp_merge_set_mode(m, VP_MERGE_GUEST_INTO_HOST, &err);
  vp_merge_set_time_diff(m, -1000000);  // the guest started tracing later
  vp_merge_set_machine_ids(m, machine_ids ? 1 : 0);
  vp_merge_set_threads(m, threads);
  char* report = nullptr;
  int32_t rc = vp_merge_run(m, &report, &err);
  vp_merge_options_free(m);
  if (rc != VP_OK) {
    std::fprintf(stderr, "merge: %s\n", err.message);
    failures++;
    return "";
  }
  vp_string_free(report);
  return Slurp(out);
}

}  // namespace

int main() {
  std::string host = Temp("host.pftrace"), guest = Temp("guest.pftrace"), out = Temp("out.pftrace");
  CHECK(Record(host, 2, 20000));
  CHECK(Record(guest, 4, 40000));
  CHECK(Slurp(guest).size() > (4u << 20));  // several batches
  for (bool machines : {false, true}) {
    std::string one = Merge(host, guest, out, 1, machines);
    CHECK(one.size() > Slurp(guest).size());
    for (uint32_t threads : {2u, 3u, 8u}) CHECK(Merge(host, guest, out, threads, machines) == one);
    g_no_threads = true;
    CHECK(Merge(host, guest, out, 4, machines) == one);
    g_no_threads = false;
  }
  g_no_threads = true;
  std::string alone = RecordAlone(out);
  g_no_threads = false;
  CHECK(alone.find("\"slice_begin\":50000,\"slice_end\":50000") != std::string::npos);
  CHECK(alone.find("\"compressed_packets\":") != std::string::npos &&
        alone.find("\"compressed_packets\":0") == std::string::npos);
  std::remove(host.c_str());
  std::remove(guest.c_str());
  std::remove(out.c_str());
  if (failures) return 1;
  std::printf("merge_threads_test: ok\n");
  return 0;
}
