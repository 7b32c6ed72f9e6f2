// The vpsdk tests' tiny framework (no external one): CHECK counts passes and
// failures, main() (vpsdk_tests.cc) runs the tests and prints "N passed, M
// failed" last; temp paths and file reading for the tests; the names every
// test file uses. Everything here is inline: each test file includes it.
#ifndef VPSDK_TESTS_VPSDK_TEST_H_
#define VPSDK_TESTS_VPSDK_TEST_H_

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "vperfetto/vperfetto.h"
#include "vpsdk/field_numbers.h"
#include "vpsdk/proto_decoder.h"
#include "vpsdk/proto_utils.h"
#include "vpsdk/proto_writer.h"
#include "seq_time.h"

namespace vpsdk_test {

namespace pf = vpsdk::pf;
namespace proto = vpsdk::proto;
using vpsdk::Field;
using vpsdk::ProtoDecoder;
using vpsdk::ProtoWriter;

// --- the tiny framework -----------------------------------------------------------

inline std::atomic<int> g_passed{0};
inline std::atomic<int> g_failed{0};
inline std::atomic<int> g_printed{0};
constexpr int kMaxPrinted = 200;

inline void Report(bool ok, const char* file, int line, const char* expr, const std::string& msg) {
  if (ok) {
    g_passed++;
    return;
  }
  g_failed++;
  if (g_printed++ < kMaxPrinted)
    std::fprintf(stderr, "%s:%d: CHECK failed: %s%s%s\n", file, line, expr,
                 msg.empty() ? "" : " -- ", msg.c_str());
}

inline std::string Fmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string Fmt(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

#define CHECK(cond) Report(static_cast<bool>(cond), __FILE__, __LINE__, #cond, std::string())
#define CHECK_MSG(cond, ...) \
  Report(static_cast<bool>(cond), __FILE__, __LINE__, #cond, Fmt(__VA_ARGS__))
// Compares as 64-bit two's complement (no signed/unsigned surprises).
#define CHECK_EQ(a, b)                                                                   \
  Report(static_cast<unsigned long long>(a) == static_cast<unsigned long long>(b),       \
         __FILE__, __LINE__, #a " == " #b,                                               \
         Fmt("%lld vs %lld", static_cast<long long>(a), static_cast<long long>(b)))

inline std::string g_tmpdir;

inline std::string TmpPath(const std::string& name) { return g_tmpdir + "/" + name; }

inline std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // An exactly sized heap copy: ASan catches any read past the end.
  return std::vector<uint8_t>(chars.begin(), chars.end());
}

// --- varints and zigzag -----------------------------------------------------------

inline int64_t UnZigZag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

}  // namespace vpsdk_test

#endif  // VPSDK_TESTS_VPSDK_TEST_H_
