// Inline pieces of the track-event writer shared by the encoders of
// track_event.cc and profile.cc: room in the chunk, packet framing and
// per-sequence "seen since the last reset" bookkeeping.
#ifndef VPSDK_SRC_WRITER_INL_H_
#define VPSDK_SRC_WRITER_INL_H_

#include "internal.h"
#include "vpsdk/field_numbers.h"
#include "vpsdk/proto_writer.h"

namespace vpsdk {

// Everything of a packet except names, strings and repeated fields.
constexpr size_t kPacketBase = 96;
constexpr size_t kTrackDescriptorBase = 96;

// --- packets ---------------------------------------------------------------------

// A packet's time. With incremental timestamps (the SDK's way) it is the
// delta from the sequence's previous time on the sequence-scoped clock that
// the last reset defined (the packet defaults' clock), in its units; a time
// before the previous one (an explicit timestamp, a call that began before a
// reset) is written absolute, on CLOCK_BOOTTIME, and leaves the sequence's
// time alone. At most 14 bytes.
inline void WriteTimestamp(ProtoWriter& pw, ThreadWriter* w, uint64_t ts) {
  if (VPSDK_LIKELY(w->incremental_ts)) {
    if (VPSDK_LIKELY(ts >= w->last_ts)) {
      uint64_t d = ts - w->last_ts;
      if (VPSDK_LIKELY(w->ts_unit == 1)) {
        w->last_ts = ts;
      } else {
        d /= w->ts_unit;
        w->last_ts += d * w->ts_unit;  // what the reader adds up: within a unit of ts
      }
      pw.Varint(pf::TracePacket::kTimestamp, d);
      return;
    }
    pw.Varint(pf::TracePacket::kTimestamp, ts);
    pw.Varint(pf::TracePacket::kTimestampClockId, pf::BuiltinClock::kBoottime);
    return;
  }
  pw.Varint(pf::TracePacket::kTimestamp, ts);
}

struct PacketScope {
  ProtoWriter pw;
  uint8_t* packet;
  ThreadWriter* w;
  PacketScope(ThreadWriter* writer, uint64_t ts)
      : pw(writer->buf + writer->pos), w(writer) {
    packet = pw.BeginNested(pf::Trace::kPacket);
    WriteTimestamp(pw, w, ts);
    pw.Varint(pf::TracePacket::kTrustedPacketSequenceId, w->sequence_id);
  }
  // For packets that carry no SEQ_NEEDS_INCREMENTAL_STATE of their own
  // (descriptors): a delta on the sequence's clock needs the sequence's
  // state, so that a reader skips it rather than misplaces it when the
  // state is gone (as the SDK flags every packet after a reset).
  void FlagIfIncremental() {
    if (w->incremental_ts)
      pw.Varint(pf::TracePacket::kSequenceFlags, pf::TracePacket::kSeqNeedsIncrementalState);
  }
  void Finish() {
    pw.EndNested(packet);
    w->Publish(pw.pos());
  }
};

// Makes room for `bound` bytes and (re)starts the incremental state when due.
void PrepareSlow(ThreadWriter* w, size_t bound);

// Whether `bound` bytes fit in the chunk and the incremental state is valid.
inline bool Prepared(ThreadWriter* w, size_t bound) {
  return !w->need_reset && w->cap - w->pos >= bound;
}
// Makes sure of it. The common case is a few compares.
inline void Prepare(ThreadWriter* w, size_t bound) {
  if (VPSDK_LIKELY(Prepared(w, bound))) return;
  PrepareSlow(w, bound);
}

// A slice end on the thread's track at `ts`.
inline void WriteSliceEnd(ThreadWriter* w, uint64_t ts) {
  Prepare(w, kPacketBase);
  PacketScope p(w, ts);
  ProtoWriter& pw = p.pw;
  pw.Varint(pf::TracePacket::kSequenceFlags, pf::TracePacket::kSeqNeedsIncrementalState);
  uint8_t* te = pw.BeginNested(pf::TracePacket::kTrackEvent);
  pw.Varint(pf::TrackEvent::kType, pf::TrackEvent::kTypeSliceEnd);
  pw.EndNested(te);
  p.Finish();
}

inline bool Seen(const std::vector<uint32_t>& v, uint32_t id, uint32_t epoch) {
  return id < v.size() && v[id] == epoch;
}
inline void MarkSeen(std::vector<uint32_t>* v, uint32_t id, uint32_t epoch) {
  if (id >= v->size()) v->resize(id + 64 + id / 2, 0);
  (*v)[id] = epoch;
}

}  // namespace vpsdk

#endif  // VPSDK_SRC_WRITER_INL_H_
