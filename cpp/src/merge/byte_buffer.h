// A growable output buffer with protobuf field writers, for the rewriter.
#ifndef VPERFETTO_MERGE_BYTE_BUFFER_H_
#define VPERFETTO_MERGE_BYTE_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "vpsdk/proto_decoder.h"
#include "vpsdk/proto_utils.h"

namespace vpmerge {

namespace proto = vpsdk::proto;
using vpsdk::Field;
using vpsdk::ProtoDecoder;

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ~ByteBuffer() { std::free(data_); }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  void clear() { size_ = 0; }
  void resize(size_t n) {
    Reserve(n);
    size_ = n;
  }

  void Reserve(size_t n) {
    if (n <= cap_) return;
    size_t cap = cap_ ? cap_ : 4096;
    while (cap < n) cap *= 2;
    void* p = std::realloc(data_, cap);
    if (!p) throw std::bad_alloc();
    data_ = static_cast<uint8_t*>(p);
    cap_ = cap;
  }

  void Append(const void* p, size_t n) {
    Reserve(size_ + n);
    if (n) std::memcpy(data_ + size_, p, n);
    size_ += n;
  }
  void AppendRaw(const Field& f) { Append(f.begin, static_cast<size_t>(f.end - f.begin)); }

  void Varint(uint64_t v) {
    Reserve(size_ + proto::kMaxVarintSize);
    size_ = static_cast<size_t>(proto::WriteVarint(v, data_ + size_) - data_);
  }
  void Tag(uint32_t field, proto::WireType t) { Varint(proto::MakeTag(field, t)); }
  void VarintField(uint32_t field, uint64_t v) {
    Tag(field, proto::kVarint);
    Varint(v);
  }
  void Fixed64Field(uint32_t field, uint64_t v) {
    Tag(field, proto::kFixed64);
    Append(&v, 8);
  }
  void BytesField(uint32_t field, const void* p, size_t n) {
    Tag(field, proto::kLengthDelimited);
    Varint(n);
    Append(p, n);
  }
  // Re-emits a scalar field with a new value, keeping its wire type.
  void ScalarField(const Field& f, uint64_t v) {
    if (f.type == proto::kFixed64) {
      Fixed64Field(f.id, v);
    } else if (f.type == proto::kFixed32) {
      Tag(f.id, proto::kFixed32);
      uint32_t w = static_cast<uint32_t>(v);
      Append(&w, 4);
    } else {
      VarintField(f.id, v);
    }
  }

  // Nested messages: the length is reserved with the width that `hint` (the
  // expected body size, e.g. the size of the input field being rewritten)
  // needs, and fixed up at the end (moving the body only when the final
  // length needs another width). Pass the same hint to EndNested.
  static size_t LenWidth(size_t n) { return n < 0x80 ? 1 : proto::VarintSize(n); }
  size_t BeginNested(uint32_t field, size_t hint = 0) {
    Tag(field, proto::kLengthDelimited);
    size_t w = LenWidth(hint);
    Reserve(size_ + w);
    size_t pos = size_;
    size_ += w;
    return pos;
  }
  void EndNested(size_t len_pos, size_t hint = 0) {
    size_t w = LenWidth(hint);
    size_t len = size_ - len_pos - w;
    size_t need = LenWidth(len);
    if (need != w) {
      Reserve(size_ + need);
      std::memmove(data_ + len_pos + need, data_ + len_pos + w, len);
      size_ = size_ + need - w;
    }
    proto::WriteVarint(len, data_ + len_pos);
  }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_BYTE_BUFFER_H_
