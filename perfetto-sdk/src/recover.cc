// Recovery: a valid trace from the crash image a dead process left behind
// (crash_image.h). Every length and offset in the image is checked before it
// is used: a corrupt or truncated image gives fewer packets or an error,
// never a crash (fuzz/recover_fuzzer.cc).
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "crash_image.h"
#include "internal.h"
#include "vpsdk/field_numbers.h"
#include "vpsdk/proto_decoder.h"
#include "vpsdk/proto_utils.h"

namespace vpsdk {
namespace {

namespace TP = pf::TracePacket;

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

void PutVarint(std::string* out, uint64_t v) {
  uint8_t b[proto::kMaxVarintSize];
  uint8_t* e = proto::WriteVarint(v, b);
  out->append(reinterpret_cast<char*>(b), static_cast<size_t>(e - b));
}
void PutVarintField(std::string* out, uint32_t field, uint64_t v) {
  PutVarint(out, proto::MakeTag(field, proto::kVarint));
  PutVarint(out, v);
}
void PutBytesField(std::string* out, uint32_t field, const void* data, size_t n) {
  PutVarint(out, proto::MakeTag(field, proto::kLengthDelimited));
  PutVarint(out, n);
  out->append(static_cast<const char*>(data), n);
}
void PutMessage(std::string* out, uint32_t field, const std::string& body) {
  PutBytesField(out, field, body.data(), body.size());
}

// --- what a writer puts in a packet -------------------------------------------------
//
// A recovered packet must be one our writer could have written: every field
// (recursively) one the writer uses, with its wire type. A corrupt image
// otherwise turns a byte into another field of the official schema (often a
// message) and the trace no longer decodes. Keep this in step with
// track_event.cc, profile.cc and session.cc: a field missing here makes
// recovery skip every packet holding it (tests/test_crash.py asserts that a
// clean recovery skips nothing).

enum Msg : uint8_t {
  kMsgNone, kMsgPacket, kMsgTrackEvent, kMsgDebugAnnotation, kMsgInternedData, kMsgInterned,
  kMsgSourceLocation, kMsgLogMessage, kMsgDefaults, kMsgTrackEventDefaults, kMsgTrackDescriptor,
  kMsgProcess, kMsgThread, kMsgCounter, kMsgClockSnapshot, kMsgClock, kMsgTraceStats,
  kMsgBufferStats,
};
enum Kind : uint8_t { kNo, kVar, kF64, kBytes, kSub };
struct FieldRule {
  Kind kind;
  Msg sub;
};

FieldRule Rule(Msg m, uint32_t id) {
  auto v = FieldRule{kVar, kMsgNone};
  auto f64 = FieldRule{kF64, kMsgNone};
  auto by = FieldRule{kBytes, kMsgNone};
  auto sub = [](Msg t) { return FieldRule{kSub, t}; };
  auto no = FieldRule{kNo, kMsgNone};
  switch (m) {
    case kMsgPacket:
      switch (id) {
        case 8: case 10: case 13: case 41: case 42: case 58: case 87: return v;
        case 6: return sub(kMsgClockSnapshot);
        case 11: return sub(kMsgTrackEvent);
        case 12: return sub(kMsgInternedData);
        case 35: return sub(kMsgTraceStats);
        case 59: return sub(kMsgDefaults);
        case 60: return sub(kMsgTrackDescriptor);
      }
      return no;
    case kMsgTrackEvent:
      switch (id) {
        case 1: case 3: case 9: case 10: case 11: case 16: case 30: case 31: case 34: return v;
        case 44: case 47: case 48: return f64;
        case 22: case 23: return by;
        case 4: return sub(kMsgDebugAnnotation);
        case 21: return sub(kMsgLogMessage);
      }
      return no;
    case kMsgDebugAnnotation:
      switch (id) {
        case 1: case 2: case 3: case 4: case 7: return v;
        case 5: return f64;
        case 6: case 10: return by;
        case 11: case 12: return sub(kMsgDebugAnnotation);
      }
      return no;
    case kMsgInternedData:
      switch (id) {
        case 1: case 2: case 3: case 20: return sub(kMsgInterned);
        case 4: return sub(kMsgSourceLocation);
      }
      return no;
    case kMsgInterned: return id == 1 ? v : id == 2 ? by : no;
    case kMsgSourceLocation: return id == 1 || id == 4 ? v : id == 2 || id == 3 ? by : no;
    case kMsgLogMessage: return id >= 1 && id <= 3 ? v : no;
    case kMsgDefaults: return id == 58 ? v : id == 11 ? sub(kMsgTrackEventDefaults) : no;
    case kMsgTrackEventDefaults: return id == 11 || id == 31 ? v : no;
    case kMsgTrackDescriptor:
      switch (id) {
        case 1: case 5: return v;
        case 2: return by;
        case 3: return sub(kMsgProcess);
        case 4: return sub(kMsgThread);
        case 8: return sub(kMsgCounter);
      }
      return no;
    case kMsgProcess: return id == 1 ? v : id == 2 || id == 6 ? by : no;
    case kMsgThread: return id == 1 || id == 2 ? v : id == 5 ? by : no;
    case kMsgCounter: return id == 6 ? by : id >= 1 && id <= 5 ? v : no;
    case kMsgClockSnapshot: return id == 2 ? v : id == 1 ? sub(kMsgClock) : no;
    case kMsgClock: return id >= 1 && id <= 4 ? v : no;
    case kMsgTraceStats: return id == 8 ? v : id == 1 ? sub(kMsgBufferStats) : no;
    case kMsgBufferStats: return id >= 1 && id <= 30 ? v : no;
    case kMsgNone: return no;
  }
  return no;
}

bool Writable(const uint8_t* p, size_t n, Msg m, int depth) {
  if (depth > 64) return false;
  ProtoDecoder d(p, n);
  Field f;
  while (d.Next(&f)) {
    FieldRule r = Rule(m, f.id);
    switch (r.kind) {
      case kNo: return false;
      case kVar: if (f.type != proto::kVarint) return false; break;
      case kF64: if (f.type != proto::kFixed64) return false; break;
      case kBytes: if (f.type != proto::kLengthDelimited) return false; break;
      case kSub:
        if (f.type != proto::kLengthDelimited || !Writable(f.data, f.size, r.sub, depth + 1))
          return false;
        break;
    }
  }
  return !d.error();
}

// One framed packet of a chunk.
struct Packet {
  const uint8_t* begin;  // the Trace.packet tag
  const uint8_t* body;
  size_t body_size;
  size_t size;           // framed
  uint64_t flags;
  uint64_t timestamp;
  bool has_timestamp;
  bool dropped_flag;     // previous_packet_dropped already set
  uint32_t clock_id;     // timestamp_clock_id; 0: unset
  uint32_t default_clock;  // TracePacketDefaults.timestamp_clock_id; 0: unset
  const uint8_t* snapshot;  // a ClockSnapshot, or nullptr
  size_t snapshot_size;
};

// Reads the packet framed at [p, end); false when it is not a whole,
// well-formed TracePacket of sequence `seq` (0: any sequence).
bool ReadPacket(const uint8_t* p, const uint8_t* end, uint32_t seq, Packet* out) {
  uint64_t tag, len;
  const uint8_t* q = proto::ReadVarint(p, end, &tag);
  if (!q || tag != proto::MakeTag(pf::Trace::kPacket, proto::kLengthDelimited)) return false;
  q = proto::ReadVarint(q, end, &len);
  if (!q || len > static_cast<uint64_t>(end - q)) return false;
  out->begin = p;
  out->body = q;
  out->body_size = static_cast<size_t>(len);
  out->size = static_cast<size_t>(q + len - p);
  out->flags = 0;
  out->timestamp = 0;
  out->has_timestamp = false;
  out->dropped_flag = false;
  out->clock_id = out->default_clock = 0;
  out->snapshot = nullptr;
  out->snapshot_size = 0;
  bool seq_ok = seq == 0;
  ProtoDecoder d(q, static_cast<size_t>(len));
  Field f;
  while (d.Next(&f)) {
    if (f.type == proto::kLengthDelimited && f.id == TP::kClockSnapshot) {
      out->snapshot = f.data;
      out->snapshot_size = f.size;
    } else if (f.type == proto::kLengthDelimited && f.id == TP::kTracePacketDefaults) {
      ProtoDecoder e(f.data, f.size);
      Field g;
      while (e.Next(&g))
        if (g.id == pf::TracePacketDefaults::kTimestampClockId && g.type == proto::kVarint)
          out->default_clock = static_cast<uint32_t>(g.int_value);
    }
    if (f.type != proto::kVarint) continue;
    if (f.id == TP::kTimestampClockId) out->clock_id = static_cast<uint32_t>(f.int_value);
    if (f.id == TP::kSequenceFlags) out->flags = f.int_value;
    if (f.id == TP::kTimestamp) out->timestamp = f.int_value, out->has_timestamp = true;
    if (f.id == TP::kTrustedPacketSequenceId) seq_ok = seq == 0 || f.int_value == seq;
    if (f.id == TP::kPreviousPacketDropped) out->dropped_flag = f.int_value != 0;
  }
  return !d.error() && seq_ok && (seq == 0 || Writable(q, static_cast<size_t>(len), kMsgPacket, 0));
}

// Bytes [0, n) of `data` that hold whole packets.
size_t WholePackets(const uint8_t* data, size_t n, uint64_t* packets) {
  const uint8_t* p = data;
  const uint8_t* end = data + n;
  Packet pk;
  while (p < end && ReadPacket(p, end, 0, &pk)) {
    p += pk.size;
    ++*packets;
  }
  return static_cast<size_t>(p - data);
}

struct ChunkRef {
  uint32_t index;
  uint32_t seq;
  uint64_t chunk_index;
  uint64_t order;
  bool writing;
  const uint8_t* data;  // the bytes to recover
  size_t size;
  uint32_t packets;     // complete packets the chunk says it holds there
};

// The parsed fixed part of a version-1 header.
struct HeaderV1 {
  uint32_t version, header_size, chunk_header_size, chunk_size, num_chunks, mode;
  uint64_t data_offset;
  uint32_t pid, sequence_base, state, clock_snapshot_len;
  uint64_t buffer_bytes;
  uint64_t chunks_overwritten, packets_overwritten, bytes_overwritten, chunks_discarded,
      packets_dropped;
  uint64_t stream_bytes;
  uint32_t pending, pending_chunk;
  uint64_t pending_offset;
  uint32_t pending_from, pending_to;
  const uint8_t* clock_snapshot;
  std::string output_path;
};

Status Bad(const std::string& why) { return Status::Error(kFormatError, "not a valid crash image: " + why); }

Status ParseHeader(const uint8_t* im, size_t n, HeaderV1* h) {
  if (n < 16 || std::memcmp(im, image::kMagic, 8) != 0)
    return Bad("no vperfetto crash-image magic");
  h->version = Load<uint32_t>(im + 8);
  if (h->version == 0)
    return Bad("the image was never initialised (the process died while starting)");
  if (h->version > image::kVersion)
    return Status::Error(kUnsupported, "crash image version " + std::to_string(h->version) +
                                           " is newer than this vperfetto reads (" +
                                           std::to_string(image::kVersion) + "): upgrade vperfetto");
  // Version 1 (every later version keeps a reader here).
  if (n < image::kHeaderSize) return Bad("truncated header");
  h->header_size = Load<uint32_t>(im + 12);
  h->chunk_header_size = Load<uint32_t>(im + 16);
  h->chunk_size = Load<uint32_t>(im + 20);
  h->num_chunks = Load<uint32_t>(im + 24);
  h->mode = Load<uint32_t>(im + 28);
  h->data_offset = Load<uint64_t>(im + 32);
  h->pid = Load<uint32_t>(im + 40);
  h->sequence_base = Load<uint32_t>(im + 44);
  h->state = Load<uint32_t>(im + 48);
  h->clock_snapshot_len = Load<uint32_t>(im + 52);
  h->buffer_bytes = Load<uint64_t>(im + 56);
  h->chunks_overwritten = Load<uint64_t>(im + 72);
  h->packets_overwritten = Load<uint64_t>(im + 80);
  h->bytes_overwritten = Load<uint64_t>(im + 88);
  h->chunks_discarded = Load<uint64_t>(im + 96);
  h->packets_dropped = Load<uint64_t>(im + 104);
  h->stream_bytes = Load<uint64_t>(im + 112);
  h->pending = Load<uint32_t>(im + 120);
  h->pending_chunk = Load<uint32_t>(im + 124);
  h->pending_offset = Load<uint64_t>(im + 128);
  h->pending_from = Load<uint32_t>(im + 136);
  h->pending_to = Load<uint32_t>(im + 140);
  h->clock_snapshot = im + 176;
  const char* path = reinterpret_cast<const char*>(im + 688);
  h->output_path.assign(path, strnlen(path, image::kMaxOutputPath - 1));
  if (h->header_size < 688 + image::kMaxOutputPath || h->header_size > (1u << 20))
    return Bad("header size " + std::to_string(h->header_size));
  if (h->chunk_header_size < image::kChunkHeaderSize || h->chunk_header_size > 4096)
    return Bad("chunk header size " + std::to_string(h->chunk_header_size));
  if (h->chunk_size < 16 || h->chunk_size > (64u << 20))
    return Bad("chunk size " + std::to_string(h->chunk_size));
  if (h->mode > image::kModeStream) return Bad("buffer mode " + std::to_string(h->mode));
  if (h->clock_snapshot_len > image::kMaxClockSnapshot) h->clock_snapshot_len = 0;
  uint64_t table_end = uint64_t{h->header_size} + uint64_t{h->num_chunks} * h->chunk_header_size;
  if (h->num_chunks > (1u << 24) || h->data_offset < table_end)
    return Bad("chunk table (" + std::to_string(h->num_chunks) + " chunks)");
  return Status::Ok();
}

class Recovery {
 public:
  Recovery(const uint8_t* im, size_t n, size_t stream_n, RecoverReport* rep,
           const uint8_t* stream_data = nullptr)
      : im_(im), n_(n), stream_n_(stream_n), rep_(rep), stream_data_(stream_data) {}

  // Everything except the stream file's bytes [0, stream_len): those come
  // first in the output.
  Status Plan() {
    Status st = ParseHeader(im_, n_, &h_);
    if (!st.ok()) return st;
    rep_->image_version = h_.version;
    rep_->pid = h_.pid;
    rep_->mode = static_cast<int32_t>(h_.mode);
    rep_->output_path = h_.output_path;
    bool stream = h_.mode == image::kModeStream;
    rep_->packets_lost = h_.packets_overwritten + h_.packets_dropped;
    // Stream: how much of the output file is whole, and which write was
    // in flight.
    uint32_t pending_chunk = image::kNoChunk;
    uint32_t pending_from = 0;
    if (stream) {
      stream_len_ = std::min<uint64_t>(h_.stream_bytes, stream_n_);
      if (h_.pending == 1) {
        uint64_t len = h_.pending_to >= h_.pending_from ? h_.pending_to - h_.pending_from : 0;
        if (h_.pending_offset <= stream_n_ && len <= stream_n_ - h_.pending_offset) {
          stream_len_ = h_.pending_offset + len;  // it landed
        } else {
          stream_len_ = std::min<uint64_t>(h_.pending_offset, stream_n_);
          pending_chunk = h_.pending_chunk;      // it did not: from the chunk
          pending_from = h_.pending_from;
          if (pending_chunk == image::kNoChunk) rep_->packets_skipped++;  // at least one
        }
      }
    }
    // The chunks.
    std::vector<ChunkRef> chunks;
    for (uint32_t i = 0; i < h_.num_chunks; i++) {
      uint64_t at = h_.header_size + uint64_t{i} * h_.chunk_header_size;
      if (at + image::kChunkHeaderSize > n_) break;  // truncated in the chunk table
      const uint8_t* ch = im_ + at;
      uint32_t state = Load<uint32_t>(ch);
      if (state != image::kChunkWriting && state != image::kChunkComplete) continue;
      ChunkRef c;
      c.index = i;
      c.seq = Load<uint32_t>(ch + 4);
      c.chunk_index = Load<uint64_t>(ch + 8);
      uint64_t committed = Load<uint64_t>(ch + 16);
      c.order = Load<uint64_t>(ch + 24);
      uint32_t flushed = Load<uint32_t>(ch + 32);
      c.writing = state == image::kChunkWriting;
      uint64_t bytes = std::min<uint64_t>(committed >> image::kPacketBits, h_.chunk_size);
      c.packets = static_cast<uint32_t>(committed & ((1u << image::kPacketBits) - 1));
      uint64_t from = 0;
      if (stream) from = i == pending_chunk ? pending_from : flushed;
      if (c.seq == 0 || from >= bytes) continue;
      uint64_t start = h_.data_offset + uint64_t{i} * h_.chunk_size;
      if (start >= n_) {  // truncated image
        rep_->packets_skipped += c.packets;
        continue;
      }
      uint64_t avail = std::min<uint64_t>(bytes, n_ - start);
      if (from >= avail) continue;
      c.data = im_ + start + from;
      c.size = static_cast<size_t>(avail - from);
      chunks.push_back(c);
    }
    // Per sequence, in chunk order.
    std::map<uint32_t, std::vector<ChunkRef>> seqs;
    for (const ChunkRef& c : chunks) seqs[c.seq].push_back(c);
    std::vector<std::pair<uint64_t, uint32_t>> seq_order;
    for (auto& kv : seqs) {
      auto& v = kv.second;
      std::sort(v.begin(), v.end(), [](const ChunkRef& a, const ChunkRef& b) {
        return a.chunk_index != b.chunk_index ? a.chunk_index < b.chunk_index : a.index < b.index;
      });
      uint64_t first = UINT64_MAX;
      for (auto& c : v)
        if (!c.writing) first = std::min(first, c.order);
      seq_order.emplace_back(first, kv.first);
    }
    std::sort(seq_order.begin(), seq_order.end());
    if (stream && stream_data_) ReadStreamClocks(stream_data_, static_cast<size_t>(stream_len_));
    for (auto& so : seq_order) EmitSequence(seqs[so.second], stream);
    return Status::Ok();
  }

  // The session's own packets that close the trace.
  std::string Header() const {
    if (h_.mode == image::kModeStream || h_.clock_snapshot_len == 0) return std::string();
    // The start ClockSnapshot, when it is one whole packet.
    Packet pk;
    const uint8_t* end = h_.clock_snapshot + h_.clock_snapshot_len;
    if (!ReadPacket(h_.clock_snapshot, end, 0, &pk) ||
        !Writable(pk.body, pk.body_size, kMsgPacket, 0))
      return std::string();
    return std::string(reinterpret_cast<const char*>(pk.begin), pk.size);
  }
  std::string Trailer() const;

  uint64_t stream_len() const { return stream_len_; }
  const std::vector<std::pair<const uint8_t*, size_t>>& pieces() const { return pieces_; }
  const std::vector<std::string>& extras() const { return extra_; }

 private:
  // The BOOTTIME of each packet's time on its sequence, as trace_processor
  // resolves it: its timestamp_clock_id, else the sequence's default clock
  // (BOOTTIME unless its defaults say otherwise); the incremental clock
  // (incremental timestamps) defined by the ClockSnapshot of the sequence's
  // last reset adds up its deltas. False when the time cannot be placed (a
  // delta whose clock's definition was not recovered).
  struct SeqClock {
    uint32_t default_clock = 0;
    uint32_t scoped = 0;     // the sequence-scoped clock defined, 0: none
    bool incremental = false;
    uint64_t unit = 1;
    uint64_t last = 0;       // its running value, ns
    uint64_t offset = 0;     // BOOTTIME minus it (modulo 2^64)
  };
  std::map<uint32_t, SeqClock> seq_clocks_;

 public:
  bool PacketTime(uint32_t seq, const Packet& pk, uint64_t* out) {
    SeqClock& c = seq_clocks_[seq];
    if (pk.flags & TP::kSeqIncrementalStateCleared) c.default_clock = 0;
    if (pk.default_clock) c.default_clock = pk.default_clock;
    if (pk.snapshot) {  // its own time is not read: the snapshot's BOOTTIME is it
      bool has_boot = false;
      uint64_t boot = 0;
      SeqClock next = c;
      ProtoDecoder d(pk.snapshot, pk.snapshot_size);
      Field f;
      while (d.Next(&f)) {
        if (f.id != pf::ClockSnapshot::kClocks || f.type != proto::kLengthDelimited) continue;
        uint32_t id = 0;
        uint64_t ts = 0, unit = 1;
        bool incremental = false;
        ProtoDecoder e(f.data, f.size);
        Field g;
        while (e.Next(&g)) {
          if (g.type != proto::kVarint) continue;
          if (g.id == pf::ClockSnapshot::Clock::kClockId) id = static_cast<uint32_t>(g.int_value);
          if (g.id == pf::ClockSnapshot::Clock::kTimestamp) ts = g.int_value;
          if (g.id == pf::ClockSnapshot::Clock::kIsIncremental) incremental = g.int_value != 0;
          if (g.id == pf::ClockSnapshot::Clock::kUnitMultiplierNs && g.int_value) unit = g.int_value;
        }
        if (id == pf::BuiltinClock::kBoottime) has_boot = true, boot = ts;
        if (id >= 64 && id < 128) {
          next.scoped = id;
          next.incremental = incremental;
          next.unit = unit;
          next.last = ts * unit;
        }
      }
      if (!has_boot) return false;
      if (next.scoped) {
        next.offset = boot - next.last;
        c = next;
      }
      *out = boot;
      return true;
    }
    if (!pk.has_timestamp) return false;
    uint32_t clock = pk.clock_id ? pk.clock_id : c.default_clock ? c.default_clock : pf::BuiltinClock::kBoottime;
    if (clock == pf::BuiltinClock::kBoottime) {
      *out = pk.timestamp;
      return true;
    }
    if (!c.scoped || clock != c.scoped) return false;
    uint64_t ns = pk.timestamp * c.unit;
    if (c.incremental) ns = c.last += ns;
    *out = ns + c.offset;
    return true;
  }

  // Stream mode: the sequences' clocks as the stream file's whole packets
  // [0, n) leave them, for the chunks that continue them.
  void ReadStreamClocks(const uint8_t* data, size_t n) {
    const uint8_t* p = data;
    const uint8_t* end = data + n;
    Packet pk;
    uint64_t t;
    while (p < end && ReadPacket(p, end, 0, &pk)) {
      uint32_t seq = 0;
      ProtoDecoder d(pk.body, pk.body_size);
      Field f;
      while (d.Next(&f))
        if (f.id == TP::kTrustedPacketSequenceId && f.type == proto::kVarint) seq = static_cast<uint32_t>(f.int_value);
      PacketTime(seq, pk, &t);
      p += pk.size;
    }
  }

 private:
  void EmitSequence(std::vector<ChunkRef>& v, bool stream) {
    bool any = false;
    bool valid = true;        // the incremental state is valid here
    bool have_prev = false;
    uint64_t prev = 0;
    for (ChunkRef& c : v) {
      if (have_prev && c.chunk_index == prev) {  // the same chunk twice: corrupt
        rep_->packets_skipped += c.packets;
        continue;
      }
      // A sequence that does not start at its first chunk, or skips one, has
      // lost packets: its packets that need the incremental state are
      // skipped until one clears it, which says previous_packet_dropped.
      // (Stream mode: the earlier chunks are in the output file already.)
      bool gap = stream ? false : have_prev ? c.chunk_index != prev + 1 : c.chunk_index != 0;
      if (gap) {
        rep_->chunks_lost += have_prev ? c.chunk_index - prev - 1 : c.chunk_index;
        valid = false;
      }
      bool mark_dropped = gap;
      have_prev = true;
      prev = c.chunk_index;
      rep_->chunks++;
      const uint8_t* p = c.data;
      const uint8_t* end = c.data + c.size;
      uint32_t good = 0;
      Packet pk;
      while (p < end && ReadPacket(p, end, c.seq, &pk)) {
        p += pk.size;
        good++;
        if (pk.flags & TP::kSeqIncrementalStateCleared) valid = true;
        if (!valid && (pk.flags & TP::kSeqNeedsIncrementalState)) {
          rep_->packets_skipped++;
          mark_dropped = true;
          continue;
        }
        uint64_t t;
        if (PacketTime(c.seq, pk, &t)) rep_->last_timestamp_ns = std::max(rep_->last_timestamp_ns, t);
        rep_->packets++;
        rep_->bytes += pk.size;
        any = true;
        if (mark_dropped && !pk.dropped_flag) {
          // The same packet with previous_packet_dropped appended.
          std::string framed;
          std::string body(reinterpret_cast<const char*>(pk.body), pk.body_size);
          PutVarintField(&body, TP::kPreviousPacketDropped, 1);
          PutMessage(&framed, pf::Trace::kPacket, body);
          AddText(std::move(framed));
        } else {
          AddBytes(pk.begin, pk.size);
        }
        mark_dropped = false;
      }
      if (p < end) {
        // Malformed from here on (a corrupt image): the rest of the chunk
        // is skipped, and the state after it is unknown.
        if (c.packets > good) rep_->packets_skipped += c.packets - good;
        else rep_->packets_skipped++;
        valid = false;
        if (!stream) prev = UINT64_MAX - 1;  // forces a gap before the next chunk
      }
    }
    if (any) rep_->sequences++;
  }

  void AddBytes(const uint8_t* p, size_t n) {
    if (!pieces_.empty() && pieces_.back().first && pieces_.back().first + pieces_.back().second == p) {
      pieces_.back().second += n;
      return;
    }
    pieces_.emplace_back(p, n);
    extra_.emplace_back();
  }
  void AddText(std::string s) {
    pieces_.emplace_back(nullptr, 0);
    extra_.push_back(std::move(s));
  }

  const uint8_t* im_;
  size_t n_;
  size_t stream_n_;
  RecoverReport* rep_;
  const uint8_t* stream_data_;  // the stream file's bytes [0, stream_n_), or nullptr
  HeaderV1 h_{};
  uint64_t stream_len_ = 0;
  // The output after the header: spans of the image, or text (extra_[i]
  // when pieces_[i].first is null).
  std::vector<std::pair<const uint8_t*, size_t>> pieces_;
  std::vector<std::string> extra_;
};

std::string Recovery::Trailer() const {
  std::string out;
  uint32_t seq = h_.sequence_base + 1;
  uint64_t ts = rep_->last_timestamp_ns;
  // Trace stats: what the buffer held and lost while running, and what
  // the recovery could not take.
  {
    std::string bs;
    if (h_.mode != image::kModeStream) PutVarintField(&bs, pf::TraceStats::BufferStats::kBufferSize, h_.buffer_bytes);
    PutVarintField(&bs, pf::TraceStats::BufferStats::kBytesWritten, rep_->bytes + rep_->stream_bytes);
    PutVarintField(&bs, pf::TraceStats::BufferStats::kChunksWritten, rep_->chunks);
    PutVarintField(&bs, pf::TraceStats::BufferStats::kChunksOverwritten, h_.chunks_overwritten);
    PutVarintField(&bs, pf::TraceStats::BufferStats::kBytesOverwritten, h_.bytes_overwritten);
    PutVarintField(&bs, pf::TraceStats::BufferStats::kChunksDiscarded, h_.chunks_discarded);
    PutVarintField(&bs, pf::TraceStats::BufferStats::kTraceWriterPacketLoss,
                   rep_->packets_lost + rep_->packets_skipped);
    std::string st;
    PutMessage(&st, pf::TraceStats::kBufferStats, bs);
    PutVarintField(&st, pf::TraceStats::kChunksDiscarded, h_.chunks_discarded);
    std::string pkt;
    if (ts) PutVarintField(&pkt, TP::kTimestamp, ts);
    PutVarintField(&pkt, TP::kTrustedPacketSequenceId, seq);
    PutMessage(&pkt, TP::kTraceStats, st);
    PutMessage(&out, pf::Trace::kPacket, pkt);
  }
  // A "vperfetto recovery" track with one instant at the last recovered
  // timestamp: the process died, what was recovered and lost.
  uint64_t uuid = 0x7670726563767279ull ^ h_.pid;  // "vprecvry"
  {
    std::string td;
    PutVarintField(&td, pf::TrackDescriptor::kUuid, uuid);
    static const char kName[] = "vperfetto crash recovery";
    PutBytesField(&td, pf::TrackDescriptor::kName, kName, sizeof(kName) - 1);
    std::string pkt;
    if (ts) PutVarintField(&pkt, TP::kTimestamp, ts);
    PutVarintField(&pkt, TP::kTrustedPacketSequenceId, seq);
    PutVarintField(&pkt, TP::kSequenceFlags, TP::kSeqIncrementalStateCleared);
    PutMessage(&pkt, TP::kTrackDescriptor, td);
    PutMessage(&out, pf::Trace::kPacket, pkt);
  }
  if (ts) {
    std::string te;
    PutVarintField(&te, pf::TrackEvent::kType, pf::TrackEvent::kTypeInstant);
    PutVarintField(&te, pf::TrackEvent::kTrackUuid, uuid);
    static const char kEvent[] = "vperfetto_crash_recovered";
    PutBytesField(&te, pf::TrackEvent::kName, kEvent, sizeof(kEvent) - 1);
    auto num = [&](const char* k, uint64_t v) {
      std::string a;
      PutBytesField(&a, pf::DebugAnnotation::kName, k, std::strlen(k));
      PutVarintField(&a, pf::DebugAnnotation::kUintValue, v);
      PutMessage(&te, pf::TrackEvent::kDebugAnnotations, a);
    };
    num("pid", h_.pid);
    num("image_version", h_.version);
    num("packets_recovered", rep_->packets);
    num("packets_lost", rep_->packets_lost);
    num("packets_skipped", rep_->packets_skipped);
    num("chunks_lost", rep_->chunks_lost);
    std::string pkt;
    PutVarintField(&pkt, TP::kTimestamp, ts);
    PutVarintField(&pkt, TP::kTrustedPacketSequenceId, seq);
    PutMessage(&pkt, TP::kTrackEvent, te);
    PutMessage(&out, pf::Trace::kPacket, pkt);
  }
  return out;
}

struct MappedFile {
  const uint8_t* data = nullptr;
  size_t size = 0;
  void* map = nullptr;
  ~MappedFile() {
    if (map) munmap(map, size);
  }
  // Maps `path` read-only; a private copy of what it holds now.
  Status Open(const std::string& path, const char* what) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return Status::Error(kIoError, std::string("cannot open ") + what + " '" + path + "': " +
                                         std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      return Status::Error(kIoError, std::string(what) + " '" + path + "' is not a regular file");
    }
    size = static_cast<size_t>(st.st_size);
    if (size) {
      map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (map == MAP_FAILED) {
        map = nullptr;
        int e = errno;
        close(fd);
        return Status::Error(kIoError, std::string("cannot map '") + path + "': " + std::strerror(e));
      }
      data = static_cast<const uint8_t*>(map);
    }
    close(fd);
    return Status::Ok();
  }
};

}  // namespace

Status RecoverImageBytes(const uint8_t* image, size_t n, const uint8_t* stream_file,
                         size_t stream_n, std::string* out, RecoverReport* report) {
  RecoverReport local;
  RecoverReport* rep = report ? report : &local;
  *rep = RecoverReport();
  Recovery r(image, n, stream_file ? stream_n : 0, rep, stream_file);
  Status st = r.Plan();
  if (!st.ok()) return st;
  uint64_t prefix_packets = 0;
  size_t prefix = stream_file ? WholePackets(stream_file, static_cast<size_t>(r.stream_len()), &prefix_packets) : 0;
  rep->stream_bytes = prefix;
  out->append(reinterpret_cast<const char*>(stream_file), prefix);
  out->append(r.Header());
  for (size_t i = 0; i < r.pieces().size(); i++) {
    if (r.pieces()[i].first)
      out->append(reinterpret_cast<const char*>(r.pieces()[i].first), r.pieces()[i].second);
    else
      out->append(r.extras()[i]);
  }
  out->append(r.Trailer());
  return Status::Ok();
}

Status RecoverImage(const std::string& image_path, const std::string& out_path,
                    RecoverReport* report) {
  RecoverReport local;
  RecoverReport* rep = report ? report : &local;
  *rep = RecoverReport();
  MappedFile im;
  Status st = im.Open(image_path, "the crash image");
  if (!st.ok()) return st;
  // A first pass for the header: which output, which mode.
  {
    RecoverReport probe;
    Recovery p(im.data, im.size, 0, &probe);
    st = p.Plan();
    if (!st.ok()) return Status::Error(st.code, "'" + image_path + "': " + st.message);
    *rep = probe;
  }
  std::string out = out_path.empty() ? rep->output_path : out_path;
  if (out.empty()) return Status::Error(kInvalidArgument, "no output path was given and the image names none");
  MappedFile stream;
  if (rep->mode == static_cast<int32_t>(BufferMode::kStream)) {
    // The output file of a stream session holds the trace's first part.
    std::string sp = rep->output_path;
    struct stat s1, s2;
    if (sp.empty() || stat(sp.c_str(), &s1) != 0) {
      // Moved with its image? Look beside it.
      std::string beside = image_path;
      if (beside.size() > 6 && beside.compare(beside.size() - 6, 6, image::kSuffix) == 0)
        beside.resize(beside.size() - 6);
      sp = beside;
    }
    if (stat(sp.c_str(), &s1) == 0 && stat(image_path.c_str(), &s2) == 0 &&
        s1.st_dev == s2.st_dev && s1.st_ino == s2.st_ino)
      return Status::Error(kInvalidArgument, "the stream file and the image are the same file");
    if (stat(sp.c_str(), &s1) == 0) {
      st = stream.Open(sp, "the stream session's output");
      if (!st.ok()) return st;
    }
  }
  *rep = RecoverReport();
  Recovery full(im.data, im.size, stream.size, rep, stream.data);
  st = full.Plan();
  if (!st.ok()) return st;
  uint64_t prefix_packets = 0;
  size_t prefix = stream.data ? WholePackets(stream.data, static_cast<size_t>(full.stream_len()), &prefix_packets) : 0;
  rep->stream_bytes = prefix;
  // Written beside the output and renamed: never half a trace, and the
  // output may be the stream file being read.
  std::string tmp = out + ".recovering-" + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return Status::Error(kIoError, "cannot write '" + tmp + "': " + std::strerror(errno));
  bool ok = true;
  auto put = [&](const void* p, size_t len) { ok = ok && WriteFully(fd, p, len); };
  int err = 0;
  if (prefix) put(stream.data, prefix);
  std::string header = full.Header();
  put(header.data(), header.size());
  for (size_t i = 0; i < full.pieces().size(); i++) {
    if (full.pieces()[i].first) put(full.pieces()[i].first, full.pieces()[i].second);
    else put(full.extras()[i].data(), full.extras()[i].size());
  }
  std::string trailer = full.Trailer();
  put(trailer.data(), trailer.size());
  if (!ok) err = errno;
  if (close(fd) != 0 && ok) ok = false, err = errno;
  if (ok && rename(tmp.c_str(), out.c_str()) != 0) ok = false, err = errno;
  if (!ok) {
    unlink(tmp.c_str());
    return Status::Error(kIoError, "cannot write '" + out + "': " + std::strerror(err ? err : EIO));
  }
  return Status::Ok();
}

}  // namespace vpsdk
