// A zero-copy protobuf decoder: fields come back as views into the input.
// It never reads outside [begin, end) and reports malformed input instead of
// trusting lengths (it is fuzzed).
#ifndef VPSDK_PROTO_DECODER_H_
#define VPSDK_PROTO_DECODER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "vpsdk/proto_utils.h"

namespace vpsdk {

struct Field {
  uint32_t id = 0;
  proto::WireType type = proto::kVarint;
  uint64_t int_value = 0;         // varint, fixed32, fixed64
  const uint8_t* data = nullptr;  // length-delimited payload
  size_t size = 0;
  const uint8_t* begin = nullptr;  // first byte of the tag
  const uint8_t* end = nullptr;    // byte after the field

  int64_t as_int64() const { return static_cast<int64_t>(int_value); }
  double as_double() const {
    double d;
    std::memcpy(&d, &int_value, 8);
    return d;
  }
};

class ProtoDecoder {
 public:
  ProtoDecoder(const uint8_t* begin, size_t size)
      : p_(begin), end_(begin + size) {}
  ProtoDecoder(const void* begin, size_t size)
      : ProtoDecoder(static_cast<const uint8_t*>(begin), size) {}

  // Reads the next field. Returns false at the end of input or on malformed
  // input; error() tells which.
  __attribute__((always_inline)) bool Next(Field* f) {
    if (p_ >= end_) return false;
    const uint8_t* start = p_;
    uint64_t tag;
    const uint8_t* q = proto::ReadVarint(p_, end_, &tag);
    if (!q || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return Fail();
    f->id = static_cast<uint32_t>(tag >> 3);
    f->type = static_cast<proto::WireType>(tag & 7);
    f->begin = start;
    f->data = nullptr;
    f->size = 0;
    switch (f->type) {
      case proto::kVarint:
        q = proto::ReadVarint(q, end_, &f->int_value);
        if (!q) return Fail();
        break;
      case proto::kFixed64:
        if (end_ - q < 8) return Fail();
        std::memcpy(&f->int_value, q, 8);
        q += 8;
        break;
      case proto::kFixed32: {
        if (end_ - q < 4) return Fail();
        uint32_t v;
        std::memcpy(&v, q, 4);
        f->int_value = v;
        q += 4;
        break;
      }
      case proto::kLengthDelimited: {
        uint64_t len;
        q = proto::ReadVarint(q, end_, &len);
        if (!q || len > static_cast<uint64_t>(end_ - q)) return Fail();
        f->data = q;
        f->size = static_cast<size_t>(len);
        f->int_value = len;
        q += len;
        break;
      }
      default:  // groups are not used by Perfetto
        return Fail();
    }
    f->end = q;
    p_ = q;
    return true;
  }

  bool error() const { return error_; }
  const uint8_t* pos() const { return p_; }

 private:
  bool Fail() {
    error_ = true;
    p_ = end_;
    return false;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  bool error_ = false;
};

}  // namespace vpsdk

#endif  // VPSDK_PROTO_DECODER_H_
