#include "align.h"

#include <algorithm>
#include <cmath>
#include <climits>
#include <cstdint>
#include <vector>

namespace vpmerge {
namespace {

struct TscSample {
  uint64_t boot;
  uint64_t tsc;
};

std::vector<TscSample> MarkerSamples(const InputSummary& s) {
  std::vector<TscSample> out;
  for (const SyncMarker& m : s.markers)
    if (m.has_tsc && m.tsc) out.push_back({m.has_boottime ? m.boottime : m.packet_ts, m.tsc});
  return out;
}

std::vector<TscSample> SnapshotSamples(const InputSummary& s) {
  std::vector<TscSample> out;
  for (const Snapshot& snap : s.clocks.snapshots()) {
    bool hb = false, ht = false;
    uint64_t b = 0, t = 0;
    for (auto& c : snap) {
      if (c.first == clk::kBoottime) hb = true, b = c.second;
      if (c.first == clk::kTsc) ht = true, t = c.second;
    }
    if (hb && ht && t) out.push_back({b, t});
  }
  return out;
}

// boot = boot0 + (tsc - tsc0) * ns_per_tick, fitted by least squares.
struct TscFit {
  bool ok = false;
  long double tsc0 = 0, boot0 = 0, ns_per_tick = 0;
  long double At(long double tsc) const { return boot0 + (tsc - tsc0) * ns_per_tick; }
};

TscFit Fit(const std::vector<TscSample>& v) {
  TscFit f;
  if (v.size() < 2) return f;
  long double mt = 0, mb = 0;
  for (auto& s : v) mt += s.tsc, mb += s.boot;
  mt /= v.size();
  mb /= v.size();
  long double sxx = 0, sxy = 0;
  for (auto& s : v) {
    long double dx = s.tsc - mt, dy = s.boot - mb;
    sxx += dx * dx;
    sxy += dx * dy;
  }
  if (sxx <= 0) return f;
  f.ok = true;
  f.tsc0 = mt;
  f.boot0 = mb;
  f.ns_per_tick = sxy / sxx;
  return f;
}

// Rounds to the nearest int64, saturating: llround's result is unspecified
// out of range (LLONG_MIN on x86-64, which then overflowed the spread).
int64_t RoundToInt64(long double v) {
  double x = static_cast<double>(v);
  if (std::isnan(x)) return 0;
  if (x >= 9223372036854775808.0) return INT64_MAX;
  if (x < -9223372036854775808.0) return INT64_MIN;
  return std::llround(x);
}

bool TscAlign(const std::vector<TscSample>& g, const std::vector<TscSample>& h,
              int64_t tsc_offset, Alignment* a) {
  if (g.empty() || h.empty()) return false;
  TscFit hf = Fit(h);
  if (!hf.ok) {
    // One host sample: borrow the guest's tick rate (the TSC is shared).
    TscFit gf = Fit(g);
    if (!gf.ok) return false;
    hf.ok = true;
    hf.tsc0 = h[0].tsc;
    hf.boot0 = h[0].boot;
    hf.ns_per_tick = gf.ns_per_tick;
  }
  if (hf.ns_per_tick <= 0) return false;
  std::vector<int64_t> d;
  for (auto& s : g) {
    long double host_tsc = static_cast<long double>(s.tsc) - tsc_offset;
    d.push_back(RoundToInt64(static_cast<long double>(s.boot) - hf.At(host_tsc)));
  }
  std::sort(d.begin(), d.end());
  a->offset_ns = d[d.size() / 2];
  // In unsigned arithmetic (exact, as d is sorted), saturated: no signed overflow.
  a->spread_ns = static_cast<int64_t>(std::min<uint64_t>(
      static_cast<uint64_t>(d.back()) - static_cast<uint64_t>(d.front()), INT64_MAX));
  a->samples = static_cast<int>(d.size());
  a->detail = "TSC rate " + std::to_string(static_cast<double>(1.0L / hf.ns_per_tick)) +
              " ticks/ns from " + std::to_string(h.size()) + " host samples";
  return true;
}

bool RealtimeOffset(const InputSummary& s, int64_t* boot_minus_real) {
  for (const Snapshot& snap : s.clocks.snapshots()) {
    bool hb = false, hr = false;
    uint64_t b = 0, r = 0;
    for (auto& c : snap) {
      if (c.first == clk::kBoottime) hb = true, b = c.second;
      if (c.first == clk::kRealtime) hr = true, r = c.second;
    }
    if (hb && hr) {
      *boot_minus_real = static_cast<int64_t>(b - r);
      return true;
    }
  }
  return false;
}

struct RoundEst {
  double guest_mid;
  int64_t offset;
  int64_t delay;
  int64_t bound = 0;  // of a group: how far the true offset can be from `offset`
};

// Offset of a group of rounds: the median over its lowest-delay quarter.
// Each round puts the true offset within half its round trip of its own
// estimate; all of them at once, within the intersection of those ranges,
// so the median is at most its distance to the intersection's far end off
// (the best round's half round trip alone understated it: the median is
// not that round's estimate). Rounds that contradict each other (no
// intersection) leave the widest of the kept rounds' ranges around it.
int64_t SatAdd(int64_t a, int64_t b) {  // (rounds come from any input: no overflow)
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}
int64_t SatSub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? INT64_MAX : INT64_MIN;
  return r;
}

bool EstimateGroup(std::vector<RoundEst> v, RoundEst* out) {
  std::vector<RoundEst> good;
  for (auto& r : v)
    if (r.delay >= 0) good.push_back(r);
  if (good.empty()) return false;
  auto half = [](const RoundEst& r) { return r.delay / 2 + r.delay % 2; };  // delay >= 0
  int64_t lo = INT64_MIN, hi = INT64_MAX;
  for (auto& r : good) {
    lo = std::max(lo, SatSub(r.offset, half(r)));
    hi = std::min(hi, SatAdd(r.offset, half(r)));
  }
  std::sort(good.begin(), good.end(), [](const RoundEst& a, const RoundEst& b) { return a.delay < b.delay; });
  size_t keep = std::max<size_t>(3, good.size() / 4);
  if (keep > good.size()) keep = good.size();
  good.resize(keep);
  std::vector<int64_t> offs;
  std::vector<double> mids;
  for (auto& r : good) offs.push_back(r.offset), mids.push_back(r.guest_mid);
  std::sort(offs.begin(), offs.end());
  std::sort(mids.begin(), mids.end());
  out->offset = offs[offs.size() / 2];
  out->guest_mid = mids[mids.size() / 2];
  out->delay = good[0].delay;
  int64_t m = out->offset;
  if (lo <= hi) {
    out->bound = std::max(SatSub(m, lo), SatSub(hi, m));
  } else {
    out->bound = 0;
    for (auto& r : good) {
      int64_t off = r.offset > m ? SatSub(r.offset, m) : SatSub(m, r.offset);
      out->bound = std::max(out->bound, SatAdd(off, half(r)));
    }
  }
  return true;
}

bool LinkAlign(const InputSummary& guest, const InputSummary& host, const std::string& name,
               Alignment* a) {
  std::vector<const LinkRound*> all;
  for (auto& r : guest.link_rounds) all.push_back(&r);
  for (auto& r : host.link_rounds) all.push_back(&r);
  if (all.empty()) return false;
  std::vector<const LinkRound*> mine;
  for (auto* r : all)
    if (r->peer == name) mine.push_back(r);
  if (mine.empty()) {  // the positional form calls its guest "guest": one peer is enough
    for (auto* r : all)
      if (r->peer != all[0]->peer) return false;
    mine = all;
  }
  std::vector<RoundEst> rounds;
  for (auto* r : mine) {
    RoundEst e;
    // guest - host; the unsigned differences wrap like the timestamps do.
    int64_t a1 = static_cast<int64_t>(r->t1 - r->t2), a2 = static_cast<int64_t>(r->t4 - r->t3);
    e.offset = a1 / 2 + a2 / 2 + (a1 % 2 + a2 % 2) / 2;
    e.delay = static_cast<int64_t>((r->t4 - r->t1) - (r->t3 - r->t2));
    e.guest_mid = static_cast<double>(r->t1) / 2 + static_cast<double>(r->t4) / 2;
    rounds.push_back(e);
  }
  std::sort(rounds.begin(), rounds.end(),
            [](const RoundEst& x, const RoundEst& y) { return x.guest_mid < y.guest_mid; });
  // Bursts: rounds less than 0.5 s apart belong together.
  std::vector<RoundEst> points;
  std::vector<RoundEst> cur;
  RoundEst best{0, 0, -1};
  for (size_t i = 0; i <= rounds.size(); i++) {
    if (i == rounds.size() || (!cur.empty() && rounds[i].guest_mid - cur.back().guest_mid > 5e8)) {
      RoundEst p;
      if (EstimateGroup(cur, &p)) {
        points.push_back(p);
        if (best.delay < 0 || p.delay < best.delay) best = p;
      }
      cur.clear();
    }
    if (i < rounds.size()) cur.push_back(rounds[i]);
  }
  if (points.empty()) return false;
  a->method = "link-sync";
  a->offset_ns = best.offset;
  a->samples = static_cast<int>(mine.size());
  // The true offset is within best.bound of the best burst's estimate;
  // with several bursts the offset is interpolated between them, so the
  // claim is the loosest of theirs.
  a->spread_ns = best.bound;
  if (points.size() >= 2) {
    for (auto& p : points) {
      a->points.emplace_back(static_cast<uint64_t>(p.guest_mid), p.offset);
      a->spread_ns = std::max(a->spread_ns, p.bound);
    }
    double dt = points.back().guest_mid - points.front().guest_mid;
    if (dt > 0)
      a->drift_ppm = static_cast<double>(points.back().offset - points.front().offset) / dt * 1e6;
  }
  a->detail = std::to_string(points.size()) + " sync burst(s), best round trip " +
              std::to_string(best.delay) + " ns" +
              (points.size() >= 2 ? ", drift " + std::to_string(a->drift_ppm) + " ppm corrected" : "");
  return true;
}

}  // namespace

bool FirstBoottime(const InputSummary& s, uint64_t* out) {
  if (!s.has_ts) return false;
  if (clk::IsSequenceScoped(s.first_clock)) return false;
  if (s.clocks.Convert(s.first_clock, clk::kBoottime, s.first_ts, out)) return true;
  *out = s.first_ts;  // no snapshot relates its clock: take it as is
  return true;
}

Alignment Align(const InputSummary& guest, const InputSummary& host, const AlignOptions& opt,
                const std::string& guest_name) {
  Alignment a;
  if (opt.has_time_diff) {
    a.method = "time-diff";
    a.offset_ns = opt.time_diff;
    a.detail = "given";
    return a;
  }
  if (opt.has_guest_boot) {
    uint64_t host_start;
    if (FirstBoottime(host, &host_start)) {
      a.method = "guest-boot-time";
      a.offset_ns = static_cast<int64_t>(opt.guest_boot - host_start);
      a.detail = "guest boot time given for the host's first timestamp " + std::to_string(host_start);
      return a;
    }
  }
  if (LinkAlign(guest, host, guest_name, &a)) return a;
  if (TscAlign(MarkerSamples(guest), MarkerSamples(host), opt.guest_tsc_offset, &a)) {
    a.method = "tsc-markers";
    return a;
  }
  auto gs = MarkerSamples(guest), hs = MarkerSamples(host);
  auto gsnap = SnapshotSamples(guest), hsnap = SnapshotSamples(host);
  gs.insert(gs.end(), gsnap.begin(), gsnap.end());
  hs.insert(hs.end(), hsnap.begin(), hsnap.end());
  if (!gsnap.empty() && !hsnap.empty() && TscAlign(gs, hs, opt.guest_tsc_offset, &a)) {
    a.method = "tsc-snapshots";
    return a;
  }
  int64_t g_br, h_br;
  if (RealtimeOffset(guest, &g_br) && RealtimeOffset(host, &h_br)) {
    a.method = "realtime-snapshots";
    a.offset_ns = static_cast<int64_t>(static_cast<uint64_t>(g_br) - static_cast<uint64_t>(h_br));
    a.approximate = true;
    a.detail = "assumes the guest's and the host's CLOCK_REALTIME agree";
    return a;
  }
  uint64_t g0, h0;
  if (FirstBoottime(guest, &g0) && FirstBoottime(host, &h0)) {
    a.method = "start-of-trace";
    a.offset_ns = static_cast<int64_t>(g0 - h0);
    a.approximate = true;
    a.detail = "assumes both traces started at the same instant";
    return a;
  }
  a.method = "none";
  a.approximate = true;
  a.detail = "no timestamps to align";
  return a;
}

}  // namespace vpmerge
