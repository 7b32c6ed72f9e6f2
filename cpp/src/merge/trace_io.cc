#include "trace_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <system_error>

namespace vpmerge {

namespace {
constexpr size_t kReadChunk = 1 << 20;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }
}  // namespace

struct TraceReader::Inflater {
  z_stream zs{};
  ByteBuffer in;
  bool ended = false;
  ~Inflater() { inflateEnd(&zs); }
};

TraceReader::TraceReader() = default;
TraceReader::~TraceReader() {
  if (fd_ >= 0) close(fd_);
}

int TraceReader::Fail(int32_t code, const std::string& msg) {
  status_ = Status::Error(code, path_ + ": " + msg);
  return -1;
}

Status TraceReader::Open(const std::string& path) {
  path_ = path;
  fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return Status::Error(vpsdk::kIoError, Errno("cannot open '" + path + "'"));
  struct stat st;
  if (fstat(fd_, &st) == 0 && S_ISDIR(st.st_mode))
    return Status::Error(vpsdk::kIoError, "'" + path + "' is a directory");
  uint8_t magic[2];
  ssize_t n = pread(fd_, magic, 2, 0);
  if (n == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    gzip_ = true;
    z_.reset(new Inflater());
    if (inflateInit2(&z_->zs, 16 + MAX_WBITS) != Z_OK)
      return Status::Error(vpsdk::kNoMemory, "zlib initialisation failed");
  }
  return Status::Ok();
}

size_t TraceReader::ReadSome(uint8_t* dst, size_t cap) {
  if (!gzip_) {
    for (;;) {
      ssize_t r = read(fd_, dst, cap);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        status_ = Status::Error(vpsdk::kIoError, Errno("reading '" + path_ + "'"));
        return 0;
      }
      return static_cast<size_t>(r);
    }
  }
  Inflater& z = *z_;
  z.zs.next_out = dst;
  z.zs.avail_out = static_cast<uInt>(cap);
  while (z.zs.avail_out == cap) {
    if (z.zs.avail_in == 0) {
      z.in.resize(kReadChunk);
      ssize_t r;
      do r = read(fd_, z.in.data(), kReadChunk); while (r < 0 && errno == EINTR);
      if (r < 0) {
        status_ = Status::Error(vpsdk::kIoError, Errno("reading '" + path_ + "'"));
        return 0;
      }
      if (r == 0) {
        if (!z.ended) status_ = Status::Error(vpsdk::kFormatError, path_ + ": truncated gzip stream");
        return 0;
      }
      z.zs.next_in = z.in.data();
      z.zs.avail_in = static_cast<uInt>(r);
    }
    if (z.ended) {  // another gzip member follows
      inflateReset(&z.zs);
      z.ended = false;
    }
    int rc = inflate(&z.zs, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) {
      z.ended = true;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      status_ = Status::Error(vpsdk::kFormatError, path_ + ": corrupt gzip data");
      return 0;
    }
  }
  return cap - z.zs.avail_out;
}

bool TraceReader::Fill(size_t need) {
  while (buf_.size() - pos_ < need) {
    if (eof_) return false;
    if (pos_ > 0 && (pos_ > buf_.size() / 2 || buf_.size() + kReadChunk > (64u << 20))) {
      size_t rest = buf_.size() - pos_;
      std::memmove(buf_.data(), buf_.data() + pos_, rest);
      consumed_ += pos_;
      buf_.resize(rest);
      pos_ = 0;
    }
    size_t old = buf_.size();
    size_t want = std::max(kReadChunk, need - (old - pos_));
    buf_.resize(old + want);
    size_t got = ReadSome(buf_.data() + old, want);
    buf_.resize(old + got);
    if (got == 0) eof_ = true;
  }
  return true;
}

int TraceReader::Next(PacketView* pv) {
  // Fast path: a well-formed packet entirely in the buffer (Fill() is only
  // needed near the end of a buffer).
  if (buf_.size() - pos_ >= 16 && status_.ok()) {
    const uint8_t* p = buf_.data() + pos_;
    const uint8_t* end = buf_.data() + buf_.size();
    uint64_t len;
    const uint8_t* q = p[0] == proto::MakeTag(1, proto::kLengthDelimited)
                           ? proto::ReadVarint(p + 1, end, &len) : nullptr;
    if (q && len <= kMaxPacketSize && len <= static_cast<uint64_t>(end - q)) {
      size_t hdr = static_cast<size_t>(q - p);
      pv->raw = p;
      pv->raw_size = hdr + len;
      pv->data = q;
      pv->size = static_cast<size_t>(len);
      pv->offset = consumed_ + pos_;
      pos_ += hdr + static_cast<size_t>(len);
      return 1;
    }
  }
  if (!status_.ok()) return -1;
  if (!Fill(1)) return status_.ok() ? 0 : -1;
  uint64_t start = consumed_ + pos_;
  // A field header is at most 5 (tag) + 10 (length) bytes.
  Fill(15);
  if (!status_.ok()) return -1;
  const uint8_t* p = buf_.data() + pos_;
  const uint8_t* end = buf_.data() + buf_.size();
  uint64_t tag, len;
  const uint8_t* q = proto::ReadVarint(p, end, &tag);
  if (q) q = proto::ReadVarint(q, end, &len);
  if (!q) {
    if (eof_ && status_.ok()) {
      truncated_ = true;
      truncated_at_ = start;
      return 0;
    }
    return Fail(vpsdk::kFormatError, "not a Perfetto trace: bad field header at byte " +
                                         std::to_string(start));
  }
  if (tag != proto::MakeTag(1, proto::kLengthDelimited))
    return Fail(vpsdk::kFormatError,
                "not a Perfetto trace: unexpected field " + std::to_string(tag >> 3) +
                    " (wire type " + std::to_string(tag & 7) + ") at byte " + std::to_string(start));
  if (len > kMaxPacketSize)
    return Fail(vpsdk::kFormatError, "packet at byte " + std::to_string(start) + " claims " +
                                         std::to_string(len) + " bytes (limit " +
                                         std::to_string(kMaxPacketSize) + ")");
  size_t hdr = static_cast<size_t>(q - p);
  if (!Fill(hdr + len)) {
    if (!status_.ok()) return -1;
    truncated_ = true;
    truncated_at_ = start;
    return 0;
  }
  p = buf_.data() + pos_;
  pv->raw = p;
  pv->raw_size = hdr + len;
  pv->data = p + hdr;
  pv->size = len;
  pv->offset = start;
  pos_ += hdr + len;
  return 1;
}

// --- output ------------------------------------------------------------------------

OutputFile::~OutputFile() {
  if (copier_.joinable()) copier_.join();
  if (fd_ >= 0) close(fd_);
  if (!committed_ && !tmp_.empty()) unlink(tmp_.c_str());
}

namespace {
// The process's umask, read without changing it (umask(2) would, for a
// moment, for every thread).
mode_t CurrentUmask() {
  if (FILE* f = std::fopen("/proc/self/status", "re")) {
    char line[128];
    unsigned m = 0;
    bool found = false;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "Umask: %o", &m) == 1) {
        found = true;
        break;
      }
    std::fclose(f);
    if (found) return static_cast<mode_t>(m);
  }
  mode_t m = umask(022);
  umask(m);
  return m;
}
}  // namespace

Status OutputFile::Open(const std::string& path) {
  path_ = path;
  struct stat st;
  mode_t mode = 0666 & ~CurrentUmask();
  if (stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return Status::Error(vpsdk::kIoError, "output '" + path + "' is a directory");
    if (!S_ISREG(st.st_mode)) {
      // A device, FIFO or socket (/dev/null, a pipe): written through, never
      // replaced by a file.
      fd_ = open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd_ < 0) return Status::Error(vpsdk::kIoError, Errno("cannot open output '" + path + "'"));
      return Status::Ok();
    }
    mode = st.st_mode & 07777;  // replacing a file keeps its permissions
  }
  // A symlink is followed: its target is replaced, the link stays.
  char* real = realpath(path.c_str(), nullptr);
  if (real) {
    path_ = real;
    std::free(real);
  }
  std::string tmpl = path_ + ".tmp-XXXXXX";
  std::unique_ptr<char[]> name(new char[tmpl.size() + 1]);
  std::memcpy(name.get(), tmpl.c_str(), tmpl.size() + 1);
  fd_ = mkostemp(name.get(), O_CLOEXEC);
  if (fd_ < 0) return Status::Error(vpsdk::kIoError, Errno("cannot create output '" + path + "'"));
  tmp_ = name.get();
  fchmod(fd_, mode);
  return Status::Ok();
}

Status OutputFile::FlushBuffer() {
  Status st = WriteAll(buf_.data(), buf_.size());
  if (st.ok()) buf_.clear();
  return st;
}

Status OutputFile::WriteAll(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n) {
    ssize_t r = write(fd_, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return Status::Error(vpsdk::kIoError, Errno("writing '" + (tmp_.empty() ? path_ : tmp_) + "'"));
    p += r;
    n -= static_cast<size_t>(r);
  }
  return Status::Ok();
}

Status OutputFile::Write(const void* data, size_t n) {
  bytes_ += n;
  if (buf_.size() + n > (4u << 20)) {
    Status st = FlushBuffer();
    if (!st.ok()) return st;
  }
  if (n >= (256u << 10) && buf_.size() == 0) return WriteAll(data, n);  // large: no copy
  buf_.Append(data, n);
  return Status::Ok();
}

namespace {
// Copies `len` bytes of `path` from its start into `out` at `*out_off` (or
// at out's file offset when null), in the kernel where it can.
Status CopyRange(const std::string& path, uint64_t len, int out, off_t* out_off, const std::string& out_name) {
  int in = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Status::Error(vpsdk::kIoError, Errno("cannot open '" + path + "'"));
  off_t in_off = 0;
  uint64_t left = len;
  bool kernel = true;
  auto fail = [&](const std::string& msg) {
    close(in);
    return Status::Error(vpsdk::kIoError, msg);
  };
  while (left && kernel) {
    ssize_t r = copy_file_range(in, &in_off, out, out_off, static_cast<size_t>(std::min<uint64_t>(left, 1u << 30)), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP ||
                  errno == EBADF || errno == EPERM)) {
      kernel = false;  // not between these files: the same through a buffer, from here
      break;
    }
    if (r <= 0) return fail(r < 0 ? Errno("copying '" + path + "'") : "'" + path + "' is shorter than it was");
    left -= static_cast<uint64_t>(r);
  }
  ByteBuffer b;
  b.resize(1u << 20);
  while (left) {
    ssize_t r = pread(in, b.data(), static_cast<size_t>(std::min<uint64_t>(left, b.size())), in_off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return fail(r < 0 ? Errno("reading '" + path + "'") : "'" + path + "' is shorter than it was");
    in_off += r;
    left -= static_cast<uint64_t>(r);
    for (const uint8_t* p = b.data(); r > 0;) {
      ssize_t w = out_off ? pwrite(out, p, static_cast<size_t>(r), *out_off) : write(out, p, static_cast<size_t>(r));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return fail(Errno("writing '" + out_name + "'"));
      if (out_off) *out_off += w;
      p += w;
      r -= w;
    }
  }
  close(in);
  return Status::Ok();
}
}  // namespace

Status OutputFile::CopyFrom(const std::string& path, uint64_t len) {
  Status st = FlushBuffer();
  if (!st.ok()) return st;
  st = CopyRange(path, len, fd_, nullptr, tmp_.empty() ? path_ : tmp_);
  if (st.ok()) bytes_ += len;
  return st;
}

Status OutputFile::CopyFromInBackground(const std::string& path, uint64_t len) {
  Status st = FinishCopy();  // one at a time
  if (!st.ok()) return st;
  if (tmp_.empty()) return CopyFrom(path, len);  // written through: maybe a pipe
  st = FlushBuffer();
  if (!st.ok()) return st;
  off_t at = lseek(fd_, 0, SEEK_CUR);
  if (at < 0 || lseek(fd_, at + static_cast<off_t>(len), SEEK_SET) < 0) return CopyFrom(path, len);
  try {
    copier_ = std::thread([this, path, len, at]() mutable {
      try {
        copy_status_ = CopyRange(path, len, fd_, &at, tmp_);
      } catch (const std::bad_alloc&) {
        copy_status_ = Status::Error(vpsdk::kNoMemory, "out of memory copying '" + path + "'");
      }
    });
  } catch (const std::system_error&) {  // no thread to be had: here, then
    if (lseek(fd_, at, SEEK_SET) < 0) return Status::Error(vpsdk::kIoError, Errno("seeking in '" + tmp_ + "'"));
    return CopyFrom(path, len);
  }
  bytes_ += len;
  return Status::Ok();
}

Status OutputFile::FinishCopy() {
  if (copier_.joinable()) copier_.join();
  Status st = copy_status_;
  copy_status_ = Status::Ok();
  return st;
}

Status OutputFile::Commit() {
  Status st = FinishCopy();
  if (st.ok()) st = FlushBuffer();
  if (!st.ok()) return st;
  if (close(fd_) != 0) {
    fd_ = -1;
    return Status::Error(vpsdk::kIoError, Errno("closing '" + (tmp_.empty() ? path_ : tmp_) + "'"));
  }
  fd_ = -1;
  if (tmp_.empty()) {  // written through
    committed_ = true;
    return Status::Ok();
  }
  if (rename(tmp_.c_str(), path_.c_str()) != 0)
    return Status::Error(vpsdk::kIoError, Errno("renaming into '" + path_ + "'"));
  committed_ = true;
  return Status::Ok();
}

bool SameFile(const std::string& a, const std::string& b) {
  if (a == b) return true;
  struct stat sa, sb;
  if (stat(a.c_str(), &sa) != 0 || stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

Status Inflate(const uint8_t* data, size_t n, size_t limit, ByteBuffer* out) {
  z_stream zs{};
  if (inflateInit2(&zs, 32 + MAX_WBITS) != Z_OK)  // zlib or gzip header
    return Status::Error(vpsdk::kNoMemory, "zlib initialisation failed");
  out->clear();
  zs.next_in = const_cast<uint8_t*>(data);
  zs.avail_in = static_cast<uInt>(n);
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (out->size() >= limit) {
      inflateEnd(&zs);
      return Status::Error(vpsdk::kFormatError, "compressed packets inflate beyond " +
                                                    std::to_string(limit) + " bytes");
    }
    size_t old = out->size();
    size_t chunk = std::min<size_t>(std::max<size_t>(n * 4, 1 << 16), limit - old);
    out->resize(old + chunk);
    zs.next_out = out->data() + old;
    zs.avail_out = static_cast<uInt>(chunk);
    rc = inflate(&zs, Z_NO_FLUSH);
    out->resize(old + chunk - zs.avail_out);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return Status::Error(vpsdk::kFormatError, "corrupt compressed_packets");
    }
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return Status::Error(vpsdk::kFormatError, "truncated compressed_packets");
    }
  }
  inflateEnd(&zs);
  return Status::Ok();
}

}  // namespace vpmerge
