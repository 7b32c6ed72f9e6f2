// The crash image: the file a session's chunks live in, mapped shared, so
// that a process that dies (SIGKILL, a segfault, os._exit) leaves every
// packet whose write had completed in the page cache and on disk. This is
// the one place the format is defined; recover.cc reads it, session.cc
// writes it. README "Crash-proof tracing" describes it for users.
//
// Layout of `<output>.vpbuf` (all integers little-endian, native x86-64 /
// aarch64 layout; offsets fixed by the static_asserts below):
//
//   [0, 4096)                       Header
//   [4096, data_offset)             ChunkHeader[num_chunks] (48 bytes each)
//   [data_offset, + num_chunks * chunk_size)   the chunks' bytes
//
// A chunk holds complete TracePackets, each framed as a Trace.packet field
// (tag 0x0a, varint length, body), written by one writer sequence from its
// start; `committed` says how many bytes (and packets) of it are complete.
// Bytes after that are a packet half-written at the crash and are dropped.
//
// Ring and discard sessions: every chunk is part of the buffer; a full chunk
// is marked complete with a session-wide `order`; the ring takes the oldest
// complete chunk back when it needs one. Each chunk starts the sequence's
// incremental state again, so any surviving chunk decodes on its own.
//
// Stream sessions: each writing thread owns one chunk, written to the output
// file when it fills, on flush and every flush period; `flushed` says how
// many of its bytes the output file has, and `stream_bytes` how long the
// output file is (complete packets only). A write in progress is announced
// in the `pending_*` fields first, so that recovery can tell whether it
// landed (the file is long enough) and take the bytes from the file or
// from the chunk, never both.
//
// Versions: `version` is bumped on any incompatible change; the recovery
// keeps a reader for every version ever written (recover.cc) and refuses
// newer ones with a clear message. Fields appended inside the 4096-byte
// header keep the version (older images have zeros there).
//
// Version history:
//   1  the first (vperfetto 0.1, issue 13).
#ifndef VPSDK_SRC_CRASH_IMAGE_H_
#define VPSDK_SRC_CRASH_IMAGE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace vpsdk {
namespace image {

constexpr char kMagic[8] = {'V', 'P', 'B', 'U', 'F', 'I', 'M', 'G'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kHeaderSize = 4096;
constexpr uint32_t kChunkHeaderSize = 48;
constexpr uint32_t kMaxClockSnapshot = 512;
constexpr uint32_t kMaxOutputPath = 2048;
constexpr const char* kSuffix = ".vpbuf";

// Header::state
enum ImageState : uint32_t { kImageRunning = 1, kImageStopped = 2 };
// ChunkHeader::state
enum ChunkState : uint32_t { kChunkFree = 0, kChunkWriting = 1, kChunkComplete = 2 };
// Header::mode (= BufferMode)
enum ImageMode : uint32_t { kModeRing = 0, kModeDiscard = 1, kModeStream = 2 };

constexpr uint32_t kNoChunk = 0xffffffffu;

struct Header {
  char magic[8];                      // 0   "VPBUFIMG"
  uint32_t version;                   // 8
  uint32_t header_size;               // 12  4096
  uint32_t chunk_header_size;         // 16  48
  uint32_t chunk_size;                // 20
  uint32_t num_chunks;                // 24
  uint32_t mode;                      // 28  ImageMode
  uint64_t data_offset;               // 32
  uint32_t pid;                       // 40  the process that wrote it
  uint32_t sequence_base;             // 44
  std::atomic<uint32_t> state;        // 48  ImageState
  uint32_t clock_snapshot_len;        // 52
  uint64_t buffer_bytes;              // 56
  uint64_t start_boottime_ns;         // 64
  // Statistics of the session so far (the writer updates them under its lock).
  uint64_t chunks_overwritten;        // 72
  uint64_t packets_overwritten;       // 80
  uint64_t bytes_overwritten;         // 88
  uint64_t chunks_discarded;          // 96
  uint64_t packets_dropped;           // 104  not in any buffer (discard, too big)
  // Stream mode.
  std::atomic<uint64_t> stream_bytes; // 112  bytes of the output file that are complete
  std::atomic<uint32_t> pending;      // 120  1: the write below is in progress
  uint32_t pending_chunk;             // 124  its chunk, or kNoChunk (memory not in the image)
  uint64_t pending_offset;            // 128  where in the output file it starts
  uint32_t pending_from;              // 136  its bytes in the chunk: [from, to)
  uint32_t pending_to;                // 140
  uint64_t reserved[4];               // 144
  uint8_t clock_snapshot[kMaxClockSnapshot];  // 176  the start ClockSnapshot, a framed packet
  char output_path[kMaxOutputPath];   // 688  NUL-terminated, absolute
};

struct ChunkHeader {
  std::atomic<uint32_t> state;        // 0   ChunkState
  uint32_t sequence_id;               // 4   trusted_packet_sequence_id of its writer
  uint64_t chunk_index;               // 8   0, 1, 2, ... per sequence (gaps: chunks lost)
  std::atomic<uint64_t> committed;    // 16  complete bytes << 24 | packets
  uint64_t order;                     // 24  ring/discard: order in which chunks filled
  uint32_t flushed;                   // 32  stream: bytes already in the output file
  uint32_t flags;                     // 36  0
  uint64_t reserved;                  // 40
};

constexpr unsigned kPacketBits = 24;

static_assert(offsetof(Header, state) == 48, "image header layout");
static_assert(offsetof(Header, stream_bytes) == 112, "image header layout");
static_assert(offsetof(Header, clock_snapshot) == 176, "image header layout");
static_assert(offsetof(Header, output_path) == 688, "image header layout");
static_assert(sizeof(Header) <= kHeaderSize, "image header size");
static_assert(sizeof(ChunkHeader) == kChunkHeaderSize, "chunk header layout");
static_assert(offsetof(ChunkHeader, committed) == 16, "chunk header layout");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "lock-free 64-bit atomics");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "lock-free 32-bit atomics");

inline uint64_t DataOffset(uint32_t num_chunks) {
  uint64_t end = uint64_t{kHeaderSize} + uint64_t{num_chunks} * kChunkHeaderSize;
  return (end + 4095) & ~uint64_t{4095};
}

}  // namespace image
}  // namespace vpsdk

#endif  // VPSDK_SRC_CRASH_IMAGE_H_
