// Unit and end-to-end tests of the vpsdk tracing core.
//
// No framework: CHECK counts passes and failures, the program prints
// "N passed, M failed" last and exits non-zero on any failure. The library
// exports only the vp_* C ABI, so the end-to-end tests go through it and
// decode the written trace with the header-only ProtoDecoder. Built and run
// under ASan+UBSan (scripts/sanitize.sh) and TSan.
//
// Usage: vpsdk_tests [substring-of-test-name ...]
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

namespace {

namespace pf = vpsdk::pf;
namespace proto = vpsdk::proto;
using vpsdk::Field;
using vpsdk::ProtoDecoder;
using vpsdk::ProtoWriter;

// --- the tiny framework -----------------------------------------------------------

std::atomic<int> g_passed{0};
std::atomic<int> g_failed{0};
std::atomic<int> g_printed{0};
constexpr int kMaxPrinted = 200;

void Report(bool ok, const char* file, int line, const char* expr, const std::string& msg) {
  if (ok) {
    g_passed++;
    return;
  }
  g_failed++;
  if (g_printed++ < kMaxPrinted)
    std::fprintf(stderr, "%s:%d: CHECK failed: %s%s%s\n", file, line, expr,
                 msg.empty() ? "" : " -- ", msg.c_str());
}

std::string Fmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string Fmt(const char* fmt, ...) {
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

std::string g_tmpdir;

std::string TmpPath(const std::string& name) { return g_tmpdir + "/" + name; }

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // An exactly sized heap copy: ASan catches any read past the end.
  return std::vector<uint8_t>(chars.begin(), chars.end());
}

// --- varints and zigzag -----------------------------------------------------------

int64_t UnZigZag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

void TestVarint() {
  std::vector<uint64_t> values = {0,
                                  1,
                                  2,
                                  127,
                                  128,
                                  255,
                                  300,
                                  16383,
                                  16384,
                                  (1u << 21) - 1,
                                  1u << 21,
                                  (1ull << 28) - 1,
                                  1ull << 28,
                                  (1ull << 63) - 1,
                                  1ull << 63,
                                  std::numeric_limits<uint64_t>::max()};
  for (unsigned b = 0; b < 64; b++) {
    values.push_back(1ull << b);
    values.push_back((1ull << b) - 1);
    values.push_back((1ull << b) + 1);
  }
  for (uint64_t v : values) {
    uint8_t tmp[proto::kMaxVarintSize + 4];
    std::memset(tmp, 0xee, sizeof(tmp));
    uint8_t* end = proto::WriteVarint(v, tmp);
    size_t n = static_cast<size_t>(end - tmp);
    size_t bits = 0;
    for (uint64_t x = v; x; x >>= 1) bits++;
    size_t expected = bits == 0 ? 1 : (bits + 6) / 7;
    CHECK_MSG(n == expected, "v=%llu n=%zu", static_cast<unsigned long long>(v), n);
    CHECK(proto::VarintSize(v) == n);
    CHECK(tmp[n] == 0xee);  // wrote nothing past the varint
    // Decode from an exactly sized heap buffer.
    std::vector<uint8_t> exact(tmp, tmp + n);
    uint64_t out = 0;
    const uint8_t* q = proto::ReadVarint(exact.data(), exact.data() + n, &out);
    CHECK(q == exact.data() + n);
    CHECK(out == v);
    // And with bytes after it (the word-at-a-time path: continuation bits
    // set in what follows must not leak in).
    uint8_t wide[proto::kMaxVarintSize + 16];
    for (uint8_t fill : {uint8_t{0xff}, uint8_t{0x00}, uint8_t{0x80}}) {
      std::memset(wide, fill, sizeof(wide));
      proto::WriteVarint(v, wide);
      out = 0;
      CHECK(proto::ReadVarint(wide, wide + sizeof(wide), &out) == wide + n);
      CHECK_MSG(out == v, "v=%llu fill=%u", static_cast<unsigned long long>(v), fill);
    }
    // Every truncation fails.
    for (size_t cut = 0; cut < n; cut++) {
      std::vector<uint8_t> trunc(tmp, tmp + cut);
      uint64_t junk = 0;
      CHECK(proto::ReadVarint(trunc.data(), trunc.data() + cut, &junk) == nullptr);
    }
  }
  CHECK(proto::VarintSize(std::numeric_limits<uint64_t>::max()) == 10);

  // Ten bytes is the maximum: an eleventh is an error, even a zero one.
  {
    std::vector<uint8_t> v11(10, 0x80);
    v11.push_back(0x00);
    uint64_t out = 0;
    CHECK(proto::ReadVarint(v11.data(), v11.data() + v11.size(), &out) == nullptr);
    std::vector<uint8_t> ff11(10, 0xff);
    ff11.push_back(0x01);
    CHECK(proto::ReadVarint(ff11.data(), ff11.data() + ff11.size(), &out) == nullptr);
    // A non-canonical (padded) ten-byte varint is accepted.
    std::vector<uint8_t> pad(9, 0x80);
    pad.push_back(0x01);
    CHECK(proto::ReadVarint(pad.data(), pad.data() + pad.size(), &out) == pad.data() + 10);
    CHECK(out == (1ull << 63));
    std::vector<uint8_t> one = {0x81, 0x80, 0x80, 0x00};
    CHECK(proto::ReadVarint(one.data(), one.data() + one.size(), &out) == one.data() + 4);
    CHECK(out == 1);
  }

  // Zigzag.
  CHECK(proto::ZigZag(0) == 0);
  CHECK(proto::ZigZag(-1) == 1);
  CHECK(proto::ZigZag(1) == 2);
  CHECK(proto::ZigZag(-2) == 3);
  CHECK(proto::ZigZag(std::numeric_limits<int64_t>::max()) ==
        std::numeric_limits<uint64_t>::max() - 1);
  CHECK(proto::ZigZag(std::numeric_limits<int64_t>::min()) ==
        std::numeric_limits<uint64_t>::max());
  std::vector<int64_t> ints = {0, 1, -1, 63, -64, 64, -65, 1 << 20, -(1 << 20),
                               std::numeric_limits<int64_t>::max(),
                               std::numeric_limits<int64_t>::min(),
                               std::numeric_limits<int64_t>::min() + 1};
  for (unsigned b = 0; b < 63; b++) {
    ints.push_back(static_cast<int64_t>(1ull << b));
    ints.push_back(-static_cast<int64_t>(1ull << b));
  }
  for (int64_t v : ints) {
    uint64_t z = proto::ZigZag(v);
    CHECK(UnZigZag(z) == v);
    uint8_t tmp[proto::kMaxVarintSize];
    size_t n = static_cast<size_t>(proto::WriteVarint(z, tmp) - tmp);
    uint64_t back = 0;
    CHECK(proto::ReadVarint(tmp, tmp + n, &back) == tmp + n);
    CHECK(UnZigZag(back) == v);
    // Small magnitudes stay small.
    if (v >= -64 && v < 64) CHECK(n == 1);
  }
  // Negative int64 as plain varint takes ten bytes (the proto int64 rule).
  {
    uint8_t tmp[proto::kMaxVarintSize];
    CHECK(proto::WriteVarint(static_cast<uint64_t>(int64_t{-1}), tmp) - tmp == 10);
  }
}

// --- ProtoWriter nested messages ---------------------------------------------------

uint8_t Pattern(size_t i) { return static_cast<uint8_t>((i * 131u + 7u) ^ (i >> 8)); }

// The payload length k such that a bytes field (1-byte tag) is exactly `size`.
size_t PayloadFor(size_t size) {
  for (size_t k = size >= 12 ? size - 12 : 0; k <= size; k++)
    if (1 + proto::VarintSize(k) + k == size) return k;
  return SIZE_MAX;
}

void TestNestedRaw(size_t size) {
  // field1=7, field2={size raw bytes}, field3=9. Bound: tags and values as
  // written plus 1+4 length bytes for the one nested message.
  size_t bound = 2 + 1 + 5 + size + 2;
  std::vector<uint8_t> buf(bound);
  ProtoWriter pw(buf.data());
  pw.Varint(1, 7);
  uint8_t* nested = pw.BeginNested(2);
  std::vector<uint8_t> body(size);
  for (size_t i = 0; i < size; i++) body[i] = Pattern(i);
  pw.Raw(body.data(), size);
  pw.EndNested(nested);
  pw.Varint(3, 9);
  size_t written = static_cast<size_t>(pw.pos() - buf.data());
  CHECK(written <= bound);
  CHECK_EQ(written, 2 + 1 + proto::VarintSize(size) + size + 2);

  ProtoDecoder d(buf.data(), written);
  Field f;
  CHECK(d.Next(&f) && f.id == 1 && f.type == proto::kVarint && f.int_value == 7);
  CHECK(d.Next(&f) && f.id == 2 && f.type == proto::kLengthDelimited);
  CHECK_EQ(f.size, size);
  CHECK(f.size == size && (size == 0 || std::memcmp(f.data, body.data(), size) == 0));
  CHECK(d.Next(&f) && f.id == 3 && f.int_value == 9);
  CHECK(!d.Next(&f));
  CHECK(!d.error());
}

void TestNestedDecodable(size_t size) {
  // outer(4) { 1:1, inner(2) { size bytes: a bytes field 5 }, 3:3 }, 6:6
  size_t k = size == 0 ? 0 : PayloadFor(size);
  CHECK_MSG(size == 0 || k != SIZE_MAX, "size %zu", size);
  if (size != 0 && k == SIZE_MAX) return;
  std::vector<uint8_t> payload(k);
  for (size_t i = 0; i < k; i++) payload[i] = Pattern(i + 3);
  size_t bound = (1 + 5) + 2 + (1 + 5) + size + 2 + 2;
  std::vector<uint8_t> buf(bound);
  ProtoWriter pw(buf.data());
  uint8_t* outer = pw.BeginNested(4);
  pw.Varint(1, 1);
  uint8_t* inner = pw.BeginNested(2);
  if (size) pw.Bytes(5, payload.data(), k);
  pw.EndNested(inner);
  pw.Varint(3, 3);
  pw.EndNested(outer);
  pw.Varint(6, 6);
  size_t written = static_cast<size_t>(pw.pos() - buf.data());
  CHECK(written <= bound);
  size_t outer_len = 2 + 1 + proto::VarintSize(size) + size + 2;
  CHECK_EQ(written, 1 + proto::VarintSize(outer_len) + outer_len + 2);

  ProtoDecoder d(buf.data(), written);
  Field f;
  CHECK(d.Next(&f) && f.id == 4 && f.type == proto::kLengthDelimited);
  CHECK_EQ(f.size, outer_len);
  {
    ProtoDecoder od(f.data, f.size);
    Field g;
    CHECK(od.Next(&g) && g.id == 1 && g.int_value == 1);
    CHECK(od.Next(&g) && g.id == 2 && g.type == proto::kLengthDelimited);
    CHECK_EQ(g.size, size);
    {
      ProtoDecoder id(g.data, g.size);
      Field h;
      if (size) {
        CHECK(id.Next(&h) && h.id == 5 && h.type == proto::kLengthDelimited);
        CHECK_EQ(h.size, k);
        CHECK(h.size == k && (k == 0 || std::memcmp(h.data, payload.data(), k) == 0));
      }
      CHECK(!id.Next(&h) && !id.error());
    }
    CHECK(od.Next(&g) && g.id == 3 && g.int_value == 3);
    CHECK(!od.Next(&g) && !od.error());
  }
  CHECK(d.Next(&f) && f.id == 6 && f.int_value == 6);
  CHECK(!d.Next(&f) && !d.error());
}

void TestProtoWriter() {
  const size_t sizes[] = {0, 1, 2, 126, 127, 128, 129, 255, 16383, 16384, 16385,
                          (1u << 21) - 1, 1u << 21, (1u << 21) + 1};
  for (size_t s : sizes) {
    TestNestedRaw(s);
    if (s != 1) TestNestedDecodable(s);  // 1 byte cannot hold a field
  }

  // Every scalar writer, decoded back.
  std::vector<uint8_t> buf(512);
  ProtoWriter pw(buf.data());
  pw.Varint(1, 0);
  pw.Int64(2, -5);
  pw.Bool(3, true);
  pw.Fixed64(4, 0x0123456789abcdefull);
  pw.Double(5, -2.5);
  pw.String(6, "hello", 5);
  pw.Bytes(7, nullptr, 0);
  pw.Varint(0x1fffffff, 42);  // the largest field number
  pw.Varint(16, std::numeric_limits<uint64_t>::max());
  size_t n = static_cast<size_t>(pw.pos() - buf.data());
  ProtoDecoder d(buf.data(), n);
  Field f;
  CHECK(d.Next(&f) && f.id == 1 && f.int_value == 0);
  CHECK(d.Next(&f) && f.id == 2 && f.as_int64() == -5);
  CHECK(d.Next(&f) && f.id == 3 && f.int_value == 1);
  CHECK(d.Next(&f) && f.id == 4 && f.type == proto::kFixed64 &&
        f.int_value == 0x0123456789abcdefull);
  CHECK(d.Next(&f) && f.id == 5 && f.as_double() == -2.5);
  CHECK(d.Next(&f) && f.id == 6 && f.size == 5 && std::memcmp(f.data, "hello", 5) == 0);
  CHECK(d.Next(&f) && f.id == 7 && f.size == 0);
  CHECK(d.Next(&f) && f.id == 0x1fffffff && f.int_value == 42);
  CHECK(d.Next(&f) && f.id == 16 && f.int_value == std::numeric_limits<uint64_t>::max());
  CHECK(!d.Next(&f) && !d.error());
}

// --- ProtoDecoder robustness ---------------------------------------------------------

struct DecodeResult {
  bool error = false;
  size_t fields = 0;
};

// Decodes everything, recursing into length-delimited fields as if they were
// messages; checks every view stays inside [p, p+n).
DecodeResult DecodeAll(const uint8_t* p, size_t n, int depth, bool* views_ok) {
  DecodeResult r;
  ProtoDecoder d(p, n);
  Field f;
  while (d.Next(&f)) {
    r.fields++;
    if (f.begin < p || f.end > p + n || f.begin >= f.end) *views_ok = false;
    if (f.type == proto::kLengthDelimited) {
      if (f.data < p || f.data + f.size > p + n) *views_ok = false;
      if (depth < 8) DecodeAll(f.data, f.size, depth + 1, views_ok);
    }
  }
  if (d.pos() != p + n) *views_ok = false;
  r.error = d.error();
  // Once failed (or done), it stays so.
  if (d.Next(&f)) *views_ok = false;
  return r;
}

std::vector<uint8_t> SampleMessage() {
  std::vector<uint8_t> buf(4096);
  ProtoWriter pw(buf.data());
  uint8_t* pkt = pw.BeginNested(1);
  pw.Varint(8, 123456789012ull);
  pw.Varint(10, 3);
  uint8_t* te = pw.BeginNested(11);
  pw.Varint(9, 1);
  pw.String(23, "a slice name", 12);
  pw.Fixed64(47, 0xfeedull);
  uint8_t* da = pw.BeginNested(4);
  pw.Varint(1, 7);
  pw.Double(5, 1.5);
  pw.EndNested(da);
  pw.EndNested(te);
  pw.EndNested(pkt);
  pkt = pw.BeginNested(1);
  std::string big(300, 'z');
  pw.String(23, big.data(), big.size());
  pw.Int64(30, -1);
  pw.Tag(44, proto::kFixed32);
  pw.Raw("\x01\x02\x03\x04", 4);
  pw.EndNested(pkt);
  buf.resize(static_cast<size_t>(pw.pos() - buf.data()));
  return buf;
}

void TestDecoderRobustness() {
  std::vector<uint8_t> msg = SampleMessage();
  // Field boundaries at the top level.
  std::set<size_t> boundaries = {0};
  {
    ProtoDecoder d(msg.data(), msg.size());
    Field f;
    while (d.Next(&f)) boundaries.insert(static_cast<size_t>(f.end - msg.data()));
    CHECK(!d.error());
    CHECK(boundaries.count(msg.size()) == 1);
  }
  // Every prefix: an error unless it ends on a field boundary.
  for (size_t len = 0; len <= msg.size(); len++) {
    std::vector<uint8_t> prefix(msg.begin(), msg.begin() + static_cast<long>(len));
    bool views_ok = true;
    DecodeResult r = DecodeAll(prefix.data(), len, 0, &views_ok);
    CHECK_MSG(views_ok, "prefix %zu", len);
    CHECK_MSG(r.error == (boundaries.count(len) == 0), "prefix %zu error=%d", len, r.error);
  }
  // Every single-byte corruption of the message.
  for (size_t i = 0; i < msg.size(); i++) {
    for (uint8_t x : {uint8_t{0x00}, uint8_t{0xff}, uint8_t{0x80}, uint8_t{0x07},
                      uint8_t{0x0f}, uint8_t{0x7f}}) {
      std::vector<uint8_t> m = msg;
      m[i] = x;
      bool views_ok = true;
      DecodeAll(m.data(), m.size(), 0, &views_ok);
      CHECK_MSG(views_ok, "corrupt byte %zu=%u", i, x);
    }
  }
  // Random garbage.
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  int bad_views = 0;
  for (int iter = 0; iter < 20000; iter++) {
    size_t len = static_cast<size_t>(next() % 96);
    std::vector<uint8_t> g(len);
    for (auto& b : g) {
      uint64_t r = next();
      // Skew towards bytes that make plausible tags and lengths.
      b = static_cast<uint8_t>((r & 3) == 0 ? (r >> 8) & 0x0f : (r >> 8));
    }
    bool views_ok = true;
    DecodeAll(g.data(), len, 0, &views_ok);
    if (!views_ok) bad_views++;
  }
  CHECK_EQ(bad_views, 0);

  // Specific malformed inputs.
  struct Case {
    std::vector<uint8_t> bytes;
    const char* what;
  };
  std::vector<Case> cases = {
      {{0x00}, "field number 0"},
      {{0x00, 0x01}, "field number 0 with value"},
      {{0x0b}, "start group"},
      {{0x0c}, "end group"},
      {{0x0e, 0x00}, "wire type 6"},
      {{0x0f, 0x00}, "wire type 7"},
      {{0x08}, "varint value missing"},
      {{0x08, 0x80}, "varint value truncated"},
      {{0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, "11-byte varint"},
      {{0x0a}, "length missing"},
      {{0x0a, 0x05, 0x01, 0x02}, "length past end"},
      {{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "huge length"},
      {{0x0a, 0x80, 0x80, 0x80, 0x80, 0x10}, "length 2^32"},
      {{0x09, 0x01, 0x02, 0x03}, "fixed64 truncated"},
      {{0x0d, 0x01, 0x02}, "fixed32 truncated"},
      {{0x80}, "tag truncated"},
      {{0x80, 0x80, 0x80, 0x80, 0x10}, "field number 2^29"},
      {{0xf8, 0xff, 0xff, 0xff, 0xff, 0x01}, "field number >= 2^32"},
      {{0x08, 0x01, 0x0b}, "group after a good field"},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> b = c.bytes;
    ProtoDecoder d(b.data(), b.size());
    Field f;
    while (d.Next(&f)) {
    }
    CHECK_MSG(d.error(), "%s", c.what);
    CHECK_MSG(d.pos() == b.data() + b.size(), "%s", c.what);
    CHECK(!d.Next(&f) && d.error());
  }
  // Empty input is fine and no error.
  {
    ProtoDecoder d(static_cast<const uint8_t*>(nullptr), 0);
    Field f;
    CHECK(!d.Next(&f) && !d.error());
  }
  // Largest valid field number is accepted.
  {
    std::vector<uint8_t> b = {0xf8, 0xff, 0xff, 0xff, 0x0f, 0x05};
    ProtoDecoder d(b.data(), b.size());
    Field f;
    CHECK(d.Next(&f) && f.id == 0x1fffffff && f.int_value == 5);
    CHECK(!d.Next(&f) && !d.error());
  }
}

// --- trace decoding --------------------------------------------------------------------

struct Ann {
  uint64_t name_iid = 0;
  std::string name;  // resolved or inline
  int kind = -1;     // VP_ARG_*
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  std::string s;
};

struct TrackDesc {
  bool present = false;
  uint64_t uuid = 0, parent = 0;
  bool has_parent = false;
  std::string name;
  bool thread = false;
  int64_t pid = 0, tid = 0;
  std::string thread_name;
  bool process = false;
  int64_t process_pid = 0;
  std::string process_name;
  bool counter = false;
  uint64_t unit = 0;
  std::string unit_name;
};

using InternedList = std::vector<std::pair<uint64_t, std::string>>;

struct Packet {
  bool has_ts = false;
  uint64_t ts = 0;      // absolute CLOCK_BOOTTIME (Validate resolves the clocks)
  uint64_t raw_ts = 0;  // as written
  uint32_t clock_id = 0;  // timestamp_clock_id; 0 when unset
  uint32_t seq = 0;
  uint64_t flags = 0;
  bool first_on_seq = false, prev_dropped = false;
  bool has_defaults = false;
  uint64_t default_track = 0, default_clock = 0;
  InternedList i_cats, i_names, i_args;
  bool has_te = false;
  uint64_t type = 0;
  std::vector<uint64_t> cat_iids;
  std::string cat;  // resolved first category
  bool has_name_iid = false;
  uint64_t name_iid = 0;
  bool has_name = false;
  std::string name;  // inline or resolved
  bool has_track = false;
  uint64_t track = 0;  // explicit or the default
  std::vector<Ann> anns;
  std::vector<uint64_t> flows, term_flows;
  bool has_cint = false, has_cdouble = false;
  int64_t cint = 0;
  double cdouble = 0;
  TrackDesc td;
  bool clock = false;
  std::vector<vpsdk_test::SnapshotClock> snapshot;
  bool trace_config = false;
  bool disable_incremental = false, has_disable_incremental = false;
  uint64_t unit_multiplier = 0;
  bool stats = false;
  std::map<uint32_t, uint64_t> buffer_stats;
  uint64_t stats_chunks_discarded = 0;
};

bool IsVar(const Field& f) { return f.type == proto::kVarint; }
bool IsLd(const Field& f) { return f.type == proto::kLengthDelimited; }
bool IsF64(const Field& f) { return f.type == proto::kFixed64; }
std::string Str(const Field& f) {
  return std::string(reinterpret_cast<const char*>(f.data), f.size);
}

bool ParseInterned(const Field& outer, InternedList* out) {
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  bool has_iid = false, has_name = false;
  uint64_t iid = 0;
  std::string name;
  while (d.Next(&f)) {
    if (f.id == pf::InternedString::kIid && IsVar(f)) {
      iid = f.int_value;
      has_iid = true;
    } else if (f.id == pf::InternedString::kName && IsLd(f)) {
      name = Str(f);
      has_name = true;
    } else {
      return false;
    }
  }
  if (d.error() || !has_iid || !has_name) return false;
  out->emplace_back(iid, name);
  return true;
}

bool ParseAnn(const Field& outer, Ann* a) {
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  int values = 0;
  while (d.Next(&f)) {
    namespace DA = pf::DebugAnnotation;
    switch (f.id) {
      case DA::kNameIid: if (!IsVar(f)) return false; a->name_iid = f.int_value; break;
      case DA::kName: if (!IsLd(f)) return false; a->name = Str(f); break;
      case DA::kBoolValue: if (!IsVar(f)) return false; a->kind = VP_ARG_BOOL; a->i = f.as_int64(); values++; break;
      case DA::kUintValue: if (!IsVar(f)) return false; a->kind = VP_ARG_UINT; a->u = f.int_value; values++; break;
      case DA::kIntValue: if (!IsVar(f)) return false; a->kind = VP_ARG_INT; a->i = f.as_int64(); values++; break;
      case DA::kDoubleValue: if (!IsF64(f)) return false; a->kind = VP_ARG_DOUBLE; a->d = f.as_double(); values++; break;
      case DA::kStringValue: if (!IsLd(f)) return false; a->kind = VP_ARG_STRING; a->s = Str(f); values++; break;
      case DA::kPointerValue: if (!IsVar(f)) return false; a->kind = VP_ARG_POINTER; a->u = f.int_value; values++; break;
      default: return false;
    }
  }
  return !d.error() && values == 1;
}

bool ParseTrackEvent(const Field& outer, Packet* p) {
  namespace TE = pf::TrackEvent;
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  p->has_te = true;
  while (d.Next(&f)) {
    switch (f.id) {
      case TE::kType: if (!IsVar(f)) return false; p->type = f.int_value; break;
      case TE::kCategoryIids: if (!IsVar(f)) return false; p->cat_iids.push_back(f.int_value); break;
      case TE::kNameIid: if (!IsVar(f)) return false; p->has_name_iid = true; p->name_iid = f.int_value; break;
      case TE::kName: if (!IsLd(f)) return false; p->has_name = true; p->name = Str(f); break;
      case TE::kTrackUuid: if (!IsVar(f)) return false; p->has_track = true; p->track = f.int_value; break;
      case TE::kDebugAnnotations: {
        if (!IsLd(f)) return false;
        Ann a;
        if (!ParseAnn(f, &a)) return false;
        p->anns.push_back(a);
        break;
      }
      case TE::kCounterValue: if (!IsVar(f)) return false; p->has_cint = true; p->cint = f.as_int64(); break;
      case TE::kDoubleCounterValue: if (!IsF64(f)) return false; p->has_cdouble = true; p->cdouble = f.as_double(); break;
      case TE::kFlowIds: if (!IsF64(f)) return false; p->flows.push_back(f.int_value); break;
      case TE::kTerminatingFlowIds: if (!IsF64(f)) return false; p->term_flows.push_back(f.int_value); break;
      default: return false;
    }
  }
  return !d.error() && p->type >= 1 && p->type <= 4;
}

bool ParseTrackDescriptor(const Field& outer, TrackDesc* t) {
  namespace TD = pf::TrackDescriptor;
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  t->present = true;
  bool has_uuid = false;
  while (d.Next(&f)) {
    switch (f.id) {
      case TD::kUuid: if (!IsVar(f)) return false; t->uuid = f.int_value; has_uuid = true; break;
      case TD::kName: if (!IsLd(f)) return false; t->name = Str(f); break;
      case TD::kParentUuid: if (!IsVar(f)) return false; t->parent = f.int_value; t->has_parent = true; break;
      case TD::kThread: {
        if (!IsLd(f)) return false;
        t->thread = true;
        ProtoDecoder td(f.data, f.size);
        Field g;
        while (td.Next(&g)) {
          if (g.id == pf::ThreadDescriptor::kPid && IsVar(g)) t->pid = g.as_int64();
          else if (g.id == pf::ThreadDescriptor::kTid && IsVar(g)) t->tid = g.as_int64();
          else if (g.id == pf::ThreadDescriptor::kThreadName && IsLd(g)) t->thread_name = Str(g);
          else return false;
        }
        if (td.error()) return false;
        break;
      }
      case TD::kProcess: {
        if (!IsLd(f)) return false;
        t->process = true;
        ProtoDecoder pd(f.data, f.size);
        Field g;
        while (pd.Next(&g)) {
          if (g.id == pf::ProcessDescriptor::kPid && IsVar(g)) t->process_pid = g.as_int64();
          else if (g.id == pf::ProcessDescriptor::kProcessName && IsLd(g)) t->process_name = Str(g);
          else return false;
        }
        if (pd.error()) return false;
        break;
      }
      case TD::kCounter: {
        if (!IsLd(f)) return false;
        t->counter = true;
        ProtoDecoder cd(f.data, f.size);
        Field g;
        while (cd.Next(&g)) {
          if (g.id == pf::CounterDescriptor::kUnit && IsVar(g)) t->unit = g.int_value;
          else if (g.id == pf::CounterDescriptor::kUnitName && IsLd(g)) t->unit_name = Str(g);
          else return false;
        }
        if (cd.error()) return false;
        break;
      }
      default: return false;
    }
  }
  return !d.error() && has_uuid;
}

bool ParseStats(const Field& outer, Packet* p) {
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  p->stats = true;
  while (d.Next(&f)) {
    if (f.id == pf::TraceStats::kBufferStats && IsLd(f)) {
      ProtoDecoder bd(f.data, f.size);
      Field g;
      while (bd.Next(&g)) {
        if (!IsVar(g)) return false;
        p->buffer_stats[g.id] = g.int_value;
      }
      if (bd.error()) return false;
    } else if (f.id == pf::TraceStats::kChunksDiscarded && IsVar(f)) {
      p->stats_chunks_discarded = f.int_value;
    } else {
      return false;
    }
  }
  return !d.error();
}

// The session's snapshots (4+ global clocks, BOOTTIME primary) and, on a
// writer sequence, BOOTTIME and the incremental clock 64 (checked in
// Validate).
bool ParseClock(const Field& outer, Packet* p) {
  uint32_t primary = pf::BuiltinClock::kBoottime;
  if (!vpsdk_test::ReadSnapshotClocks(outer.data, outer.size, &p->snapshot, &primary)) return false;
  return primary == pf::BuiltinClock::kBoottime && p->snapshot.size() >= 2;
}

// The session's TraceConfig: its track_event data source's config.
bool ParseTraceConfig(const Field& outer, Packet* p) {
  p->trace_config = true;
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  while (d.Next(&f)) {
    if (f.id != pf::TraceConfig::kDataSources || !IsLd(f)) continue;
    ProtoDecoder ds(f.data, f.size);
    Field g;
    while (ds.Next(&g)) {
      if (g.id != pf::TraceConfig::DataSource::kConfig || !IsLd(g)) continue;
      ProtoDecoder dc(g.data, g.size);
      Field h;
      while (dc.Next(&h)) {
        if (h.id != pf::DataSourceConfig::kTrackEventConfig || !IsLd(h)) continue;
        ProtoDecoder te(h.data, h.size);
        Field k;
        while (te.Next(&k)) {
          if (k.id == pf::TrackEventConfig::kDisableIncrementalTimestamps && IsVar(k))
            p->disable_incremental = k.int_value != 0, p->has_disable_incremental = true;
          if (k.id == pf::TrackEventConfig::kTimestampUnitMultiplier && IsVar(k))
            p->unit_multiplier = k.int_value;
        }
      }
    }
  }
  return !d.error();
}

bool ParseDefaults(const Field& outer, Packet* p) {
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  p->has_defaults = true;
  while (d.Next(&f)) {
    if (f.id == pf::TracePacketDefaults::kTimestampClockId && IsVar(f)) {
      p->default_clock = f.int_value;
    } else if (f.id == pf::TracePacketDefaults::kTrackEventDefaults && IsLd(f)) {
      ProtoDecoder td(f.data, f.size);
      Field g;
      while (td.Next(&g)) {
        if (g.id == pf::TrackEventDefaults::kTrackUuid && IsVar(g)) p->default_track = g.int_value;
        else return false;
      }
      if (td.error()) return false;
    } else {
      return false;
    }
  }
  return !d.error();
}

bool ParsePacket(const Field& outer, Packet* p) {
  namespace TP = pf::TracePacket;
  ProtoDecoder d(outer.data, outer.size);
  Field f;
  while (d.Next(&f)) {
    bool ok = true;
    switch (f.id) {
      case TP::kTimestamp: ok = IsVar(f); p->has_ts = true; p->ts = p->raw_ts = f.int_value; break;
      case TP::kTimestampClockId:
        ok = IsVar(f) && f.int_value != 0;
        p->clock_id = static_cast<uint32_t>(f.int_value);
        break;
      case TP::kTraceConfig: ok = IsLd(f) && ParseTraceConfig(f, p); break;
      case TP::kTrustedPacketSequenceId:
        ok = IsVar(f) && f.int_value <= 0xffffffffu;
        p->seq = static_cast<uint32_t>(f.int_value);
        break;
      case TP::kSequenceFlags: ok = IsVar(f); p->flags = f.int_value; break;
      case TP::kFirstPacketOnSequence: ok = IsVar(f); p->first_on_seq = f.int_value != 0; break;
      case TP::kPreviousPacketDropped: ok = IsVar(f); p->prev_dropped = f.int_value != 0; break;
      case TP::kTracePacketDefaults: ok = IsLd(f) && ParseDefaults(f, p); break;
      case TP::kTrackEvent: ok = IsLd(f) && ParseTrackEvent(f, p); break;
      case TP::kTrackDescriptor: ok = IsLd(f) && ParseTrackDescriptor(f, &p->td); break;
      case TP::kClockSnapshot: ok = IsLd(f) && ParseClock(f, p); p->clock = true; break;
      case TP::kTraceStats: ok = IsLd(f) && ParseStats(f, p); break;
      case TP::kInternedData: {
        ok = IsLd(f);
        if (!ok) break;
        ProtoDecoder id(f.data, f.size);
        Field g;
        while (ok && id.Next(&g)) {
          if (!IsLd(g)) ok = false;
          else if (g.id == pf::InternedData::kEventCategories) ok = ParseInterned(g, &p->i_cats);
          else if (g.id == pf::InternedData::kEventNames) ok = ParseInterned(g, &p->i_names);
          else if (g.id == pf::InternedData::kDebugAnnotationNames) ok = ParseInterned(g, &p->i_args);
          else ok = false;
        }
        if (id.error()) ok = false;
        break;
      }
      default: ok = false;
    }
    if (!ok) return false;
  }
  return !d.error();
}

struct SeqInfo {
  uint32_t seq = 0;
  bool cleared = false;
  std::map<uint64_t, std::string> cats, names, args;
  std::set<uint64_t> tracks;
  bool has_default = false;
  uint64_t default_track = 0;
  int64_t depth = 0, min_depth = 0;
  uint64_t begins = 0, ends = 0, instants = 0, counters = 0, packets = 0, clears = 0;
  std::set<int64_t> tids;
  std::string thread_name;
  uint64_t thread_uuid = 0;
  std::vector<size_t> idx;  // its packets, in file order
  vpsdk_test::SequenceTime time;
  uint64_t snapshots = 0, absolute_packets = 0;  // clock snapshots; packets on BOOTTIME
};

struct Expect {
  bool first_packet = true;   // every sequence starts in the trace
  bool never_negative = true; // no end before its begin on a thread track
};

struct Trace {
  bool read = false, parsed = false;
  int problems = 0;
  std::string path;
  std::vector<Packet> packets;
  std::map<uint32_t, SeqInfo> seqs;  // writer sequences (id != 1)
  uint64_t writer_packets = 0;
  std::map<uint64_t, TrackDesc> described;  // every described track, by uuid
  int clock_snapshots = 0;  // the session's
  int trace_configs = 0;
  Packet config;
  int stats_packets = 0;
  Packet stats;

  void Problem(const char* fmt, ...) __attribute__((format(printf, 2, 3)));

  const SeqInfo* ByThreadName(const std::string& n) const {
    const SeqInfo* found = nullptr;
    for (auto& kv : seqs)
      if (kv.second.thread_name == n) {
        if (found) return nullptr;  // must be unique
        found = &kv.second;
      }
    return found;
  }
  std::vector<const Packet*> Events(uint32_t seq) const {
    std::vector<const Packet*> out;
    auto it = seqs.find(seq);
    if (it == seqs.end()) return out;
    for (size_t i : it->second.idx)
      if (packets[i].has_te) out.push_back(&packets[i]);
    return out;
  }
  uint64_t CountEvents(uint64_t type) const {
    uint64_t n = 0;
    for (auto& p : packets) n += p.has_te && p.type == type;
    return n;
  }
};

void Trace::Problem(const char* fmt, ...) {
  problems++;
  if (problems > 12) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "  trace %s: %s\n", path.c_str(), buf);
}

void Validate(Trace* t, const Expect& ex) {
  for (size_t i = 0; i < t->packets.size(); i++) {
    Packet& p = t->packets[i];
    if (!p.has_ts) t->Problem("packet %zu has no timestamp", i);
    if (p.td.present) t->described[p.td.uuid] = p.td;
    if (p.clock && p.seq == 1) {
      t->clock_snapshots++;
      if (p.snapshot.size() < 4) t->Problem("packet %zu: a session snapshot of %zu clocks", i, p.snapshot.size());
    }
    if (p.trace_config) {
      t->trace_configs++;
      t->config = p;
    }
    if (p.stats) {
      t->stats_packets++;
      t->stats = p;
    }
    if (p.seq == 0) {
      t->Problem("packet %zu has no trusted_packet_sequence_id", i);
      continue;
    }
    if (p.seq == 1) {
      if (p.has_te || p.flags) t->Problem("packet %zu on the session sequence has events", i);
      if (p.clock_id) t->Problem("packet %zu on the session sequence has a clock", i);
      continue;
    }
    t->writer_packets++;
    bool is_new = t->seqs.count(p.seq) == 0;
    SeqInfo& s = t->seqs[p.seq];
    s.seq = p.seq;
    s.packets++;
    s.idx.push_back(i);
    if (is_new && ex.first_packet) {
      if (!(p.flags & pf::TracePacket::kSeqIncrementalStateCleared) || !p.first_on_seq)
        t->Problem("first packet %zu of sequence %u: flags=%llu first_packet_on_sequence=%d", i,
                   p.seq, static_cast<unsigned long long>(p.flags), p.first_on_seq);
    }
    if (!is_new && p.first_on_seq)
      t->Problem("packet %zu of sequence %u is not its first but says so", i, p.seq);
    if (p.flags & pf::TracePacket::kSeqIncrementalStateCleared) {
      s.cleared = true;
      s.clears++;
      s.cats.clear();
      s.names.clear();
      s.args.clear();
      s.tracks.clear();
      s.has_default = false;
    }
    if (p.has_defaults) {
      s.has_default = true;
      s.default_track = p.default_track;
      if (p.default_clock != pf::BuiltinClock::kBoottime && p.default_clock != pf::kSequenceClockIncremental)
        t->Problem("packet %zu: default clock %llu", i,
                   static_cast<unsigned long long>(p.default_clock));
      s.time.SetDefaultClock(static_cast<uint32_t>(p.default_clock));
    }
    // Time, as trace_processor reads it: a packet with a snapshot defines
    // the clocks (its own time is not used: it is the snapshot's BOOTTIME);
    // the others are on their clock or the sequence's default.
    if (p.clock) {
      s.snapshots++;
      bool inc64 = p.snapshot.size() == 2 && p.snapshot[1].id == pf::kSequenceClockIncremental &&
                   p.snapshot[1].incremental && p.snapshot[0].id == pf::BuiltinClock::kBoottime;
      if (!inc64 || !(p.flags & pf::TracePacket::kSeqIncrementalStateCleared) || !p.has_defaults ||
          p.default_clock != pf::kSequenceClockIncremental || !s.time.Snapshot(p.snapshot))
        t->Problem("packet %zu: a writer-sequence snapshot other than a reset defining clock 64", i);
      if (p.td.present || p.has_te || p.i_names.size())
        t->Problem("packet %zu: a snapshot packet with more (trace_processor reads only its clocks)", i);
      p.ts = p.snapshot.empty() ? 0 : p.snapshot[0].ts;
    } else if (p.has_ts) {
      if (p.clock_id == pf::BuiltinClock::kBoottime) s.absolute_packets++;
      if (s.time.default_clock() == pf::kSequenceClockIncremental &&
          !(p.flags & pf::TracePacket::kSeqNeedsIncrementalState))
        t->Problem("packet %zu: a time on the incremental clock without SEQ_NEEDS_INCREMENTAL_STATE", i);
      if (!s.time.Absolute(p.raw_ts, p.clock_id, &p.ts))
        t->Problem("packet %zu: clock %u not defined on sequence %u", i, p.clock_id, p.seq);
    }
    auto add = [&](const InternedList& l, std::map<uint64_t, std::string>& m, const char* what) {
      for (auto& e : l) {
        if (e.first == 0) t->Problem("packet %zu: interned %s with iid 0", i, what);
        auto it = m.find(e.first);
        if (it != m.end() && it->second != e.second)
          t->Problem("packet %zu: %s iid %llu redefined", i, what,
                     static_cast<unsigned long long>(e.first));
        m[e.first] = e.second;
      }
    };
    add(p.i_cats, s.cats, "category");
    add(p.i_names, s.names, "name");
    add(p.i_args, s.args, "annotation name");
    if (p.td.present) {
      s.tracks.insert(p.td.uuid);
      if (p.td.thread) {
        s.tids.insert(p.td.tid);
        s.thread_name = p.td.thread_name;
        s.thread_uuid = p.td.uuid;
      }
    }
    if (!p.has_te) continue;
    if (!(p.flags & pf::TracePacket::kSeqNeedsIncrementalState))
      t->Problem("event packet %zu lacks SEQ_NEEDS_INCREMENTAL_STATE", i);
    if (!s.cleared) {
      t->Problem("event packet %zu on sequence %u before any incremental-state reset", i, p.seq);
      continue;
    }
    for (uint64_t c : p.cat_iids) {
      auto it = s.cats.find(c);
      if (it == s.cats.end())
        t->Problem("packet %zu: category iid %llu used before it is defined on seq %u", i,
                   static_cast<unsigned long long>(c), p.seq);
      else if (p.cat.empty())
        p.cat = it->second;
    }
    if (p.has_name_iid) {
      auto it = s.names.find(p.name_iid);
      if (it == s.names.end()) {
        t->Problem("packet %zu: name iid %llu used before it is defined on seq %u", i,
                   static_cast<unsigned long long>(p.name_iid), p.seq);
      } else {
        p.has_name = true;
        p.name = it->second;
      }
    }
    for (Ann& a : p.anns) {
      if (!a.name_iid) continue;
      auto it = s.args.find(a.name_iid);
      if (it == s.args.end())
        t->Problem("packet %zu: annotation name iid %llu used before it is defined", i,
                   static_cast<unsigned long long>(a.name_iid));
      else
        a.name = it->second;
    }
    bool thread_track = !p.has_track;
    if (thread_track) {
      if (!s.has_default) {
        t->Problem("packet %zu: thread-track event without TrackEventDefaults", i);
      } else {
        p.track = s.default_track;
        if (!s.tracks.count(p.track))
          t->Problem("packet %zu: default track not described on seq %u", i, p.seq);
      }
    } else if (!s.tracks.count(p.track)) {
      t->Problem("packet %zu: track %llu used before it is described on seq %u", i,
                 static_cast<unsigned long long>(p.track), p.seq);
    }
    switch (p.type) {
      case pf::TrackEvent::kTypeSliceBegin:
        s.begins++;
        if (thread_track) s.depth++;
        break;
      case pf::TrackEvent::kTypeSliceEnd:
        s.ends++;
        if (thread_track) {
          s.depth--;
          s.min_depth = std::min(s.min_depth, s.depth);
        }
        break;
      case pf::TrackEvent::kTypeInstant: s.instants++; break;
      case pf::TrackEvent::kTypeCounter:
        s.counters++;
        if (!p.has_track || (!p.has_cint && !p.has_cdouble))
          t->Problem("packet %zu: counter without track or value", i);
        break;
    }
  }
  for (auto& kv : t->seqs) {
    if (ex.never_negative && kv.second.min_depth < 0)
      t->Problem("sequence %u: an end precedes its begin (depth %lld)", kv.first,
                 static_cast<long long>(kv.second.min_depth));
    if (kv.second.tids.size() > 1) t->Problem("sequence %u describes several threads", kv.first);
  }
  // Distinct threads have distinct sequences.
  std::map<int64_t, uint32_t> tid_seq;
  for (auto& kv : t->seqs)
    for (int64_t tid : kv.second.tids) {
      auto it = tid_seq.find(tid);
      if (it != tid_seq.end() && it->second != kv.first)
        t->Problem("thread %lld writes on sequences %u and %u", static_cast<long long>(tid),
                   it->second, kv.first);
      tid_seq[tid] = kv.first;
    }
  for (auto& kv : t->described) {
    const TrackDesc& d = kv.second;
    if (d.has_parent && !t->described.count(d.parent))
      t->Problem("track %llu has an undescribed parent %llu",
                 static_cast<unsigned long long>(d.uuid),
                 static_cast<unsigned long long>(d.parent));
  }
  if (t->clock_snapshots < 2) t->Problem("%d clock snapshots", t->clock_snapshots);
  if (t->trace_configs != 1 || !t->config.has_disable_incremental)
    t->Problem("%d trace configs (disable_incremental_timestamps %s)", t->trace_configs,
               t->config.has_disable_incremental ? "set" : "unset");
  if (t->stats_packets != 1) t->Problem("%d trace_stats packets", t->stats_packets);
}

Trace LoadTrace(const std::string& path, const Expect& ex = Expect()) {
  Trace t;
  t.path = path;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    t.Problem("cannot stat");
    return t;
  }
  std::vector<uint8_t> data = ReadFile(path);
  t.read = data.size() == static_cast<size_t>(st.st_size);
  ProtoDecoder d(data.data(), data.size());
  Field f;
  bool ok = true;
  while (d.Next(&f)) {
    Packet p;
    if (f.id != pf::Trace::kPacket || !IsLd(f) || !ParsePacket(f, &p)) {
      t.Problem("packet %zu at offset %zu does not parse", t.packets.size(),
                static_cast<size_t>(f.begin - data.data()));
      ok = false;
      continue;
    }
    t.packets.push_back(std::move(p));
  }
  if (d.error()) {
    t.Problem("the trace is not a valid Trace message");
    ok = false;
  }
  t.parsed = ok && t.read;
  Validate(&t, ex);
  return t;
}

#define CHECK_TRACE(t)                                                              \
  CHECK_MSG((t).parsed && (t).problems == 0, "%s: %d problems", (t).path.c_str(), \
            (t).problems)

// --- sessions through the C ABI ---------------------------------------------------------

struct Cfg {
  std::string path;
  uint32_t kb = 65536;
  int32_t mode = VP_BUFFER_RING;
  std::vector<std::string> enable, disable;
  int incremental = -1;  // -1: the default; else vp_config_set_incremental_timestamps
  uint32_t unit = 0;
};

vp_session* StartSession(const Cfg& c, const char* file, int line) {
  vp_config* cfg = vp_config_new();
  vp_error err{};
  bool ok = cfg && vp_config_set_output(cfg, c.path.c_str(), &err) == VP_OK &&
            vp_config_set_buffer(cfg, c.kb, c.mode, &err) == VP_OK;
  for (auto& e : c.enable) ok = ok && vp_config_enable_category(cfg, e.c_str(), &err) == VP_OK;
  for (auto& e : c.disable) ok = ok && vp_config_disable_category(cfg, e.c_str(), &err) == VP_OK;
  if (c.incremental >= 0)
    ok = ok && vp_config_set_incremental_timestamps(cfg, c.incremental, c.unit, &err) == VP_OK;
  vp_session* s = nullptr;
  if (ok) ok = vp_session_start(cfg, &s, &err) == VP_OK;
  vp_config_free(cfg);
  Report(ok && s, file, line, "session start", err.message);
  return s;
}
#define START(cfg) StartSession(cfg, __FILE__, __LINE__)

void StopSession(vp_session* s, const char* file, int line) {
  vp_error err{};
  int32_t rc = vp_session_stop(s, &err);
  Report(rc == VP_OK, file, line, "session stop", err.message);
}
#define STOP(s) StopSession(s, __FILE__, __LINE__)

const char* ModeName(int32_t m) {
  return m == VP_BUFFER_RING ? "ring" : m == VP_BUFFER_DISCARD ? "discard" : "stream";
}

const Ann* FindAnn(const Packet& p, const std::string& name) {
  for (auto& a : p.anns)
    if (a.name == name) return &a;
  return nullptr;
}

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
};

void RemoveTree(const std::string& dir) {
  std::string cmd = "rm -rf '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
}

}  // namespace

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
