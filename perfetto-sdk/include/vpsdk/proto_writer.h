// A protozero-style encoder that writes straight into caller-provided memory.
//
// The caller reserves an upper bound of the message size first (see the
// k*Bound helpers); every write is then a plain store with no capacity check,
// which keeps the tracing hot path a handful of instructions.
//
// Nested messages reserve ONE length byte and are fixed up when they close;
// a body of 128 bytes or more is moved forward by the extra length bytes.
// Protozero reserves four (a redundant varint) to avoid the move; we take the
// rare move instead because almost every trace packet is under 128 bytes and
// three bytes of padding per level would add ~15% to a begin/end pair.
// Bound: each open nested message may need up to 4 bytes more than written.
#ifndef VPSDK_PROTO_WRITER_H_
#define VPSDK_PROTO_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "vpsdk/proto_utils.h"

namespace vpsdk {

// Extra bytes a nested message may need beyond its body.
constexpr size_t kNestedOverhead = 4 + 5 /* tag */;
// Bound of a varint field (tag + value).
constexpr size_t kVarintFieldBound = 5 + proto::kMaxVarintSize;

class ProtoWriter {
 public:
  explicit ProtoWriter(uint8_t* p) : p_(p) {}

  uint8_t* pos() const { return p_; }

  void Tag(uint32_t field, proto::WireType type) {
    p_ = proto::WriteVarint(proto::MakeTag(field, type), p_);
  }
  void Varint(uint32_t field, uint64_t v) {
    Tag(field, proto::kVarint);
    p_ = proto::WriteVarint(v, p_);
  }
  void Int64(uint32_t field, int64_t v) {
    Varint(field, static_cast<uint64_t>(v));
  }
  void Bool(uint32_t field, bool v) { Varint(field, v ? 1 : 0); }
  void Fixed64(uint32_t field, uint64_t v) {
    Tag(field, proto::kFixed64);
    std::memcpy(p_, &v, 8);  // little-endian hosts only (x86-64, arm64)
    p_ += 8;
  }
  void Double(uint32_t field, double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    Fixed64(field, bits);
  }
  void Bytes(uint32_t field, const void* data, size_t n) {
    Tag(field, proto::kLengthDelimited);
    p_ = proto::WriteVarint(n, p_);
    if (n) std::memcpy(p_, data, n);
    p_ += n;
  }
  void String(uint32_t field, const char* s, size_t n) { Bytes(field, s, n); }
  void Raw(const void* data, size_t n) {
    if (n) std::memcpy(p_, data, n);
    p_ += n;
  }

  // Opens a length-delimited field; returns the handle for EndNested.
  uint8_t* BeginNested(uint32_t field) {
    Tag(field, proto::kLengthDelimited);
    return p_++;
  }
  void EndNested(uint8_t* len_pos) {
    size_t len = static_cast<size_t>(p_ - len_pos - 1);
    if (__builtin_expect(len < 0x80, 1)) {
      *len_pos = static_cast<uint8_t>(len);
      return;
    }
    size_t extra = proto::VarintSize(len) - 1;
    std::memmove(len_pos + 1 + extra, len_pos + 1, len);
    proto::WriteVarint(len, len_pos);
    p_ += extra;
  }

 private:
  uint8_t* p_;
};

}  // namespace vpsdk

#endif  // VPSDK_PROTO_WRITER_H_
