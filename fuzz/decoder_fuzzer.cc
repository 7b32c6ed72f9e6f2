// libFuzzer target for vpsdk::ProtoDecoder (perfetto-sdk/include/vpsdk/proto_decoder.h).
//
// Decodes arbitrary bytes as a protobuf message and, recursively, every
// length-delimited field as a nested message (up to kMaxDepth levels), and as
// a packed run of varints. Checks the decoder's contract on the way:
//   * every field lies inside the bytes it was given and fields tile the input
//     from the start, without gaps or overlaps, up to the end or an error;
//   * a length-delimited payload lies inside its field;
//   * after an error, or at the end, Next() keeps returning false;
//   * decoding always makes progress (no endless loop on any input).
// Memory errors and undefined behaviour are left to ASan and UBSan.
//
// Then the same bytes go through `inspect --check` (cpp/src/inspect: the
// summary, the clock model and the checker) and the timeline model
// (timeline*.cc: track events, ftrace scheduling, atrace, process data), read
// from an in-memory file: any input must give a report or a clean error, and
// the model's JSON must hold no '<', '>' or '&' (it goes into HTML as is).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>

#include <cstring>
#include <string>

#include "inspect/inspect.h"
#include "vpsdk/proto_decoder.h"
#include "vpsdk/proto_utils.h"

namespace {

constexpr int kMaxDepth = 8;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "decoder_fuzzer: contract violated: %s\n", what);
  std::abort();
}

#define CHECK(cond) \
  do {              \
    if (!(cond)) Die(#cond); \
  } while (0)

volatile uint64_t g_sink;

void Packed(const uint8_t* p, size_t n) {
  const uint8_t* end = p + n;
  uint64_t v;
  while (p < end) {
    const uint8_t* q = vpsdk::proto::ReadVarint(p, end, &v);
    if (!q) return;
    CHECK(q > p && q <= end && q - p <= static_cast<ptrdiff_t>(vpsdk::proto::kMaxVarintSize));
    g_sink += v;
    p = q;
  }
}

void Decode(const uint8_t* data, size_t size, int depth) {
  vpsdk::ProtoDecoder d(data, size);
  const uint8_t* end = data + size;
  const uint8_t* expect = data;  // where the next field must start
  vpsdk::Field f;
  size_t fields = 0;
  while (d.Next(&f)) {
    fields++;
    CHECK(fields <= size);  // every field takes at least one byte
    CHECK(f.begin == expect);
    CHECK(f.end > f.begin && f.end <= end);
    CHECK(d.pos() == f.end);
    CHECK(f.id >= 1 && f.id <= 0x1fffffff);
    switch (f.type) {
      case vpsdk::proto::kVarint:
        CHECK(f.data == nullptr && f.size == 0);
        break;
      case vpsdk::proto::kFixed32:
        CHECK(f.int_value <= 0xffffffffu);
        CHECK(f.end - f.begin >= 5);
        break;
      case vpsdk::proto::kFixed64:
        CHECK(f.end - f.begin >= 9);
        g_sink += static_cast<uint64_t>(f.as_double() == 0.0);
        break;
      case vpsdk::proto::kLengthDelimited:
        CHECK(f.data > f.begin && f.data <= f.end);
        CHECK(f.data + f.size == f.end);
        CHECK(f.int_value == f.size);
        if (f.size) {  // touch both ends: ASan catches a payload outside the input
          g_sink += f.data[0];
          g_sink += f.data[f.size - 1];
        }
        if (depth < kMaxDepth) {
          Decode(f.data, f.size, depth + 1);
          Packed(f.data, f.size);
        }
        break;
      default:
        Die("unexpected wire type accepted");
    }
    g_sink += f.int_value + static_cast<uint64_t>(f.as_int64());
    expect = f.end;
  }
  // Stopped: either at the end, or on an error (then pos() is the end too).
  CHECK(d.pos() == end);
  CHECK(d.error() || expect == end);
  CHECK(!d.Next(&f));  // stays stopped
  CHECK(d.pos() == end);
}

// inspect --check over the input, as a file (it streams from files).
void Inspect(const uint8_t* data, size_t size) {
  static int fd = memfd_create("vp-inspect-fuzz", MFD_CLOEXEC);
  if (fd < 0) return;
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return;
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  for (bool check : {false, true}) {
    std::string json;
    vpsdk::Status st = vpinspect::Inspect(path, check, &json);
    if (st.ok()) CHECK(!json.empty() && json.front() == '{' && json.back() == '}');
    else CHECK(!st.message.empty());
  }
  // The timeline alone (tight caps, so that pruning and decimation run), and
  // with the summary from the same pass.
  vpinspect::TimelineOptions small;
  small.max_slices = 3;
  small.max_counter_points = 16;
  for (int variant = 0; variant < 2; variant++) {
    std::string tracks, rows, json;
    vpsdk::Status st = vpinspect::InspectTimeline(path, variant ? vpinspect::TimelineOptions() : small,
                                                  variant == 1, &tracks, &rows, variant ? &json : nullptr);
    if (!st.ok()) {
      CHECK(!st.message.empty());
      continue;
    }
    CHECK(!tracks.empty() && tracks.front() == '{' && tracks.back() == '}');
    CHECK(!rows.empty() && rows.front() == '[' && rows.back() == ']');
    CHECK(tracks.find_first_of("<>&") == std::string::npos);
    CHECK(rows.find_first_of("<>&\"") == std::string::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Decode(data, size, 0);
  // As a Trace: its packets (field 1) are TracePackets; decode their bodies
  // once more from a private copy, so that reads past a packet's end (into
  // bytes of the next one) are caught by ASan, not hidden by the outer buffer.
  vpsdk::ProtoDecoder t(data, size);
  vpsdk::Field f;
  while (t.Next(&f)) {
    if (f.type != vpsdk::proto::kLengthDelimited) continue;
    uint8_t* copy = static_cast<uint8_t*>(std::malloc(f.size ? f.size : 1));
    if (f.size) std::memcpy(copy, f.data, f.size);
    Decode(copy, f.size, 1);
    std::free(copy);
  }
  Inspect(data, size);
  return 0;
}
