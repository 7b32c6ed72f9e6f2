// Deflate compression of a finished trace file, as the Perfetto tracing
// service compresses what it reads out of its buffers when the TraceConfig
// says COMPRESSION_TYPE_DEFLATE: runs of whole packets, each run a zlib
// stream in one TracePacket.compressed_packets, which trace_processor (and
// every reader here) inflates back into the same packets in the same order.
//
// The session writes its trace as it always does (a crash then still leaves
// a plain, recoverable trace), then this rewrites the file beside it and
// renames it over: a failure leaves the uncompressed trace in place. Runs
// are compressed on up to four threads, written in order.
#include "deflate.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include "internal.h"
#include "vpsdk/field_numbers.h"
#include "vpsdk/proto_utils.h"

#ifdef VPSDK_HAVE_ZLIB
#include <zlib.h>
#endif

namespace vpsdk {

#ifndef VPSDK_HAVE_ZLIB

bool DeflateAvailable() { return false; }
Status DeflateTraceFile(const std::string&, int) {
  return Status::Error(kUnsupported, "this build of vperfetto has no zlib: traces cannot be compressed");
}

#else

bool DeflateAvailable() { return true; }

namespace {

// Runs of at most this many bytes of packets: a compressed_packets packet
// must stay under 512 KB (trace_packet.proto), and deflate never grows its
// input by more than a few bytes per 16 KB block. A packet larger than this
// is written as it is.
constexpr size_t kRunBytes = 448 * 1024;
constexpr size_t kWindowRuns = 32;  // runs in memory at once (~14 MB of input)

struct Run {
  size_t begin, end;  // byte range of whole Trace.packet fields in the input
  bool raw;           // a single packet too large to compress
};

// The runs of `data`, or false when it is not a sequence of Trace.packet
// fields (then it is left as it is).
bool SplitRuns(const uint8_t* data, size_t size, std::vector<Run>* runs) {
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  size_t run_begin = 0;
  while (p < end) {
    const uint8_t* start = p;
    uint64_t tag = 0, len = 0;
    p = proto::ReadVarint(p, end, &tag);
    if (!p || tag != proto::MakeTag(pf::Trace::kPacket, proto::kLengthDelimited)) return false;
    p = proto::ReadVarint(p, end, &len);
    if (!p || len > static_cast<uint64_t>(end - p)) return false;
    p += len;
    size_t b = static_cast<size_t>(start - data), e = static_cast<size_t>(p - data);
    if (e - b > kRunBytes) {
      if (b > run_begin) runs->push_back({run_begin, b, false});
      runs->push_back({b, e, true});
      run_begin = e;
    } else if (e - run_begin > kRunBytes) {
      runs->push_back({run_begin, b, false});
      run_begin = b;
    }
  }
  if (size > run_begin) runs->push_back({run_begin, size, false});
  return true;
}

// `in` deflated into a framed Trace.packet { compressed_packets }.
bool CompressRun(const uint8_t* in, size_t n, int level, std::string* out) {
  z_stream z;
  std::memset(&z, 0, sizeof(z));
  if (deflateInit(&z, level) != Z_OK) return false;
  uLong bound = deflateBound(&z, static_cast<uLong>(n));
  uint8_t head[2 * proto::kMaxVarintSize + 4];
  out->resize(sizeof(head) + bound);
  uint8_t* body = reinterpret_cast<uint8_t*>(&(*out)[sizeof(head)]);
  z.next_in = const_cast<Bytef*>(in);
  z.avail_in = static_cast<uInt>(n);
  z.next_out = body;
  z.avail_out = static_cast<uInt>(bound);
  int st = deflate(&z, Z_FINISH);
  size_t clen = z.total_out;
  deflateEnd(&z);
  if (st != Z_STREAM_END) return false;
  // The packet: compressed_packets (field 50), framed as Trace.packet.
  uint8_t field[proto::kMaxVarintSize + 2];
  uint8_t* f = proto::WriteVarint(
      proto::MakeTag(pf::TracePacket::kCompressedPackets, proto::kLengthDelimited), field);
  f = proto::WriteVarint(clen, f);
  size_t packet_len = static_cast<size_t>(f - field) + clen;
  uint8_t* h = proto::WriteVarint(proto::MakeTag(pf::Trace::kPacket, proto::kLengthDelimited), head);
  h = proto::WriteVarint(packet_len, h);
  std::memcpy(h, field, static_cast<size_t>(f - field));
  h += f - field;
  size_t hlen = static_cast<size_t>(h - head);
  std::memcpy(&(*out)[sizeof(head) - hlen], head, hlen);
  out->erase(0, sizeof(head) - hlen);
  out->resize(hlen + clen);
  return true;
}

}  // namespace

Status DeflateTraceFile(const std::string& path, int level) {
  if (level < 1 || level > 9) return Status::Error(kInvalidArgument, "deflate level must be 1 .. 9");
  int in = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO never blocks
  if (in < 0) return Status::Error(kIoError, "cannot reopen '" + path + "' to compress it: " + std::strerror(errno));
  struct stat st;
  if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
    close(in);
    return Status::Ok();  // a pipe or device: written as it is
  }
  size_t size = static_cast<size_t>(st.st_size);
  void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, in, 0);
  close(in);
  if (m == MAP_FAILED) return Status::Error(kIoError, "cannot map '" + path + "' to compress it: " + std::strerror(errno));
  const uint8_t* data = static_cast<const uint8_t*>(m);
  madvise(m, size, MADV_SEQUENTIAL);
  std::vector<Run> runs;
  if (!SplitRuns(data, size, &runs)) {
    munmap(m, size);
    return Status::Ok();  // not packets only: left as it is
  }
  std::string tmp = path + ".deflate-tmp";
  int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777);
  if (out < 0) {
    munmap(m, size);
    return Status::Error(kIoError, "cannot create '" + tmp + "': " + std::strerror(errno));
  }
  unsigned threads = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  std::vector<std::string> done(kWindowRuns);
  std::vector<char> ok(kWindowRuns);
  bool good = true;
  for (size_t w = 0; w < runs.size() && good; w += kWindowRuns) {
    size_t n = std::min(kWindowRuns, runs.size() - w);
    // Runs taken in turn by whichever thread is free; no exception leaves a
    // thread (out of memory: that run stays as it is), and a thread that
    // cannot be started leaves its runs to the others.
    std::atomic<size_t> next{0};
    auto work = [&]() noexcept {
      for (size_t i; (i = next.fetch_add(1)) < n;) {
        const Run& r = runs[w + i];
        try {
          ok[i] = r.raw || CompressRun(data + r.begin, r.end - r.begin, level, &done[i]);
        } catch (const std::bad_alloc&) {
          ok[i] = false;
        }
      }
    };
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned k = 1; k < threads && k < n; k++) {
      try {
        pool.emplace_back(work);
      } catch (const std::system_error&) {
        break;
      }
    }
    work();
    for (auto& t : pool) t.join();
    for (size_t i = 0; i < n && good; i++) {
      const Run& r = runs[w + i];
      // Kept as it is when deflate did not make it smaller (or failed).
      bool raw = r.raw || !ok[i] || done[i].size() >= r.end - r.begin;
      good = raw ? WriteFully(out, data + r.begin, r.end - r.begin)
                 : WriteFully(out, done[i].data(), done[i].size());
    }
  }
  munmap(m, size);
  int e = good ? 0 : errno;
  if (close(out) != 0 && good) {
    good = false;
    e = errno;
  }
  if (!good || rename(tmp.c_str(), path.c_str()) != 0) {
    if (good) e = errno;
    unlink(tmp.c_str());
    return Status::Error(kIoError, "compressing '" + path + "' failed (" + std::strerror(e) +
                                       "); the trace is left uncompressed");
  }
  return Status::Ok();
}

#endif  // VPSDK_HAVE_ZLIB

}  // namespace vpsdk
