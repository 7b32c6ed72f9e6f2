// Streaming trace input (plain or gzip) and atomic trace output.
#ifndef VPERFETTO_MERGE_TRACE_IO_H_
#define VPERFETTO_MERGE_TRACE_IO_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "byte_buffer.h"
#include "vpsdk/tracing.h"

namespace vpmerge {

using vpsdk::Status;

// Packets larger than this are treated as corrupt input.
constexpr size_t kMaxPacketSize = 256u << 20;

struct PacketView {
  const uint8_t* data;   // TracePacket payload
  size_t size;
  const uint8_t* raw;    // the whole Trace.packet field (tag + length + data)
  size_t raw_size;
  uint64_t offset;       // of `raw` in the (decompressed) input
};

// Reads Trace.packet fields one at a time with bounded memory.
class TraceReader {
 public:
  TraceReader();
  ~TraceReader();
  Status Open(const std::string& path);
  // 1: a packet; 0: end of input; -1: error (see status()).
  int Next(PacketView* pv);
  const Status& status() const { return status_; }
  bool gzip() const { return gzip_; }
  // Set at the end when the input stopped inside a packet.
  bool truncated() const { return truncated_; }
  uint64_t truncated_at() const { return truncated_at_; }
  uint64_t bytes_read() const { return consumed_ + pos_; }
  const std::string& path() const { return path_; }

 private:
  bool Fill(size_t need);  // ensures `need` bytes after pos_, false at EOF
  size_t ReadSome(uint8_t* dst, size_t cap);
  int Fail(int32_t code, const std::string& msg);

  std::string path_;
  int fd_ = -1;
  bool gzip_ = false;
  struct Inflater;
  std::unique_ptr<Inflater> z_;
  ByteBuffer buf_;
  size_t pos_ = 0;         // next unread byte in buf_
  uint64_t consumed_ = 0;  // input offset of buf_[0]
  bool eof_ = false;
  bool truncated_ = false;
  uint64_t truncated_at_ = 0;
  Status status_;
};

// Writes to a temporary file beside `path` (its target, for a symlink) and
// renames it into place on Commit(), keeping an existing file's permissions
// (else 0666 less the umask); the destructor removes it unless committed. A
// device, FIFO or socket is written through instead, never replaced.
class OutputFile {
 public:
  ~OutputFile();
  Status Open(const std::string& path);
  Status Write(const void* data, size_t n);
  // Appends the first `len` bytes of the file at `path`, in the kernel where
  // it can (copy_file_range), else through a buffer.
  Status CopyFrom(const std::string& path, uint64_t len);
  // The same on a thread of its own into a file (else as CopyFrom()): the
  // bytes after them are written at once, at their place beyond the range.
  // FinishCopy() (or Commit()) waits for it and says how it went.
  Status CopyFromInBackground(const std::string& path, uint64_t len);
  Status FinishCopy();
  Status Commit();
  uint64_t bytes() const { return bytes_; }

 private:
  Status FlushBuffer();
  Status WriteAll(const void* data, size_t n);
  std::string path_, tmp_;
  int fd_ = -1;
  ByteBuffer buf_;
  uint64_t bytes_ = 0;
  bool committed_ = false;
  std::thread copier_;
  Status copy_status_;
};

// True when a and b name the same existing file (or the same path).
bool SameFile(const std::string& a, const std::string& b);

// Inflates zlib/gzip data into `out`, refusing more than `limit` bytes.
Status Inflate(const uint8_t* data, size_t n, size_t limit, ByteBuffer* out);

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_TRACE_IO_H_
