// vperfetto_merge: the original tool's command line over the same merge
// engine as `python -m vperfetto.merge` (a thin main over vp_merge_*).
//
//   vperfetto_merge <guest.trace> <host.trace> <combined.trace>
//                   [<guestClockBootTimeNsWhenHostTracingStarted>]
//                   [--guest-tsc-offset <n>] [--merge-guest-into-host]
//                   [--add-traces] [--time-diff <ns>] [-q]
//
// Options after the three files come in any order. Errors: one line on
// stderr and exit code 2.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <vperfetto/vperfetto.h>

namespace {

const char kUsage[] =
    "usage: vperfetto_merge <guest.trace> <host.trace> <combined.trace> "
    "[guestClockBootTimeNs] [--guest-tsc-offset N] [--merge-guest-into-host] "
    "[--add-traces] [--time-diff NS] [-q]";

int Usage(const std::string& why) {
  std::fprintf(stderr, "vperfetto_merge: error: %s (%s)\n", why.c_str(), kUsage);
  return 2;
}

bool ParseInt64(const char* s, long long* out) {
  if (!s || !*s) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (errno || *end) return false;
  *out = v;
  return true;
}

bool ParseUint64(const char* s, unsigned long long* out) {
  if (!s || !*s || *s == '-') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno || *end) return false;
  *out = v;
  return true;
}

// The value of "key":<number or "string"> in the report, or "".
std::string JsonValue(const std::string& json, const char* key) {
  std::string k = std::string("\"") + key + "\":";
  size_t p = json.find(k);
  if (p == std::string::npos) return "";
  p += k.size();
  if (json[p] == '"') {
    size_t e = json.find('"', p + 1);
    return json.substr(p + 1, e - p - 1);
  }
  size_t e = json.find_first_of(",}]", p);
  return json.substr(p, e - p);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return Usage("expected <guest.trace> <host.trace> <combined.trace>");
  vp_merge_options* m = vp_merge_options_new();
  vp_error err;
  int32_t mode = VP_MERGE_HOST_INTO_GUEST;
  bool quiet = false;
  if (vp_merge_add_guest(m, "guest", argv[1], &err) != VP_OK ||
      vp_merge_set_host(m, argv[2], &err) != VP_OK ||
      vp_merge_set_output(m, argv[3], &err) != VP_OK)
    return Usage(err.message);
  for (int i = 4; i < argc; i++) {
    std::string a = argv[i];
    long long v;
    unsigned long long u;
    if (a == "--guest-tsc-offset") {
      if (++i >= argc || !ParseInt64(argv[i], &v)) return Usage("--guest-tsc-offset needs an integer");
      vp_merge_set_guest_tsc_offset(m, v);
    } else if (a == "--time-diff") {
      if (++i >= argc || !ParseInt64(argv[i], &v)) return Usage("--time-diff needs an integer (ns)");
      vp_merge_set_time_diff(m, v);
    } else if (a == "--merge-guest-into-host") {
      mode = VP_MERGE_GUEST_INTO_HOST;
    } else if (a == "--add-traces") {
      mode = VP_MERGE_ADD_TRACES;
    } else if (a == "-q") {
      quiet = true;
    } else if (ParseUint64(argv[i], &u)) {
      vp_merge_set_guest_boot_time(m, u);
    } else {
      return Usage("cannot parse '" + a + "' as the guest clock boot time (ns) or an option");
    }
  }
  vp_merge_set_mode(m, mode, &err);
  char* report = nullptr;
  if (vp_merge_run(m, &report, &err) != VP_OK) {
    std::fprintf(stderr, "vperfetto_merge: error: %s\n", err.message);
    vp_merge_options_free(m);
    return 2;
  }
  std::string json = report;
  vp_string_free(report);
  vp_merge_options_free(m);
  size_t w = json.find("\"warnings\":[");
  if (w != std::string::npos && json.compare(w + 12, 1, "]") != 0)
    std::fprintf(stderr, "vperfetto_merge: warnings: %s\n",
                 json.substr(w + 11, json.find(']', w) - w - 10).c_str());
  if (!quiet) {
    std::printf("guest: offset %s ns by %s%s\n", JsonValue(json, "offset_ns").c_str(),
                JsonValue(json, "method").c_str(),
                JsonValue(json, "approximate") == "true" ? " (approximate)" : "");
    std::printf("wrote %s (%s packets)\n", argv[3], JsonValue(json, "packets_written").c_str());
  }
  return 0;
}
