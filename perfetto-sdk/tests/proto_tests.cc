// vpsdk's protobuf encoding and decoding: varints and zigzag, ProtoWriter's
// nested messages, ProtoDecoder on hostile bytes.
#include "vpsdk_test.h"

namespace vpsdk_test {

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

}  // namespace vpsdk_test
