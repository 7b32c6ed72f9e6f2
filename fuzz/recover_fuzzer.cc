// libFuzzer target for the crash recovery (perfetto-sdk/src/recover.cc):
// vpsdk::RecoverImageBytes over arbitrary bytes as a crash image
// (crash_image.h) or, when the input holds `VPSPLIT!`, IMAGE `VPSPLIT!`
// STREAM_FILE (a stream session's output file beside its image).
//
// Contract: OK or a clean error Status with a message, never a crash; on OK
// the output is a well-formed Trace: Trace.packet fields (tag 0x0a) that tile
// it exactly, each a protobuf message that decodes at its top level. Memory
// errors and undefined behaviour are left to ASan and UBSan.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "vpsdk/proto_decoder.h"
#include "vpsdk/tracing.h"

namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "recover_fuzzer: contract violated: %s\n", what);
  std::abort();
}

#define CHECK(cond) \
  do {              \
    if (!(cond)) Die(#cond); \
  } while (0)

const char kSplit[] = "VPSPLIT!";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t* image = data;
  size_t image_n = size;
  const uint8_t* stream = nullptr;
  size_t stream_n = 0;
  const void* split = size >= 8 ? memmem(data, size, kSplit, 8) : nullptr;
  if (split) {
    image_n = static_cast<size_t>(static_cast<const uint8_t*>(split) - data);
    stream = image + image_n + 8;
    stream_n = size - image_n - 8;
  }
  std::string out;
  vpsdk::RecoverReport rep;
  vpsdk::Status st = vpsdk::RecoverImageBytes(image, image_n, stream, stream_n, &out, &rep);
  if (!st.ok()) {
    CHECK(!st.message.empty());
    return 0;
  }
  vpsdk::ProtoDecoder d(out.data(), out.size());
  vpsdk::Field f;
  size_t packets = 0;
  while (d.Next(&f)) {
    CHECK(f.id == 1 && f.type == vpsdk::proto::kLengthDelimited);
    vpsdk::ProtoDecoder pd(f.data, f.size);
    vpsdk::Field pf;
    while (pd.Next(&pf)) {
    }
    CHECK(!pd.error());
    packets++;
  }
  CHECK(!d.error());
  CHECK(d.pos() == reinterpret_cast<const uint8_t*>(out.data()) + out.size());
  CHECK(packets >= rep.packets);
  return 0;
}
