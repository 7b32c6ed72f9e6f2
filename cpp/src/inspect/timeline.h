// The timeline model of a trace (what vperfetto.timeline draws), built in the
// streaming pass that inspect makes: tracks (process, thread, custom,
// counter, and from system traces per-CPU scheduling, CPU frequency and
// process memory), their slices, instants and counter points, on the trace
// clock as trace_processor resolves it (clocks.h), with guest and host told
// apart. At most `max_slices` slices are kept (the longest) and each counter
// keeps about `max_counter_points` points.
#ifndef VPERFETTO_INSPECT_TIMELINE_H_
#define VPERFETTO_INSPECT_TIMELINE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace vpinspect {

struct TimelineOptions {
  uint64_t max_slices = 50000;
  uint64_t max_counter_points = 20000;
  // Also keep the int debug annotations of instant events (instant_args).
  bool instant_args = false;
};

class Timeline {
 public:
  explicit Timeline(const TimelineOptions& options);
  ~Timeline();
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;

  // Every top-level packet, in file order.
  void Packet(const uint8_t* data, size_t size);
  // The input stopped inside a packet, or went on with bytes that are no trace.
  void SetTruncated() { truncated_ = true; }
  uint64_t packets() const;
  // Packets that did not decode (skipped; the model says it is truncated).
  uint64_t damaged() const;

  // The model as two JSON documents: `tracks` (an object: times, totals, the
  // slice-name table and the tracks in display order) and `rows` (an array:
  // per track, [slices, counter points] with times relative to start_ns and
  // slice names as indices into the table). Neither holds '<', '>' or '&', so
  // both can go into an HTML <script> as they are.
  void Finish(std::string* tracks, std::string* rows);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  bool truncated_ = false;
};

}  // namespace vpinspect

#endif  // VPERFETTO_INSPECT_TIMELINE_H_
