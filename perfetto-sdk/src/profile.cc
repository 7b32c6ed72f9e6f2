// Whole-program tracing: one slice per function call on the calling thread's
// track, with the function's name and source location interned once per
// sequence (InternedData.event_names + source_locations, TrackEvent
// name_iid + source_location_iid).
//
// Each thread keeps the calls it entered (ThreadWriter::frames). A call is
// written when it begins, unless a minimum duration is set: then its entry
// time is kept and the call is written, begin and end together with their
// own timestamps, only once it ends long enough after it began. A call that
// is written first writes its callers that were still deciding (they last
// at least as long), so no half slice is ever left and every sequence's
// timestamps only go forward.
#include <cstring>
#include <mutex>

#include "internal.h"
#include "vpsdk/clock.h"
#include "writer_inl.h"

namespace vpsdk {
namespace {

namespace TP = pf::TracePacket;
namespace TE = pf::TrackEvent;

// Begin and end packets end with at most this many bytes that never change.
constexpr size_t kTailBytes = 32;

struct FuncInfo {
  const InternedString* name;
  const InternedString* file;  // nullptr: no source location (C functions)
  uint32_t line;
  uint32_t name_iid;
  // The begin packet's bytes after its timestamp and sequence id, the same
  // for every call: sequence_flags, then the TrackEvent (type, name_iid,
  // source_location_iid). Made once at registration.
  uint8_t tail_len;
  uint8_t tail[kTailBytes];  // zero-padded: copied whole
};

// The bytes of an end packet after its timestamp and sequence id.
constexpr uint8_t kEndTailLen = 6;
constexpr uint8_t kEndTail[kTailBytes] = {
    (pf::TracePacket::kSequenceFlags << 3), pf::TracePacket::kSeqNeedsIncrementalState,
    (pf::TracePacket::kTrackEvent << 3) | 2, 2,
    (pf::TrackEvent::kType << 3), pf::TrackEvent::kTypeSliceEnd};

void MakeTail(FuncInfo* f, uint32_t id) {
  uint8_t te[24];
  uint8_t* q = te;
  q = proto::WriteVarint(proto::MakeTag(TE::kType, proto::kVarint), q);
  q = proto::WriteVarint(TE::kTypeSliceBegin, q);
  q = proto::WriteVarint(proto::MakeTag(TE::kNameIid, proto::kVarint), q);
  q = proto::WriteVarint(f->name_iid, q);
  if (f->file) {
    q = proto::WriteVarint(proto::MakeTag(TE::kSourceLocationIid, proto::kVarint), q);
    q = proto::WriteVarint(id, q);
  }
  uint8_t* t = f->tail;
  t = proto::WriteVarint(proto::MakeTag(TP::kSequenceFlags, proto::kVarint), t);
  t = proto::WriteVarint(TP::kSeqNeedsIncrementalState, t);
  t = proto::WriteVarint(proto::MakeTag(TP::kTrackEvent, proto::kLengthDelimited), t);
  *t++ = static_cast<uint8_t>(q - te);
  std::memcpy(t, te, static_cast<size_t>(q - te));
  f->tail_len = static_cast<uint8_t>(t + (q - te) - f->tail);
}

// A packet made of its timestamp delta, the sequence id and `tail`, on a
// writer whose clock is incremental in ns (Plain()): false when the time went
// back (then it is written absolute, by the general path), and nothing
// written. Room was made by the caller.
inline bool WritePlainPacket(ThreadWriter* w, uint64_t ts, const uint8_t* tail, size_t tail_len) {
  uint64_t last = w->last_ts;
  if (VPSDK_UNLIKELY(ts < last)) return false;
  uint8_t* start = w->buf + w->pos;
  uint8_t* p = start + 2;
  *p++ = static_cast<uint8_t>(TP::kTimestamp << 3);
  p = proto::WriteVarint(ts - last, p);
  *p++ = static_cast<uint8_t>(TP::kTrustedPacketSequenceId << 3);
  p = proto::WriteVarint(w->sequence_id, p);
  std::memcpy(p, tail, kTailBytes);  // whole: a fixed-size copy (the chunk has kPacketBase free)
  p += tail_len;
  size_t len = static_cast<size_t>(p - start - 2);
  if (VPSDK_UNLIKELY(len >= 0x80)) return false;  // never: at most ~60 bytes
  start[0] = static_cast<uint8_t>((pf::Trace::kPacket << 3) | 2);
  start[1] = static_cast<uint8_t>(len);
  w->last_ts = ts;
  w->Publish(p);
  return true;
}

// The same on any writer: false also when its clock is not incremental in ns.
inline bool WriteFastPacket(ThreadWriter* w, uint64_t ts, const uint8_t* tail, size_t tail_len) {
  if (!w->plain_ts) return false;
  return WritePlainPacket(w, ts, tail, tail_len);
}

// A function's event-name iid is its name's InternString() id (small: a
// short varint, shared by functions of the same name); when that table is
// full, an iid of its own above every id InternString() hands out.
constexpr uint32_t kFuncNameBase = 1u << 20;

std::mutex g_func_mu;
StableTable<const FuncInfo*, 12, 256> g_funcs;  // 1M functions; 0 is unused

std::atomic<uint64_t> g_min_duration_ns{0};
std::atomic<uint32_t> g_max_depth{0};  // 0: unlimited
std::atomic<bool> g_every_call{true};  // neither a minimum duration nor a maximum depth

enum FrameState : uint32_t {
  kFrameSkipped = 0,  // not recorded: its end writes nothing
  kFrameWritten = 1,  // its begin is in the trace
  kFramePending = 2,  // deciding: written at its end if it lasted long enough
};

InternedString* CopyString(const char* s, size_t len) {
  auto* e = static_cast<InternedString*>(std::malloc(sizeof(InternedString) + len));
  if (!e) return nullptr;
  e->len = static_cast<uint32_t>(len);
  if (len) std::memcpy(e->data, s, len);
  e->data[len] = 0;
  return e;
}

inline const FuncInfo* LookupFunc(uint32_t id) {
  if (id == 0 || id >= g_funcs.size()) return nullptr;
  return g_funcs.Get(id);
}

size_t InternedBound(const FuncInfo* f) {
  return 64 + 2 * f->name->len + (f->file ? f->file->len : 0);
}

void WriteBegin(ThreadWriter* w, uint32_t id, const FuncInfo* f, uint64_t ts) {
  bool seen = Seen(w->func_seen, id, w->epoch);
  uint32_t epoch = w->epoch;
  Prepare(w, kPacketBase + (seen ? 0 : InternedBound(f)));
  if (seen && w->epoch != epoch) {  // a reset forgot it: room for its description too
    seen = false;
    Prepare(w, kPacketBase + InternedBound(f));
  }
  if (seen && WriteFastPacket(w, ts, f->tail, f->tail_len)) return;
  PacketScope p(w, ts);
  ProtoWriter& pw = p.pw;
  if (!seen) {
    uint8_t* idata = pw.BeginNested(TP::kInternedData);
    uint8_t* e = pw.BeginNested(pf::InternedData::kEventNames);
    pw.Varint(pf::InternedString::kIid, f->name_iid);
    pw.String(pf::InternedString::kName, f->name->data, f->name->len);
    pw.EndNested(e);
    if (f->file) {
      uint8_t* loc = pw.BeginNested(pf::InternedData::kSourceLocations);
      pw.Varint(pf::SourceLocation::kIid, id);
      pw.String(pf::SourceLocation::kFileName, f->file->data, f->file->len);
      pw.String(pf::SourceLocation::kFunctionName, f->name->data, f->name->len);
      pw.Varint(pf::SourceLocation::kLineNumber, f->line);
      pw.EndNested(loc);
    }
    pw.EndNested(idata);
    MarkSeen(&w->func_seen, id, w->epoch);
  }
  pw.Varint(TP::kSequenceFlags, TP::kSeqNeedsIncrementalState);
  uint8_t* te = pw.BeginNested(TP::kTrackEvent);
  pw.Varint(TE::kType, TE::kTypeSliceBegin);
  pw.Varint(TE::kNameIid, f->name_iid);
  if (f->file) pw.Varint(TE::kSourceLocationIid, id);
  pw.EndNested(te);
  p.Finish();
}

// Writes the begins of the pending calls below frames[top] (the callers
// still deciding), outermost first.
void WritePendingCallers(ThreadWriter* w, size_t top) {
  size_t first = top;
  while (first > 0 && w->frames[first - 1].state == kFramePending) first--;
  for (size_t i = first; i < top; i++) {
    ThreadWriter::Frame& fr = w->frames[i];
    if (const FuncInfo* f = LookupFunc(fr.func)) WriteBegin(w, fr.func, f, fr.ts);
    fr.state = kFrameWritten;
  }
}

}  // namespace

uint32_t RegisterFunc(const char* name, size_t name_len, const char* file, size_t file_len,
                      uint32_t line) {
  if (!name || name_len > (1u << 16) || (file && file_len > (1u << 16))) return 0;
  InternedString* n = CopyString(name, name_len);
  InternedString* fl = file ? CopyString(file, file_len) : nullptr;
  auto* f = new (std::nothrow) FuncInfo{n, fl, line, InternString(name, name_len), 0, {}};
  if (!n || (file && !fl) || !f) {
    std::free(n);
    std::free(fl);
    delete f;
    return 0;
  }
  std::lock_guard<std::mutex> lock(g_func_mu);
  uint32_t id;
  if (g_funcs.size() == 0) g_funcs.Append(nullptr, &id);  // 0 is "none"
  if (!g_funcs.Append(f, &id)) {
    std::free(n);
    std::free(fl);
    delete f;
    return 0;
  }
  if (!f->name_iid) f->name_iid = kFuncNameBase + id;
  MakeTail(f, id);
  return id;
}

void SetProfileOptions(uint64_t min_duration_ns, uint32_t max_depth) {
  g_min_duration_ns.store(min_duration_ns, std::memory_order_relaxed);
  g_max_depth.store(max_depth, std::memory_order_relaxed);
  g_every_call.store(min_duration_ns == 0 && max_depth == 0, std::memory_order_relaxed);
}

namespace {

// The common case of a call's begin or end, in one piece: the thread's
// writer bound to the recording session, room in its chunk, its state
// valid, the clock incremental in ns (then the packet's bytes are those the
// general path writes). False when anything is otherwise.
inline bool Plain(ThreadWriter* w) {
  return IsTracing() && w->generation == g_generation.load(std::memory_order_relaxed) && w->session &&
         Prepared(w, kPacketBase) && w->plain_ts;
}

// Out of memory in these (a description, a chunk, a frame) loses that
// event, never the program: nothing is thrown out of the C calls.
[[gnu::noinline]] void FuncEnterGeneral(uint32_t func, const void* key) noexcept;
[[gnu::noinline]] bool FuncExitGeneral() noexcept;

}  // namespace

// The common case makes no call: anything else (the clock's anchor due, a
// full call stack, a function not yet described) goes to the general path,
// as a tail call.
void FuncEnter(uint32_t func, const void* key) {
  ThreadWriter* w = t_writer;
  const FuncInfo* f;
  uint64_t ts;
  if (VPSDK_LIKELY(w && g_every_call.load(std::memory_order_relaxed) && Plain(w) && w->frames.Room() &&
                   (f = LookupFunc(func)) != nullptr && Seen(w->func_seen, func, w->epoch) &&
                   FastBootTimeTry(&ts) && WritePlainPacket(w, ts, f->tail, f->tail_len))) {
    CallFrame& fr = w->frames.PushInRoom();
    fr.func = func;
    fr.state = kFrameWritten;
    fr.ts = ts;
    fr.key = key;
    return;
  }
  FuncEnterGeneral(func, key);
}

namespace {

// The common case of ending the innermost call (w has one): its begin
// written, the end written here. False when anything is otherwise.
inline bool EndInnermostPlain(ThreadWriter* w) {
  uint64_t now;
  if (VPSDK_LIKELY(w->frames.back().state == kFrameWritten && Plain(w) && FastBootTimeTry(&now) &&
                   WritePlainPacket(w, now, kEndTail, kEndTailLen))) {
    w->frames.pop_back();
    return true;
  }
  return false;
}

}  // namespace

void FuncExit() {
  ThreadWriter* w = t_writer;
  if (VPSDK_LIKELY(w && !w->frames.empty() && EndInnermostPlain(w))) return;
  FuncExitGeneral();
}

bool FuncExitKeyed(const void* key) {
  ThreadWriter* w = t_writer;
  if (!w || w->frames.empty() || w->frames.back().key != key) return false;
  if (VPSDK_LIKELY(EndInnermostPlain(w))) return true;
  return FuncExitGeneral();
}

namespace {

void FuncEnterGeneralImpl(uint32_t func, const void* key) {
  ThreadWriter* w;
  uint32_t state = kFrameSkipped;
  uint64_t ts = 0;
  if (VPSDK_LIKELY(IsTracing()) && (w = CurrentWriter()) != nullptr) {
    const FuncInfo* f = LookupFunc(func);
    uint32_t max_depth = g_max_depth.load(std::memory_order_relaxed);
    if (f && (max_depth == 0 || w->frames.size() < max_depth)) {
      ts = FastBootTimeNs();
      if (g_min_duration_ns.load(std::memory_order_relaxed) == 0) {
        WriteBegin(w, func, f, ts);
        state = kFrameWritten;
      } else {
        state = kFramePending;
      }
    }
  } else {
    w = ThreadState();
  }
  // Field by field: a Frame built aside and copied whole stalls on the
  // store forwarding of its 16 bytes.
  CallFrame* fr = w->frames.Push();
  if (VPSDK_UNLIKELY(!fr)) {  // a call that cannot be kept: it ends at once (its end ends nothing)
    if (state == kFrameWritten) WriteSliceEnd(w, ts);
    return;
  }
  fr->func = func;
  fr->state = state;
  fr->ts = ts;
  fr->key = key;
}

void FuncEnterGeneral(uint32_t func, const void* key) noexcept {
  try {
    FuncEnterGeneralImpl(func, key);
  } catch (...) {
  }
}

void FuncExitGeneralImpl() {
  ThreadWriter* w = t_writer;
  if (VPSDK_UNLIKELY(!w) || w->frames.empty()) return;
  if (w->frames.back().state == kFrameSkipped || !IsTracing() || CurrentWriter() != w) {
    w->frames.pop_back();
    return;
  }
  // Read after CurrentWriter(): binding to a new session forgets the frames.
  ThreadWriter::Frame fr = w->frames.back();
  if (fr.state == kFrameSkipped) {
    w->frames.pop_back();
    return;
  }
  uint64_t now = FastBootTimeNs();
  if (fr.state == kFramePending) {
    if (now - fr.ts < g_min_duration_ns.load(std::memory_order_relaxed)) {
      w->frames.pop_back();
      return;
    }
    size_t top = w->frames.size() - 1;
    WritePendingCallers(w, top);
    if (const FuncInfo* f = LookupFunc(fr.func)) WriteBegin(w, fr.func, f, fr.ts);
  }
  w->frames.pop_back();
  Prepare(w, kPacketBase);
  if (!WriteFastPacket(w, now, kEndTail, kEndTailLen)) WriteSliceEnd(w, now);
}

// True: FuncExitKeyed()'s answer (its key matched).
bool FuncExitGeneral() noexcept {
  try {
    FuncExitGeneralImpl();
  } catch (...) {
  }
  return true;
}

}  // namespace

void FuncCloseAll() {
  ThreadWriter* w = t_writer;
  if (!w) return;
  if (IsTracing() && CurrentWriter() == w) {
    uint64_t now = FastBootTimeNs();
    for (size_t i = w->frames.size(); i-- > 0;)
      if (w->frames[i].state == kFrameWritten) WriteSliceEnd(w, now);
  }
  ForgetFrames(w);
}

uint32_t FuncDepth() {
  ThreadWriter* w = t_writer;
  return w ? static_cast<uint32_t>(w->frames.size()) : 0;
}

void ForgetFrames(ThreadWriter* w) {
  for (auto& fr : w->frames) fr.state = kFrameSkipped;
}

}  // namespace vpsdk
