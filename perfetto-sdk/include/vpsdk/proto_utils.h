// Protobuf wire-format primitives: varints, zigzag, field tags.
#ifndef VPSDK_PROTO_UTILS_H_
#define VPSDK_PROTO_UTILS_H_

#include <cstddef>
#include <cstdint>

namespace vpsdk {
namespace proto {

enum WireType : uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

constexpr size_t kMaxVarintSize = 10;

constexpr uint32_t MakeTag(uint32_t field, WireType type) {
  return (field << 3) | static_cast<uint32_t>(type);
}

inline size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Writes `v` at `dst` and returns the byte after it.
inline uint8_t* WriteVarint(uint64_t v, uint8_t* dst) {
  while (v >= 0x80) {
    *dst++ = static_cast<uint8_t>(v) | 0x80;
    v >>= 7;
  }
  *dst++ = static_cast<uint8_t>(v);
  return dst;
}

inline uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

// The general case of ReadVarint (out of line: hot loops inline the short
// forms only).
inline __attribute__((noinline)) const uint8_t* ReadVarintSlow(const uint8_t* p, const uint8_t* end,
                                                               uint64_t* out) {
  if (end - p >= static_cast<ptrdiff_t>(kMaxVarintSize)) {  // no bounds checks needed
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
      uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) {
        *out = v;
        return p;
      }
    }
    return nullptr;  // longer than 10 bytes
  }
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64 && p < end; shift += 7) {
    uint8_t b = *p++;
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return p;
    }
  }
  return nullptr;
}

// Reads a varint from [p, end). Returns the byte after it, or nullptr when the
// varint is truncated or longer than 10 bytes.
inline __attribute__((always_inline)) const uint8_t* ReadVarint(const uint8_t* p, const uint8_t* end,
                                                                uint64_t* out) {
  if (p < end && *p < 0x80) {  // tags, ids, small values: one byte
    *out = *p;
    return p + 1;
  }
  if (end - p >= 2 && p[1] < 0x80) {  // two-byte tags, lengths, values
    *out = (p[0] & 0x7fu) | (static_cast<uint64_t>(p[1]) << 7);
    return p + 2;
  }
  return ReadVarintSlow(p, end, out);
}

}  // namespace proto
}  // namespace vpsdk

#endif  // VPSDK_PROTO_UTILS_H_
