// vperfetto.hpp - a thin C++ layer over the C ABI in vperfetto.h.
//
//   #include <vperfetto/vperfetto.hpp>
//   void Submit() {
//     VPERFETTO_SCOPE("gfx", "submit");      // a slice until the end of the scope
//     vperfetto::counter("fps", 59.9);        // a sample of the counter track "fps"
//   }
//
// Header-only; links against the same libvperfetto the Python package loads,
// so C++ and Python code of one process write into the same session.
#ifndef VPERFETTO_VPERFETTO_HPP_
#define VPERFETTO_VPERFETTO_HPP_

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>

#include <vperfetto/vperfetto.h>

namespace vperfetto {

// Ids for categories and names: resolve once, then pass (the fastest path).
inline uint32_t category_id(const char* name) { return vp_category(name); }
inline uint32_t name_id(const char* name) { return vp_intern(name, std::strlen(name)); }

// A slice on the calling thread's track for the lifetime of the object.
class ScopedSlice {
 public:
  ScopedSlice(uint32_t category, uint32_t name) { vp_begin(category, name); }
  ScopedSlice(const char* category, const char* name) {
    vp_begin_str(vp_category(category), name, std::strlen(name));
  }
  ~ScopedSlice() { vp_end(); }
  ScopedSlice(const ScopedSlice&) = delete;
  ScopedSlice& operator=(const ScopedSlice&) = delete;
};

inline void begin(uint32_t category, uint32_t name) { vp_begin(category, name); }
inline void end() { vp_end(); }
inline void instant(uint32_t category, uint32_t name) { vp_instant(category, name); }

namespace detail {
// Counter tracks by name, cached per thread so a sample is a hash lookup and
// one C call (the C side dedupes by name; this only saves its lock).
inline uint32_t CounterTrack(const char* name) {
  thread_local std::unordered_map<std::string, uint32_t> tracks;
  auto it = tracks.find(name);
  if (it != tracks.end()) return it->second;
  uint32_t track = 0;
  if (vp_counter_track(name, nullptr, &track, nullptr) != VP_OK) track = 0;
  tracks.emplace(name, track);
  return track;
}
}  // namespace detail

// A sample of the counter track `name` (one track per name).
inline void counter(const char* name, double value) {
  if (vp_is_tracing()) vp_counter_double(detail::CounterTrack(name), value);
}
inline void counter(const char* name, int64_t value) {
  if (vp_is_tracing()) vp_counter_int(detail::CounterTrack(name), value);
}
inline void counter(const char* name, int value) { counter(name, static_cast<int64_t>(value)); }

inline bool is_tracing() { return vp_is_tracing() != 0; }
inline uint64_t boot_time_ns() { return vp_boot_time_ns(); }

}  // namespace vperfetto

#define VPERFETTO_CONCAT_INNER_(a, b) a##b
#define VPERFETTO_CONCAT_(a, b) VPERFETTO_CONCAT_INNER_(a, b)
#define VPERFETTO_UID_(prefix) VPERFETTO_CONCAT_(prefix, __LINE__)

// A slice named `name` in `category` until the end of the enclosing scope.
// Both must be string literals (or outlive the program): the ids are
// resolved once per call site.
#define VPERFETTO_SCOPE(category, name)                                         \
  static const uint32_t VPERFETTO_UID_(vperfetto_cat_) = vp_category(category); \
  static const uint32_t VPERFETTO_UID_(vperfetto_name_) =                       \
      vp_intern(name, std::strlen(name));                                       \
  ::vperfetto::ScopedSlice VPERFETTO_UID_(vperfetto_scope_)(                    \
      VPERFETTO_UID_(vperfetto_cat_), VPERFETTO_UID_(vperfetto_name_))

#endif  // VPERFETTO_VPERFETTO_HPP_
