// libFuzzer target for the offline merge (cpp/src/merge/): the streaming
// reader, the first pass (scan), the alignment and the packet rewriter.
//
// The input is written to a file as a "guest" trace and merged, through
// vpmerge::Merge, with a host trace into a temporary output, in several modes:
// host-into-guest and guest-into-host always, then one of add-traces,
// guest-into-host with machine ids, a given alignment (time difference or
// guest boot time, extreme values included) or a dry run, picked by a hash of
// the input (so a crash reproduces).
// When the input holds the separator kSplit, the bytes before it are the guest
// and the bytes after it the host; otherwise the host is a fixed valid trace
// built below (clock snapshots, sync markers, track descriptors and events,
// ftrace, process tree and stats, android log, perf samples, compressed
// packets: every kind of packet the rewriter touches).
//
// Every input must end in OK or a clean error Status; a crash, a sanitizer
// report, a hang or unbounded memory is a bug. The merge's own limits (256 MiB
// packets, 512 MiB inflated compressed_packets) are far beyond what a small
// input should be allowed to cost in a fuzzing iteration, so inputs that
// would inflate (gzip or compressed_packets) to more than kMaxInflated bytes
// are skipped here; the limits themselves are tested by
// tests/test_fuzz_regressions.py.
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "byte_buffer.h"
#include "merge.h"
#include "trace_io.h"

namespace {

using vpmerge::ByteBuffer;
using vpmerge::MergeMode;
using vpmerge::MergeOptions;

constexpr char kSplit[] = "VPSPLIT!";  // guest bytes, kSplit, host bytes
constexpr size_t kSplitLen = sizeof(kSplit) - 1;
constexpr size_t kMaxInflated = 16u << 20;

std::string g_dir, g_guest, g_host, g_host2, g_out;

// --- a fixed, valid host trace ----------------------------------------------------------

void Packet(ByteBuffer* trace, const ByteBuffer& body) { trace->BytesField(1, body.data(), body.size()); }

void Str(ByteBuffer* b, uint32_t field, const char* s) { b->BytesField(field, s, std::strlen(s)); }

void Clock(ByteBuffer* b, uint32_t id, uint64_t ts) {
  size_t n = b->BeginNested(1);
  b->VarintField(1, id);
  b->VarintField(2, ts);
  b->EndNested(n);
}

void SnapshotPacket(ByteBuffer* t, uint64_t boot, uint64_t real, uint64_t mono, uint64_t tsc) {
  ByteBuffer p;
  p.VarintField(8, boot);
  p.VarintField(10, 1);
  size_t n = p.BeginNested(6);
  Clock(&p, 6, boot);
  Clock(&p, 1, real);
  Clock(&p, 3, mono);
  Clock(&p, 9, tsc);
  p.VarintField(2, 6);  // primary_trace_clock
  p.EndNested(n);
  Packet(t, p);
}

void Marker(ByteBuffer* t, uint64_t boot, uint64_t tsc) {
  ByteBuffer p;
  p.VarintField(8, boot);
  p.VarintField(10, 2);
  p.VarintField(13, 2);  // needs incremental state
  size_t n = p.BeginNested(11);
  p.VarintField(9, 3);    // instant
  p.VarintField(10, 1);   // name_iid -> guest_clock_sync
  p.VarintField(11, 1001);
  size_t a = p.BeginNested(4);
  p.VarintField(1, 1);  // clock_sync_boottime
  p.VarintField(3, boot);
  p.EndNested(a);
  a = p.BeginNested(4);
  p.VarintField(1, 2);  // clock_sync_cputime
  p.VarintField(3, tsc);
  p.EndNested(a);
  a = p.BeginNested(4);
  Str(&p, 10, "clock_sync_monotonic");
  p.VarintField(4, boot - 5000);
  p.EndNested(a);
  p.EndNested(n);
  Packet(t, p);
}

void BuildHost(ByteBuffer* t) {
  const uint64_t boot = 1000000000000ull, real = 1700000000000000000ull, mono = 900000000000ull,
                 tsc = 5000000000000ull;
  {  // trace_config, first on the session's sequence
    ByteBuffer p;
    p.VarintField(10, 1);
    size_t n = p.BeginNested(33);
    size_t m = p.BeginNested(1);
    p.VarintField(1, 1024);
    p.EndNested(m);
    p.EndNested(n);
    Packet(t, p);
  }
  {  // synchronization_marker
    ByteBuffer p;
    p.VarintField(10, 1);
    static const uint8_t kSync[16] = {0x82, 0x47, 0x7a, 0x76, 0xb2, 0x8d, 0x42, 0xba,
                                      0x81, 0xdc, 0x33, 0x32, 0x6d, 0x57, 0xa0, 0x79};
    p.BytesField(36, kSync, sizeof kSync);
    Packet(t, p);
  }
  SnapshotPacket(t, boot, real, mono, tsc);
  {  // a sequence with defaults, a scoped clock and interned names
    ByteBuffer p;
    p.VarintField(10, 2);
    p.VarintField(13, 1);  // incremental state cleared
    p.VarintField(3, 1000);
    p.VarintField(79, 42);
    size_t n = p.BeginNested(59);
    p.VarintField(58, 64);
    size_t m = p.BeginNested(11);
    p.VarintField(11, 1001);
    p.VarintField(31, 1003);
    p.EndNested(m);
    p.EndNested(n);
    n = p.BeginNested(6);
    Clock(&p, 64, 0);
    Clock(&p, 6, boot + 10);
    p.EndNested(n);
    n = p.BeginNested(12);
    m = p.BeginNested(2);
    p.VarintField(1, 1);
    Str(&p, 2, "guest_clock_sync");
    p.EndNested(m);
    m = p.BeginNested(3);
    p.VarintField(1, 1);
    Str(&p, 2, "clock_sync_boottime");
    p.EndNested(m);
    m = p.BeginNested(3);
    p.VarintField(1, 2);
    Str(&p, 2, "clock_sync_cputime");
    p.EndNested(m);
    p.EndNested(n);
    Packet(t, p);
  }
  {  // process and thread track descriptors
    ByteBuffer p;
    p.VarintField(10, 2);
    size_t n = p.BeginNested(60);
    p.VarintField(1, 1001);
    size_t m = p.BeginNested(3);
    p.VarintField(1, 42);
    Str(&p, 6, "vmm_host");
    p.EndNested(m);
    p.EndNested(n);
    Packet(t, p);
    p.clear();
    p.VarintField(10, 2);
    n = p.BeginNested(60);
    p.VarintField(1, 1002);
    p.VarintField(5, 1001);
    m = p.BeginNested(4);
    p.VarintField(1, 42);
    p.VarintField(2, 43);
    Str(&p, 5, "vcpu0");
    p.EndNested(m);
    p.EndNested(n);
    Packet(t, p);
    p.clear();
    p.VarintField(10, 2);
    n = p.BeginNested(60);
    p.VarintField(1, 1003);
    p.VarintField(5, 1001);
    Str(&p, 2, "depth");
    m = p.BeginNested(8);
    p.EndNested(m);
    p.EndNested(n);
    Packet(t, p);
  }
  Marker(t, boot + 100, tsc + 300);
  {  // track events: a slice with legacy fields, absolute timestamps, counters
    ByteBuffer p;
    p.VarintField(8, 20);  // on clock 64 (the sequence default): a delta
    p.VarintField(10, 2);
    size_t n = p.BeginNested(11);
    p.VarintField(9, 1);
    Str(&p, 23, "frame");
    p.VarintField(11, 1002);
    p.VarintField(16, 1000000);  // timestamp_absolute_us
    size_t m = p.BeginNested(6);
    p.VarintField(18, 42);
    p.VarintField(19, 43);
    p.EndNested(m);
    m = p.BeginNested(31);
    p.Varint(1003);
    p.Varint(1001);
    p.EndNested(m);
    p.VarintField(45, 1003);
    p.EndNested(n);
    Packet(t, p);
    p.clear();
    p.VarintField(8, boot + 200);
    p.VarintField(58, 6);
    p.VarintField(10, 2);
    n = p.BeginNested(11);
    p.VarintField(9, 4);
    p.VarintField(11, 1003);
    p.VarintField(30, 7);
    p.EndNested(n);
    Packet(t, p);
  }
  {  // ftrace: events with pids and cpus, an atrace print, compact sched
    ByteBuffer p;
    p.VarintField(10, 3);
    size_t n = p.BeginNested(1);
    p.VarintField(1, 3);  // cpu
    size_t e = p.BeginNested(2);
    p.VarintField(1, boot + 300);
    p.VarintField(2, 43);
    size_t s = p.BeginNested(4);  // sched_switch
    Str(&p, 1, "vcpu0");
    p.VarintField(2, 43);
    p.VarintField(6, 44);
    p.EndNested(s);
    p.EndNested(e);
    e = p.BeginNested(2);
    p.VarintField(1, boot + 310);
    p.VarintField(2, 43);
    s = p.BeginNested(3);  // print
    Str(&p, 2, "B|42|work\n");
    p.EndNested(s);
    p.EndNested(e);
    e = p.BeginNested(2);
    p.VarintField(1, boot + 320);
    p.VarintField(2, 0);
    s = p.BeginNested(491);  // sched_migrate_task
    p.VarintField(2, 43);
    p.VarintField(4, 1);
    p.VarintField(5, 2);
    p.EndNested(s);
    p.EndNested(e);
    e = p.BeginNested(4);  // compact_sched
    s = p.BeginNested(1);
    p.Varint(boot + 330);
    p.Varint(10);
    p.EndNested(s);
    s = p.BeginNested(3);
    p.Varint(43);
    p.Varint(44);
    p.EndNested(s);
    s = p.BeginNested(7);
    p.Varint(boot + 335);
    p.EndNested(s);
    s = p.BeginNested(8);
    p.Varint(44);
    p.EndNested(s);
    s = p.BeginNested(9);
    p.Varint(1);
    p.EndNested(s);
    p.EndNested(e);
    p.VarintField(7, boot + 340);   // boot_timestamp
    p.VarintField(9, boot + 299);   // last_read_event_timestamp
    p.VarintField(10, boot + 290);  // previous_bundle_end_timestamp
    p.EndNested(n);
    Packet(t, p);
  }
  {  // process tree, process stats, android log, perf sample, legacy descriptor
    ByteBuffer p;
    p.VarintField(8, boot + 400);
    p.VarintField(10, 4);
    size_t n = p.BeginNested(2);
    size_t m = p.BeginNested(1);
    p.VarintField(1, 42);
    p.VarintField(2, 1);
    Str(&p, 3, "/usr/bin/vmm");
    Str(&p, 3, "--fast");
    p.EndNested(m);
    m = p.BeginNested(2);
    p.VarintField(1, 43);
    p.VarintField(3, 42);
    p.EndNested(m);
    p.EndNested(n);
    Packet(t, p);
    p.clear();
    p.VarintField(8, boot + 410);
    p.VarintField(10, 4);
    n = p.BeginNested(9);
    m = p.BeginNested(1);
    p.VarintField(1, 42);
    size_t k = p.BeginNested(11);
    p.VarintField(1, 43);
    p.EndNested(k);
    p.EndNested(m);
    p.EndNested(n);
    Packet(t, p);
    p.clear();
    p.VarintField(8, boot + 420);
    p.VarintField(10, 4);
    n = p.BeginNested(39);
    m = p.BeginNested(1);
    p.VarintField(2, 42);
    p.VarintField(3, 43);
    p.VarintField(5, boot + 419);
    Str(&p, 6, "tag");
    p.EndNested(m);
    p.EndNested(n);
    Packet(t, p);
    p.clear();
    p.VarintField(8, boot + 430);
    p.VarintField(10, 5);
    n = p.BeginNested(66);
    p.VarintField(1, 2);
    p.VarintField(2, 42);
    p.VarintField(3, 43);
    p.EndNested(n);
    Packet(t, p);
    p.clear();
    p.VarintField(10, 6);
    n = p.BeginNested(43);
    p.VarintField(1, 42);
    Str(&p, 6, "vmm_legacy");
    p.EndNested(n);
    Packet(t, p);
  }
  {  // compressed_packets holding a track event and a descriptor
    ByteBuffer inner, p;
    p.VarintField(8, boot + 500);
    p.VarintField(10, 2);
    size_t n = p.BeginNested(11);
    p.VarintField(9, 3);
    Str(&p, 23, "inner");
    p.VarintField(11, 1002);
    p.EndNested(n);
    Packet(&inner, p);
    p.clear();
    p.VarintField(10, 7);
    n = p.BeginNested(60);
    p.VarintField(1, 2001);
    Str(&p, 2, "inner_track");
    p.EndNested(n);
    Packet(&inner, p);
    uLongf cap = compressBound(static_cast<uLong>(inner.size()));
    std::vector<uint8_t> z(cap);
    compress2(z.data(), &cap, inner.data(), static_cast<uLong>(inner.size()), 6);
    p.clear();
    p.VarintField(10, 7);
    p.BytesField(50, z.data(), cap);
    Packet(t, p);
  }
  Marker(t, boot + 1000100, tsc + 3000300);
  SnapshotPacket(t, boot + 2000000, real + 2000000, mono + 2000000, tsc + 6000000);
  {  // trace_stats
    ByteBuffer p;
    p.VarintField(10, 1);
    size_t n = p.BeginNested(35);
    p.VarintField(8, 0);
    p.EndNested(n);
    Packet(t, p);
  }
}

// --- resource bounds for one iteration -------------------------------------------------

// Decompresses a gzip file image the way TraceReader does (several members),
// up to `limit` bytes; false when it would produce more.
bool Gunzip(const uint8_t* data, size_t size, size_t limit, std::string* out) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return false;
  zs.next_in = const_cast<uint8_t*>(data);
  zs.avail_in = static_cast<uInt>(size);
  char buf[65536];
  bool ok = true;
  while (zs.avail_in > 0) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    int rc = inflate(&zs, Z_NO_FLUSH);
    out->append(buf, sizeof buf - zs.avail_out);
    if (out->size() > limit) {
      ok = false;
      break;
    }
    if (rc == Z_STREAM_END) {
      inflateReset(&zs);
    } else if (rc != Z_OK) {
      break;  // corrupt or truncated: the reader stops there too
    }
  }
  inflateEnd(&zs);
  return ok;
}

// False when the trace's compressed_packets would inflate to more than `budget`.
bool CompressedWithin(const uint8_t* data, size_t size, size_t budget) {
  vpsdk::ProtoDecoder t(data, size);
  vpsdk::Field pkt, f;
  ByteBuffer plain;
  size_t total = 0;
  while (t.Next(&pkt)) {
    if (pkt.type != vpsdk::proto::kLengthDelimited) continue;
    vpsdk::ProtoDecoder d(pkt.data, pkt.size);
    while (d.Next(&f)) {
      if (f.id != 50 || f.type != vpsdk::proto::kLengthDelimited) continue;
      vpsdk::Status st = vpmerge::Inflate(f.data, f.size, budget - total, &plain);
      total += plain.size();
      if (!st.ok() && st.message.find("beyond") != std::string::npos) return false;
      if (total >= budget) return false;
    }
  }
  return true;
}

// True when the trace image is cheap enough to merge in one iteration.
bool Affordable(const uint8_t* data, size_t size) {
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    std::string plain;
    if (!Gunzip(data, size, kMaxInflated, &plain)) return false;
    return CompressedWithin(reinterpret_cast<const uint8_t*>(plain.data()), plain.size(),
                            kMaxInflated);
  }
  return CompressedWithin(data, size, kMaxInflated);
}

// --- files ------------------------------------------------------------------------------

void WriteFile(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    std::perror(path.c_str());
    std::abort();
  }
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

void RemoveDir() {
  if (g_dir.empty()) return;
  if (DIR* d = opendir(g_dir.c_str())) {
    while (struct dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") unlink((g_dir + "/" + n).c_str());
    }
    closedir(d);
  }
  rmdir(g_dir.c_str());
}

// Leftover temporaries beside the output (the atomic writer must remove them).
void CheckNoTemporaries() {
  DIR* d = opendir(g_dir.c_str());
  if (!d) return;
  while (struct dirent* e = readdir(d)) {
    if (std::strstr(e->d_name, ".tmp-")) {
      std::fprintf(stderr, "rewriter_fuzzer: temporary output left behind: %s\n", e->d_name);
      std::abort();
    }
  }
  closedir(d);
}

uint64_t Hash(const uint8_t* data, size_t size) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

void RunMerge(MergeOptions& opt) {
  std::string report;
  unlink(g_out.c_str());
  vpsdk::Status st;
  try {
    st = vpmerge::Merge(opt, &report);
  } catch (const std::bad_alloc&) {
    return;  // the C API turns this into kNoMemory; the fuzzer's malloc limit reports it
  }
  if (st.ok()) {
    // A report always comes with success, and the output exists unless dry.
    if (report.empty() || report[0] != '{') std::abort();
    struct stat sb;
    if (!opt.dry_run && stat(g_out.c_str(), &sb) != 0) std::abort();
  } else {
    if (st.code == vpsdk::kOk || st.message.empty()) std::abort();
    if (st.code == vpsdk::kInternal) {
      std::fprintf(stderr, "rewriter_fuzzer: internal error: %s\n", st.message.c_str());
      std::abort();
    }
  }
  CheckNoTemporaries();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // VPFUZZ_TMPDIR, else /dev/shm (memory: thousands of files a second), else TMPDIR.
  const char* tmp = std::getenv("VPFUZZ_TMPDIR");
  if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/vp-rewriter-fuzz.XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  if (!mkdtemp(name.data())) {
    std::perror("mkdtemp");
    std::abort();
  }
  g_dir = name.data();
  std::atexit(RemoveDir);
  g_guest = g_dir + "/guest.pftrace";
  g_host = g_dir + "/host.pftrace";
  g_host2 = g_dir + "/split_host.pftrace";
  g_out = g_dir + "/out.pftrace";
  ByteBuffer host;
  BuildHost(&host);
  WriteFile(g_host, host.data(), host.size());
  // VPFUZZ_DUMP_HOST=path writes the built-in host trace there (for seeds and tests).
  if (const char* dump = std::getenv("VPFUZZ_DUMP_HOST")) WriteFile(dump, host.data(), host.size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t* guest = data;
  size_t guest_size = size;
  std::string host_path = g_host;
  const uint8_t* sep = static_cast<const uint8_t*>(memmem(data, size, kSplit, kSplitLen));
  if (sep) {
    guest_size = static_cast<size_t>(sep - data);
    const uint8_t* h = sep + kSplitLen;
    size_t hs = size - guest_size - kSplitLen;
    if (!Affordable(h, hs)) return -1;  // not added to the corpus
    WriteFile(g_host2, h, hs);
    host_path = g_host2;
  }
  if (!Affordable(guest, guest_size)) return -1;
  WriteFile(g_guest, guest, guest_size);

  MergeOptions opt;
  opt.host_path = host_path;
  opt.guests.push_back({"vm", g_guest});
  opt.output_path = g_out;

  // Both timelines with the alignment found in the traces, always.
  opt.mode = MergeMode::kHostIntoGuest;
  RunMerge(opt);
  opt.mode = MergeMode::kGuestIntoHost;
  RunMerge(opt);

  // Then one more variant, picked by the input's hash (a merge per variant
  // for every input would halve the executions per second).
  static const int64_t kExtremes[] = {INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX};
  uint64_t h = Hash(data, size);
  auto pick = [&](int shift) -> int64_t {
    uint64_t x = h >> shift;
    return (x & 1) ? kExtremes[(x >> 1) % 7] : static_cast<int64_t>(h * 0x9e3779b97f4a7c15ull);
  };
  switch ((h >> 40) % 5) {
    case 0:
      opt.mode = MergeMode::kAddTraces;
      break;
    case 1:
      opt.machine_ids = true;  // guest-into-host
      break;
    case 2:
    case 3:  // a given alignment, extreme values included
      opt.machine_ids = (h >> 7) & 1;
      opt.mode = (h & 1) ? MergeMode::kHostIntoGuest : MergeMode::kGuestIntoHost;
      if ((h >> 1) & 1) {
        opt.align.has_time_diff = true;
        opt.align.time_diff = pick(8);
      } else {
        opt.align.has_guest_boot = true;
        opt.align.guest_boot = static_cast<uint64_t>(pick(16));
      }
      opt.align.guest_tsc_offset = pick(24);
      break;
    default:  // the alignment from the traces with a TSC offset; dry or not
      opt.mode = MergeMode::kHostIntoGuest;
      opt.align.guest_tsc_offset = pick(24);
      opt.dry_run = (h >> 2) & 1;
      if (opt.dry_run) opt.output_path.clear();
      break;
  }
  RunMerge(opt);
  return 0;
}
