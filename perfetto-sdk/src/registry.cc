// Process-wide registries: interned names, tracks and process identity.
// Categories live in session.cc because their enabled flags depend on the
// session's config.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "internal.h"
#include "vpsdk/clock.h"

namespace vpsdk {
namespace {

// Interned names: up to 128k distinct strings for the life of the process.
// Past that, callers write names inline (unbounded name sets, e.g. names
// built with f-strings, must not grow memory without bound).
std::mutex g_str_mu;
StableTable<const InternedString*, 10, 128> g_strings;
std::unordered_map<std::string_view, uint32_t>* g_string_ids;
constexpr size_t kMaxInternedBytes = 1 << 20;  // a single name

std::mutex g_track_mu;
StableTable<const TrackInfo*, 8, 256> g_tracks;  // 64k tracks
std::unordered_map<std::string, uint32_t>* g_counter_ids;

std::mutex g_name_mu;
std::string* g_process_name;
std::atomic<int32_t> g_pid{0};
std::atomic<uint64_t> g_process_uuid{0};

void InitTracksLocked() {
  if (g_tracks.size() != 0) return;
  uint32_t idx;
  g_tracks.Append(nullptr, &idx);  // 0: the thread track (per thread)
  g_tracks.Append(new TrackInfo{TrackKind::kProcess, 0, 0, "", 0, ""}, &idx);
}

}  // namespace

const InternedString* LookupString(uint32_t id) {
  if (id == 0 || id >= g_strings.size()) return nullptr;
  return g_strings.Get(id);
}

uint32_t InternString(const char* s, size_t len) {
  if (!s || len > kMaxInternedBytes) return 0;
  std::lock_guard<std::mutex> lock(g_str_mu);
  if (!g_string_ids) {
    g_string_ids = new std::unordered_map<std::string_view, uint32_t>();
    uint32_t idx;
    g_strings.Append(nullptr, &idx);  // id 0 is "none"
  }
  auto it = g_string_ids->find(std::string_view(s, len));
  if (it != g_string_ids->end()) return it->second;
  auto* entry = static_cast<InternedString*>(
      std::malloc(sizeof(InternedString) + len));
  if (!entry) return 0;
  entry->len = static_cast<uint32_t>(len);
  std::memcpy(entry->data, s, len);
  entry->data[len] = 0;
  uint32_t id;
  if (!g_strings.Append(entry, &id)) {
    std::free(entry);
    return 0;
  }
  g_string_ids->emplace(std::string_view(entry->data, len), id);
  return id;
}

const TrackInfo* LookupTrack(uint32_t handle) {
  if (handle == 0 || handle >= g_tracks.size()) return nullptr;
  return g_tracks.Get(handle);
}

namespace {
// The uuid of the named or counter track about to get handle `next`: its
// handle above this process's pid (pids are below 2^22). Unique within a
// process and among the processes whose traces meet in one file (followed
// children; a merge remaps uuids anyway), and short: every event on the
// track carries it, so a 5-byte varint (handles below 8192) instead of a
// random 64-bit one's 9 or 10 bytes is a third of a counter sample.
uint64_t HandleUuid(uint32_t next) {
  return static_cast<uint64_t>(next) << 22 | (static_cast<uint32_t>(ProcessPid()) & ((1u << 22) - 1));
}
}  // namespace

Status NewTrack(const char* name, uint32_t parent, uint32_t* out) {
  if (!name || !out) return Status::Error(kInvalidArgument, "track name is NULL");
  std::lock_guard<std::mutex> lock(g_track_mu);
  InitTracksLocked();
  if (parent == 0) parent = kProcessTrack;
  if (parent >= g_tracks.size() || g_tracks.Get(parent)->kind == TrackKind::kCounter)
    return Status::Error(kInvalidArgument, "parent is not a slice track handle");
  auto* t = new TrackInfo{TrackKind::kNamed, HandleUuid(g_tracks.size()), parent, name, 0, ""};
  if (!g_tracks.Append(t, out)) {
    delete t;
    return Status::Error(kNoMemory, "too many tracks (limit 65536)");
  }
  return Status::Ok();
}

namespace {
std::vector<uint32_t>* g_free_tracks;  // recyclable handles, under g_track_mu
uint32_t g_track_serial = 0;           // under g_track_mu
}  // namespace

Status NewThreadTrack(const char* name, uint32_t* out) {
  if (!name || !out) return Status::Error(kInvalidArgument, "track name is NULL");
  uint64_t parent = ThreadState()->uuid;
  std::lock_guard<std::mutex> lock(g_track_mu);
  InitTracksLocked();
  if (g_free_tracks && !g_free_tracks->empty()) {
    uint32_t h = g_free_tracks->back();
    g_free_tracks->pop_back();
    // Only a track already freed is changed: nothing writes on it.
    auto* t = const_cast<TrackInfo*>(g_tracks.Get(h));
    t->uuid = UuidLsb();
    t->name = name;
    t->parent_uuid = parent;
    t->serial = ++g_track_serial;
    *out = h;
    return Status::Ok();
  }
  auto* t = new TrackInfo{TrackKind::kNamed, UuidLsb(), kProcessTrack, name, 0, ""};
  t->parent_uuid = parent;
  t->serial = ++g_track_serial;
  t->recyclable = true;
  if (!g_tracks.Append(t, out)) {
    delete t;
    return Status::Error(kNoMemory, "too many tracks (limit 65536 live)");
  }
  return Status::Ok();
}

void FreeTrack(uint32_t handle) {
  std::lock_guard<std::mutex> lock(g_track_mu);
  if (handle <= kProcessTrack || handle >= g_tracks.size()) return;
  const TrackInfo* t = g_tracks.Get(handle);
  if (!t || !t->recyclable) return;
  if (!g_free_tracks) g_free_tracks = new std::vector<uint32_t>();
  if (std::find(g_free_tracks->begin(), g_free_tracks->end(), handle) == g_free_tracks->end())
    g_free_tracks->push_back(handle);
}

Status CounterTrack(const char* name, const char* unit, uint32_t* out) {
  if (!name || !*name || !out)
    return Status::Error(kInvalidArgument, "counter track name is NULL or empty");
  std::string unit_s = unit ? unit : "";
  std::string key = std::string(name) + '\0' + unit_s;
  std::lock_guard<std::mutex> lock(g_track_mu);
  InitTracksLocked();
  if (!g_counter_ids) g_counter_ids = new std::unordered_map<std::string, uint32_t>();
  auto it = g_counter_ids->find(key);
  if (it != g_counter_ids->end()) {
    *out = it->second;
    return Status::Ok();
  }
  uint32_t builtin = 0;
  std::string unit_name;
  if (unit_s == "ns") builtin = 1;
  else if (unit_s == "count") builtin = 2;
  else if (unit_s == "bytes") builtin = 3;
  else unit_name = unit_s;
  auto* t = new TrackInfo{TrackKind::kCounter, HandleUuid(g_tracks.size()), kProcessTrack, name,
                          builtin, unit_name};
  if (!g_tracks.Append(t, out)) {
    delete t;
    return Status::Error(kNoMemory, "too many tracks (limit 65536)");
  }
  g_counter_ids->emplace(std::move(key), *out);
  return Status::Ok();
}

int32_t ProcessPid() {
  int32_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = static_cast<int32_t>(getpid());
    g_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

uint64_t ProcessUuid() {
  uint64_t u = g_process_uuid.load(std::memory_order_relaxed);
  if (u == 0) {
    uint64_t fresh = UuidLsb();
    if (g_process_uuid.compare_exchange_strong(u, fresh)) u = fresh;
  }
  return u;
}

uint64_t TrackUuid(uint32_t track) {
  // The thread's identity, bound to a session or not (binding here would
  // make the answer depend on whether a session records).
  if (track == kThreadTrack) return ThreadState()->uuid;
  if (track == kProcessTrack) return ProcessUuid();
  const TrackInfo* t = LookupTrack(track);
  return t ? t->uuid : 0;
}

std::string ProcessName() {
  std::lock_guard<std::mutex> lock(g_name_mu);
  return g_process_name ? *g_process_name : std::string();
}

void SetProcessNameStored(const char* name) {
  std::lock_guard<std::mutex> lock(g_name_mu);
  if (!g_process_name) g_process_name = new std::string();
  *g_process_name = name ? name : "";
}

// Fork support: keep the registries' mutexes consistent across fork and give
// the child its own identity.
void RegistryForkPrepare() {
  g_str_mu.lock();
  g_track_mu.lock();
  g_name_mu.lock();
}
void RegistryForkParent() {
  g_name_mu.unlock();
  g_track_mu.unlock();
  g_str_mu.unlock();
}
void RegistryForkChild() {
  g_name_mu.unlock();
  g_track_mu.unlock();
  g_str_mu.unlock();
  ReseedUuid();
  g_pid.store(static_cast<int32_t>(getpid()), std::memory_order_relaxed);
  g_process_uuid.store(UuidLsb(), std::memory_order_relaxed);
}

}  // namespace vpsdk
