// The timeline model's result: the last conversions and the caps, which track
// belongs to which process and to the guest or the host, the display order,
// and the JSON (timeline.h).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <unordered_set>

#include "inspect/timeline_impl.h"

namespace vpinspect {

using tl::Time;

namespace {

// Valid UTF-8 (each maximal ill-formed subpart becomes U+FFFD, as Python's
// decode(errors="replace") does).
std::string Utf8(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  size_t n = in.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      out += static_cast<char>(c);
      i++;
      continue;
    }
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    size_t j = i + 1, k = 0;
    for (; k < need && j < n; k++, j++) {
      unsigned char b = s[j];
      if (b < (k == 0 ? lo : 0x80) || b > (k == 0 ? hi : 0xBF)) break;
    }
    if (need && k == need) out.append(in, i, j - i);
    else out += "\xEF\xBF\xBD";
    i = need ? j : i + 1;
  }
  return out;
}

// "NAME: rest" with NAME of 1 to 64 characters: the merge's guest prefix.
bool GuestPrefix(const std::string& s, std::string* prefix) {
  size_t chars = 0;
  for (size_t p = 0; p + 1 < s.size(); p++) {
    if ((static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) continue;  // inside a character
    if (chars >= 1 && s[p] == ':' && s[p + 1] == ' ') {
      *prefix = s.substr(0, p);
      return true;
    }
    if (++chars > 64) return false;
  }
  return false;
}

class Writer {
 public:
  std::string s;
  void Raw(const char* v) { s += v; }
  void Char(char c) { s += c; }
  void Int(int64_t v) { s += std::to_string(v); }
  void UInt(uint64_t v) { s += std::to_string(v); }
  void Null() { s += "null"; }
  void Bool(bool v) { s += v ? "true" : "false"; }
  void Key(const char* k) {
    s += '"';
    s += k;
    s += "\":";
  }
  // Valid UTF-8 in; no '<', '>' or '&' out (the text goes into HTML <script>).
  void Str(const std::string& v) {
    s += '"';
    for (unsigned char c : v) {
      if (c == '"' || c == '\\') s += '\\', s += static_cast<char>(c);
      else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        s += buf;
      } else s += static_cast<char>(c);
    }
    s += '"';
  }
  void Uuid(const tl::Track& t) {
    if (t.synthetic) s += '-';
    s += std::to_string(t.uuid);
  }
  // The shortest text that reads back as the same double, always a float.
  void Double(double d) {
    if (d == std::trunc(d) && std::fabs(d) < 9007199254740992.0) {  // integral: exact as an integer
      s += std::to_string(static_cast<int64_t>(d));
      s += ".0";
      return;
    }
    char buf[40];
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
    *std::to_chars(buf, buf + sizeof buf - 1, d).ptr = 0;
#else
    for (int prec = 15; prec <= 17; prec++) {
      std::snprintf(buf, sizeof buf, "%.*g", prec, d);
      if (std::strtod(buf, nullptr) == d) break;
    }
#endif
    s += buf;
    if (!std::strpbrk(buf, ".eEn")) s += ".0";
  }
  void Value(const tl::Value& v) {
    if (v.is_int) Int(v.i);
    else Double(v.d);
  }
};

struct Row {
  uint32_t track;
  bool has_pid = false;
  int64_t pid = 0;
  uint32_t machine = 0;
  std::string name, process, guest_name;
  bool has_process = false, guest = false;
  int order = 4;
};

int KindOrder(tl::Kind k) {
  switch (k) {
    case tl::kProcess: return 0;
    case tl::kThread: return 1;
    case tl::kCustom: case tl::kNone: return 2;
    case tl::kCounter: return 3;
    default: return 4;
  }
}

const char* KindName(tl::Kind k) {
  switch (k) {
    case tl::kProcess: return "process";
    case tl::kThread: return "thread";
    case tl::kCounter: return "counter";
    case tl::kCpu: return "cpu";
    default: return "custom";
  }
}

}  // namespace

void Timeline::Impl::Finish(bool truncated, std::string* tracks_json, std::string* rows_json) {
  // Timestamps on clocks the trace related to its clock only later.
  for (tl::PendingTime& p : pending) {
    int64_t t;
    p.resolved = clocks.ToTraceTime(p.machine, p.clock, p.value, &t) == Conversion::kOk && t >= 0 ? t : -1;
  }
  for (auto& s : pending_seen) {
    int64_t t;
    if (Resolve(s.first, &t)) Seen(t, s.second);
  }
  for (const tl::PendingSlice& p : pending_slices) {
    int64_t a, b = 0;
    if (!Resolve(p.ts, &a) || (p.end != INT64_MIN && !Resolve(p.end, &b))) continue;
    AddSlice(p.track, a, p.end != INT64_MIN ? std::max<int64_t>(0, b - a) : p.dur, p.name, p.depth);
  }
  AtraceSlices();
  const int64_t last = has_start ? end : 0;
  for (uint32_t i = 0; i < tracks.size(); i++) {  // slices still open at the end of the trace
    while (!tracks[i].stack.empty()) {
      tl::Open o = tracks[i].stack.back();
      tracks[i].stack.pop_back();
      int64_t a;
      if (Resolve(o.ts, &a))
        AddSlice(i, a, std::max<int64_t>(0, last - a), o.name, static_cast<uint32_t>(tracks[i].stack.size()));
    }
  }
  if (slices_kept > max_slices) Prune();
  for (tl::Track& t : tracks) {
    auto& pts = t.counter;
    pts.erase(std::remove_if(pts.begin(), pts.end(), [&](tl::Point& p) {
                int64_t v;
                if (!Resolve(p.ts, &v)) return true;
                p.ts = v;
                return false;
              }),
              pts.end());
  }

  // Threads that only system data describes: their names and processes.
  for (tl::Track& t : tracks) {
    if (!t.synthetic || t.kind != tl::kThread) continue;
    auto n = thread_names.find({t.machine, t.tid});
    if (n != thread_names.end()) t.tname = n->second, t.has_tname = true;
    auto p = thread_pid.find({t.machine, t.tid});
    if (!t.has_pid && p != thread_pid.end()) t.pid = p->second, t.has_pid = true;
  }

  // The process (pid, machine) a track belongs to, following parents.
  auto owner = [&](const tl::Track& t, int64_t* pid, uint32_t* machine) {
    if (t.synthetic) {
      *machine = t.machine;
      *pid = t.pid;
      return t.has_pid && (t.owns || t.kind == tl::kThread || t.kind == tl::kProcess);
    }
    std::unordered_set<uint64_t> seen;
    const tl::Track* cur = &t;
    while (cur && seen.insert(cur->uuid).second) {
      if ((cur->kind == tl::kThread || cur->kind == tl::kProcess) && cur->has_pid) {
        *pid = cur->pid;
        *machine = cur->machine;
        return true;
      }
      if (!cur->has_parent) break;
      auto it = by_uuid.find(cur->parent);
      cur = it == by_uuid.end() ? nullptr : &tracks[it->second];
    }
    *machine = t.machine;
    return false;
  };
  std::map<tl::MachinePid, uint32_t> process_track;
  for (uint32_t i = 0; i < tracks.size(); i++)
    if (tracks[i].kind == tl::kProcess && tracks[i].has_pid)
      process_track.emplace(std::make_pair(tracks[i].machine, tracks[i].pid), i);
  // System data's processes get a row of their own to group under.
  const size_t described = tracks.size();
  for (uint32_t i = 0; i < described; i++) {
    int64_t pid;
    uint32_t m;
    if (!tracks[i].synthetic || (tracks[i].slices.empty() && tracks[i].counter.empty()) ||
        !owner(tracks[i], &pid, &m) || process_track.count({m, pid}))
      continue;
    uint32_t pi = SyntheticTrack(6, m, pid, std::string());
    tl::Track& p = tracks[pi];
    p.kind = tl::kProcess, p.pid = pid, p.has_pid = true;
    process_track.emplace(std::make_pair(m, pid), pi);
  }

  std::vector<char> keep(tracks.size(), 0);
  for (uint32_t i = 0; i < tracks.size(); i++) {
    const tl::Track& t = tracks[i];
    if (t.slices.empty() && t.counter.empty()) continue;
    keep[i] = 1;
    const tl::Track* cur = &t;
    for (int hops = 0; cur->has_parent && hops < 64 && !cur->synthetic; hops++) {
      auto it = by_uuid.find(cur->parent);
      if (it == by_uuid.end()) break;
      keep[it->second] = 1;
      cur = &tracks[it->second];
    }
    int64_t pid;
    uint32_t m;
    if (owner(t, &pid, &m)) {
      auto p = process_track.find({m, pid});
      if (p != process_track.end()) keep[p->second] = 1;
    }
  }

  // A process's name: from its track descriptor, else (`tree`) its process tree.
  auto pname_of = [&](uint32_t m, int64_t pid, std::string* out, bool tree) {
    auto it = process_names.find({m, pid});
    if (it == process_names.end()) {
      if (!tree || (it = tree_names.find({m, pid})) == tree_names.end()) return false;
    }
    *out = Utf8(it->second);
    return true;
  };
  bool prefixed = false;
  for (const auto* names_by_pid : {&process_names, &tree_names})
    for (const auto& kv : *names_by_pid) {
      std::string n = Utf8(kv.second), unused;
      if (!n.empty() && (kv.first.first || kv.first.second >= tl::kPidStep || n.compare(0, 7, "guest: ") == 0) &&
          GuestPrefix(n, &unused))
        prefixed = true;
    }
  // The merge names a guest's processes "GUEST: name" (on a process it moved:
  // pids +1,000,000 or a machine id, or on the main guest of the positional
  // form); machine ids mark guests where no process says which guest it is.
  auto guest_of = [&](bool has_pid, int64_t pid, uint32_t m, const std::string* pname, std::string* g) {
    std::string prefix;
    if (pname && GuestPrefix(*pname, &prefix) && (prefix == "guest" || m || (has_pid && pid >= tl::kPidStep))) {
      *g = prefix;
      return true;
    }
    if (m && !prefixed) {
      *g = "machine " + std::to_string(m);
      return true;
    }
    return false;
  };

  // The guest of each range of a million pids the merge moved a guest to
  // (from its processes that say which guest they are): a thread whose
  // process is not known goes with the others of its range.
  std::map<std::pair<uint32_t, int64_t>, std::string> ranges;
  for (const auto* names_by_pid : {&process_names, &tree_names})
    for (const auto& kv : *names_by_pid) {
      std::string n = Utf8(kv.second), g, prefix;
      if (!GuestPrefix(n, &prefix) || !guest_of(true, kv.first.second, kv.first.first, &n, &g)) continue;
      auto key = std::make_pair(kv.first.first, kv.first.second / tl::kPidStep);
      auto it = ranges.emplace(key, g).first;
      if (it->second != g) it->second.clear();  // two guests in one range: neither
    }
  // A CPU is on the side whose threads it ran most.
  std::map<std::pair<uint32_t, int64_t>, std::pair<bool, std::string>> cpu_side;
  for (const tl::Track& t : tracks) {
    if (t.kind != tl::kCpu) continue;
    std::map<std::pair<bool, std::string>, uint64_t> votes;
    for (auto& kv : t.runs) {
      auto tp = thread_pid.find({t.machine, kv.first});
      int64_t pid = tp != thread_pid.end() ? tp->second : kv.first;
      std::string pname, g;
      if (pname_of(t.machine, pid, &pname, true)) {
        bool guest = guest_of(true, pid, t.machine, &pname, &g);
        votes[{guest, g}] += kv.second;
      } else {
        auto r = ranges.find({t.machine, pid / tl::kPidStep});
        if (r != ranges.end() && !r->second.empty()) votes[{true, r->second}] += kv.second;
      }
    }
    std::pair<bool, std::string> side;
    uint64_t best = 0;
    for (auto& v : votes)
      if (v.second > best) best = v.second, side = v.first;
    if (!best && t.machine) side = {true, "machine " + std::to_string(t.machine)};
    cpu_side[{t.machine, t.cpu}] = side;
  }

  std::vector<Row> rows;
  for (uint32_t i = 0; i < tracks.size(); i++) {
    const tl::Track& t = tracks[i];
    if (!keep[i] || t.name == "vperfetto merge") continue;  // the merge's record: not a row
    Row r;
    r.track = i;
    r.has_pid = owner(t, &r.pid, &r.machine);
    r.has_process = r.has_pid && pname_of(r.machine, r.pid, &r.process, false);
    if (!r.has_process && t.kind == tl::kProcess && t.has_pname) r.process = Utf8(t.pname), r.has_process = true;
    if (!r.has_process && r.has_pid) r.has_process = pname_of(r.machine, r.pid, &r.process, true);
    if (t.synthetic && t.cpu >= 0) {  // a CPU's row or counter: its CPU's side
      auto s = cpu_side.find({t.machine, t.cpu});
      if (s != cpu_side.end()) r.guest = s->second.first, r.guest_name = s->second.second;
      else if (t.machine) r.guest = true, r.guest_name = "machine " + std::to_string(t.machine);
    } else {
      r.guest = guest_of(r.has_pid, r.pid, r.machine, r.has_process ? &r.process : nullptr, &r.guest_name);
    }
    std::string name = Utf8(t.name);
    if (t.kind == tl::kThread) {
      r.name = !name.empty() ? name : !t.tname.empty() ? Utf8(t.tname)
               : t.has_tid ? "thread " + std::to_string(t.tid) : "thread";
    } else if (t.kind == tl::kProcess) {
      r.name = !name.empty() ? name : !r.process.empty() ? r.process
               : r.has_pid ? "process " + std::to_string(r.pid) : "process";
    } else if (!name.empty()) {
      r.name = name;
    } else if (!t.slices.empty()) {  // an unnamed async track: after what runs on it first
      auto first = std::min_element(t.slices.begin(), t.slices.end(),
                                    [](const tl::Slice& a, const tl::Slice& b) { return a.ts < b.ts; });
      r.name = Utf8(names[first->name]);
    } else {
      r.name = "track " + std::string(t.synthetic ? "-" : "") + std::to_string(t.uuid);
    }
    r.order = KindOrder(t.kind);
    rows.push_back(std::move(r));
  }
  // Guest after host (each guest together), CPUs first, then by process
  // (its own row, its main thread, other threads, custom tracks, counters).
  auto key = [&](const Row& r) {
    const tl::Track& t = tracks[r.track];
    bool cpuish = t.synthetic && t.cpu >= 0;
    bool has_tid = t.kind == tl::kThread && t.has_tid;
    std::string uuid = (t.synthetic ? "-" : "") + std::to_string(t.uuid);
    return std::make_tuple(r.guest, r.guest_name, !cpuish, cpuish ? t.cpu : 0, !r.has_pid,
                           r.has_pid ? r.pid : 0, cpuish ? (t.kind == tl::kCpu ? 0 : 1) : r.order,
                           has_tid && t.tid == r.pid && r.has_pid ? 0 : 1, r.name,
                           has_tid ? t.tid : 0, uuid);
  };
  std::vector<decltype(key(rows[0]))> keys;
  keys.reserve(rows.size());
  for (const Row& r : rows) keys.push_back(key(r));
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });

  // Whose clock the times are on: the merge moves the other side's pids up
  // by 1,000,000 (or tags it with a machine id); the side that kept its pids
  // (machine 0) is the main timeline.
  const char* timeline = "host";
  bool any_guest = false, any_machine = false, host_has_0 = false, guest_has_0 = false, any_host = false;
  int64_t min_guest = INT64_MAX, min_host = INT64_MAX;
  bool has_guest_pid = false, has_host_pid = false;
  for (const Row& r : rows) {
    any_guest |= r.guest;
    any_machine |= r.machine != 0;
    if (r.guest) guest_has_0 |= r.machine == 0;
    else host_has_0 |= r.machine == 0, any_host = true;
    if (r.has_pid && r.guest) min_guest = std::min(min_guest, r.pid), has_guest_pid = true;
    if (r.has_pid && !r.guest) min_host = std::min(min_host, r.pid), has_host_pid = true;
  }
  if (!any_guest) timeline = "trace";
  else if (any_machine) timeline = any_host && !host_has_0 && guest_has_0 ? "guest" : "host";
  else if (!has_host_pid) timeline = "guest";
  else if (has_guest_pid && min_guest >= tl::kPidStep && min_host < tl::kPidStep) timeline = "host";
  else if (has_guest_pid && min_host >= tl::kPidStep && min_guest < tl::kPidStep) timeline = "guest";

  // The JSON: slice names as indices into a table of those kept, times from start.
  const int64_t first = has_start ? start : 0;
  std::vector<int64_t> remap(names.size(), -1);
  std::vector<uint32_t> table;
  Writer rw;
  rw.Char('[');
  uint64_t kept = 0;
  for (size_t k = 0; k < order.size(); k++) {
    tl::Track& t = tracks[rows[order[k]].track];
    std::stable_sort(t.slices.begin(), t.slices.end(), [](const tl::Slice& a, const tl::Slice& b) {
      return a.ts != b.ts ? a.ts < b.ts : a.depth < b.depth;
    });
    std::stable_sort(t.counter.begin(), t.counter.end(),
                     [](const tl::Point& a, const tl::Point& b) { return a.ts < b.ts; });
    rw.Raw(k ? ",[[" : "[[");
    for (size_t j = 0; j < t.slices.size(); j++) {
      const tl::Slice& s = t.slices[j];
      if (remap[s.name] < 0) remap[s.name] = static_cast<int64_t>(table.size()), table.push_back(s.name);
      rw.Raw(j ? ",[" : "[");
      rw.Int(s.ts - first), rw.Char(','), rw.Int(s.dur), rw.Char(',');
      rw.Int(remap[s.name]), rw.Char(','), rw.Int(s.depth), rw.Char(']');
    }
    kept += t.slices.size();
    rw.Raw("],[");
    for (size_t j = 0; j < t.counter.size(); j++) {
      rw.Raw(j ? ",[" : "[");
      rw.Int(t.counter[j].ts - first), rw.Char(','), rw.Value(t.counter[j].v), rw.Char(']');
    }
    rw.Raw("]]");
  }
  rw.Char(']');
  rows_json->swap(rw.s);

  Writer w;
  w.Raw("{");
  w.Key("start_ns"), w.Int(first), w.Char(',');
  w.Key("end_ns"), w.Int(std::max(has_start ? end : 0, first)), w.Char(',');
  w.Key("timeline"), w.Str(timeline), w.Char(',');
  w.Key("slices_total"), w.Int(static_cast<int64_t>(slices_total)), w.Char(',');
  w.Key("slices_kept"), w.Int(static_cast<int64_t>(kept)), w.Char(',');
  w.Key("packets"), w.Int(static_cast<int64_t>(packets)), w.Char(',');
  w.Key("truncated"), w.Bool(truncated || damaged > 0), w.Char(',');
  w.Key("names"), w.Char('[');
  for (size_t j = 0; j < table.size(); j++) {
    if (j) w.Char(',');
    w.Str(Utf8(names[table[j]]));
  }
  w.Raw("],");
  w.Key("tracks"), w.Char('[');
  for (size_t k = 0; k < order.size(); k++) {
    const Row& r = rows[order[k]];
    const tl::Track& t = tracks[r.track];
    w.Raw(k ? ",{" : "{");
    w.Key("uuid"), w.Uuid(t), w.Char(',');
    w.Key("name"), w.Str(r.name), w.Char(',');
    w.Key("process");
    if (r.has_process) w.Str(r.process);
    else w.Null();
    w.Char(',');
    w.Key("pid");
    if (r.has_pid) w.Int(r.pid);
    else w.Null();
    w.Char(',');
    w.Key("tid");
    if (t.kind == tl::kThread && t.has_tid) w.Int(t.tid);
    else w.Null();
    w.Char(',');
    w.Key("kind"), w.Str(KindName(t.kind)), w.Char(',');
    w.Key("guest"), w.Bool(r.guest), w.Char(',');
    w.Key("guest_name");
    if (r.guest) w.Str(r.guest_name);
    else w.Null();
    w.Char(',');
    w.Key("parent_uuid");
    if (t.has_parent && !t.synthetic) w.UInt(t.parent);
    else w.Null();
    w.Char(',');
    w.Key("machine"), w.Int(r.machine), w.Char(',');
    w.Key("cpu");
    if (t.cpu >= 0) w.Int(t.cpu);
    else w.Null();
    w.Char('}');
  }
  w.Char(']');
  if (want_instant_args) {  // [[ts, name, {key: int}], ...] in the order the trace has them
    w.Raw(",");
    w.Key("instant_args"), w.Char('[');
    bool any = false;
    for (const tl::InstantArgs& ia : instant_args) {
      int64_t t;
      if (!Resolve(ia.ts, &t)) continue;
      w.Raw(any ? ",[" : "[");
      any = true;
      w.Int(t), w.Char(','), w.Str(Utf8(names[ia.name])), w.Raw(",{");
      for (size_t k = 0; k < ia.args.size(); k++) {
        if (k) w.Char(',');
        w.Str(Utf8(ia.args[k].first)), w.Char(':'), w.Int(ia.args[k].second);
      }
      w.Raw("}]");
    }
    w.Char(']');
  }
  w.Char('}');
  tracks_json->swap(w.s);
}

}  // namespace vpinspect
