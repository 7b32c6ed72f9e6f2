#include "inspect/clocks.h"

#include <algorithm>

#include "merge/byte_buffer.h"
#include "vpsdk/field_numbers.h"

namespace vpinspect {

namespace {
bool IsScoped(uint32_t c) { return c >= 64 && c < 128; }
}  // namespace

std::vector<ClockValue> ReadSnapshot(const uint8_t* data, size_t size, uint32_t* primary) {
  namespace CS = vpsdk::pf::ClockSnapshot;
  std::vector<ClockValue> out;
  vpmerge::ProtoDecoder d(data, size);
  vpmerge::Field g;
  while (d.Next(&g)) {
    if (g.id == CS::kPrimaryTraceClock && g.type == vpmerge::proto::kVarint) {
      *primary = static_cast<uint32_t>(g.int_value);
      continue;
    }
    if (g.id != CS::kClocks || g.type != vpmerge::proto::kLengthDelimited) continue;
    ClockValue c{0, 0, 1, false};
    vpmerge::ProtoDecoder e(g.data, g.size);
    vpmerge::Field h;
    while (e.Next(&h)) {
      if (h.id == CS::Clock::kClockId) c.clock = static_cast<uint32_t>(h.int_value);
      else if (h.id == CS::Clock::kTimestamp) c.value = h.int_value;
      else if (h.id == CS::Clock::kIsIncremental) c.incremental = h.int_value != 0;
      else if (h.id == CS::Clock::kUnitMultiplierNs) c.unit_ns = h.int_value ? h.int_value : 1;
    }
    out.push_back(c);
  }
  return out;
}

std::vector<std::vector<ClockValue>> ReadRemoteSnapshots(const uint8_t* data, size_t size) {
  std::vector<std::vector<ClockValue>> out;
  vpmerge::ProtoDecoder e(data, size);
  vpmerge::Field h;
  uint32_t unused = 0;
  while (e.Next(&h)) {
    if (h.id != 1 || h.type != vpmerge::proto::kLengthDelimited) continue;  // synced_clocks
    vpmerge::ProtoDecoder c(h.data, h.size);
    vpmerge::Field k;
    while (c.Next(&k))
      if (k.id == 2 && k.type == vpmerge::proto::kLengthDelimited)  // client_clocks
        out.push_back(ReadSnapshot(k.data, k.size, &unused));
  }
  return out;
}

ClockGraph::Machine* ClockGraph::Get(uint32_t machine) { return &machines_[machine]; }

void ClockGraph::AddSnapshot(uint32_t machine, const std::vector<ClockValue>& clocks) {
  Machine* m = Get(machine);
  for (const ClockValue& a : clocks) {
    if (IsScoped(a.clock)) continue;
    for (const ClockValue& b : clocks) {
      if (IsScoped(b.clock) || b.clock == a.clock) continue;
      Points& p = m->edges[a.clock][b.clock];
      uint64_t from = a.value * a.unit_ns, to = b.value * b.unit_ns;
      if (!p.empty() && from < p.back().first && m->sorted) {
        m->sorted = false;
        unsorted_.push_back(m);
      }
      p.emplace_back(from, to);
    }
  }
}

bool ClockGraph::Convert(const Points& p, uint64_t t, uint64_t* out) {
  if (p.empty()) return false;
  auto it = std::upper_bound(p.begin(), p.end(), t,
                             [](uint64_t v, const std::pair<uint64_t, uint64_t>& e) {
                               return v < e.first;
                             });
  const auto& e = it == p.begin() ? p.front() : *(it - 1);
  *out = t - e.first + e.second;
  return true;
}

Conversion ClockGraph::ToTraceTime(uint32_t machine, uint32_t clock, uint64_t t,
                                   int64_t* out) const {
  for (Machine* m : unsorted_) {
    for (auto& from : m->edges)
      for (auto& to : from.second)
        std::stable_sort(to.second.begin(), to.second.end(),
                         [](const std::pair<uint64_t, uint64_t>& a,
                            const std::pair<uint64_t, uint64_t>& b) { return a.first < b.first; });
    m->sorted = true;
  }
  unsorted_.clear();
  // A remote machine's BOOTTIME is tied to the trace time by identity (without
  // a remote_clock_sync): its other clocks go through its BOOTTIME.
  const uint32_t target = machine ? 6u : trace_clock_;
  if (clock == target) {
    *out = static_cast<int64_t>(t);
    return Conversion::kOk;
  }
  auto mit = machines_.find(machine);
  if (mit == machines_.end()) return Conversion::kUnknownClock;
  const auto& edges = mit->second.edges;
  auto from = edges.find(clock);
  if (from == edges.end()) return Conversion::kUnknownClock;
  uint64_t v;
  auto direct = from->second.find(target);
  if (direct != from->second.end() && Convert(direct->second, t, &v)) {
    *out = static_cast<int64_t>(v);
    return Conversion::kOk;
  }
  for (const auto& hop : from->second) {  // one intermediate clock
    auto next = edges.find(hop.first);
    if (next == edges.end()) continue;
    auto to = next->second.find(target);
    uint64_t mid;
    if (to != next->second.end() && Convert(hop.second, t, &mid) && Convert(to->second, mid, &v)) {
      *out = static_cast<int64_t>(v);
      return Conversion::kOk;
    }
  }
  return Conversion::kNoPath;
}

const char* SnapshotValidator::Check(uint32_t machine, uint32_t seq,
                                     const std::vector<ClockValue>& clocks, uint32_t trace_clock) {
  std::vector<uint64_t> ids;
  for (const ClockValue& c : clocks)
    ids.push_back(IsScoped(c.clock) ? (static_cast<uint64_t>(seq) + 1) << 32 | c.clock : c.clock);
  uint64_t trace_value = 0;
  bool has_trace = false;
  for (const ClockValue& c : clocks) {
    if (IsScoped(c.clock)) continue;  // its sequence's own domain
    if (std::count(ids.begin(), ids.end(), c.clock) > 1) return "a clock twice in one snapshot";
    auto d = domains_.find({machine, c.clock});
    if (d == domains_.end()) {
      if (c.incremental) return "an incremental global clock";
    } else if (d->second.unit_ns != c.unit_ns || d->second.incremental != c.incremental) {
      return "a clock's unit or encoding changed";
    }
    if (machine == 0 && c.clock == trace_clock) {
      if (c.unit_ns != 1) return "the trace clock in units other than nanoseconds";
      trace_value = c.value, has_trace = true;
    }
  }
  auto key = std::make_pair(machine, ids);
  if (has_trace) {
    auto l = last_.find(key);
    if (l != last_.end() && trace_value < l->second) return "the trace clock going back";
    last_[key] = trace_value;
  }
  for (const ClockValue& c : clocks)
    if (!IsScoped(c.clock)) domains_.emplace(std::make_pair(machine, c.clock), Domain{c.unit_ns, c.incremental});
  return nullptr;
}

void SequenceClocks::Define(const std::vector<ClockValue>& snapshot) {
  const ClockValue* global = nullptr;
  for (const ClockValue& c : snapshot)
    if (!IsScoped(c.clock)) {
      global = &c;
      break;
    }
  if (!global) return;
  for (const ClockValue& c : snapshot) {
    if (!IsScoped(c.clock)) continue;
    Scoped& s = clocks_[c.clock];
    s.unit_ns = c.unit_ns ? c.unit_ns : 1;
    s.incremental = c.incremental;
    s.base = s.last = c.value * s.unit_ns;
    s.global = global->clock;
    s.global_base = global->value * global->unit_ns;
  }
}

bool SequenceClocks::Resolve(uint32_t clock, uint64_t t, uint32_t* global, uint64_t* value) {
  auto it = clocks_.find(clock);
  if (it == clocks_.end()) return false;
  Scoped& s = it->second;
  uint64_t ns = t * s.unit_ns;
  if (s.incremental) ns = s.last += ns;
  *global = s.global;
  *value = s.global_base + (ns - s.base);
  return true;
}

}  // namespace vpinspect
