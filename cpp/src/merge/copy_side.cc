#include "copy_side.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace vpmerge {
namespace {

constexpr size_t kBatchBytes = 1u << 20;  // input per batch

struct Batch {
  ByteBuffer in;                  // the batch's raw Trace.packet fields
  std::vector<uint64_t> offsets;  // each packet's input offset
  uint64_t first_index = 0;       // the input's packet number of the first
  Rewriter::SeqStates seqs;       // the sequences' state before it
  ByteBuffer out;
  Status status;
  bool rewritten = false;
  bool done = false;  // rewritten, and written unless a batch before it failed
};

// Rewrites one batch with `rw` (any worker's: nothing of one batch carries
// over to the next but what SetSequences() sets).
void RewriteBatchOrThrow(Rewriter& rw, const std::string& path, Batch& b) {
  rw.SetSequences(b.seqs);
  ProtoDecoder d(b.in.data(), b.in.size());
  Field g;
  size_t i = 0;
  while (d.Next(&g)) {
    PacketView pv{g.data, g.size, g.begin, static_cast<size_t>(g.end - g.begin), b.offsets[i]};
    Status st = rw.Packet(pv, &b.out);
    if (!st.ok()) {
      b.status = Status::Error(st.code, path + ": packet " + std::to_string(b.first_index + i) +
                                            " at byte " + std::to_string(pv.offset) + ": " + st.message);
      return;
    }
    i++;
  }
}

// The same, where no exception may leave (a worker's thread): running out
// of memory is the batch's failure.
void RewriteBatch(Rewriter& rw, const std::string& path, Batch& b) noexcept {
  try {
    RewriteBatchOrThrow(rw, path, b);
  } catch (const std::bad_alloc&) {
    b.status = Status::Error(vpsdk::kNoMemory, "out of memory rewriting '" + path + "'");
  }
}

// Worker threads taking batches from a queue and writing them in order: the
// one that finishes the oldest batch writes it, and the finished ones after
// it, while its bytes are still in its core's cache (written by another
// thread, they cost the kernel's copy several times more).
class Pool {
 public:
  Pool(const Transform& t, const std::string& path, OutputFile* out, unsigned n) : path_(path), out_(out) {
    // Every rewriter before any thread: the vector must not move under them.
    for (unsigned k = 0; k < n; k++) rewriters_.emplace_back(new Rewriter(t));
    threads_.reserve(n);
    for (unsigned k = 0; k < n; k++) {
      try {
        threads_.emplace_back([this, k] { Run(*rewriters_[k]); });
      } catch (const std::system_error&) {  // fewer workers; none: the caller's turn
        if (threads_.empty()) throw;
        break;
      }
    }
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_.notify_all();
    for (auto& th : threads_) th.join();
  }
  void Submit(Batch* b) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(b);
      order_.push_back(b);
    }
    work_.notify_one();
  }
  // Until `b` is rewritten and written.
  void Wait(Batch* b) {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [b] { return b->done; });
  }
  // After every batch is done.
  void AddStats(RewriteStats* s) const {
    for (auto& rw : rewriters_) s->Add(rw->stats());
  }

 private:
  void Run(Rewriter& rw) {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      work_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      Batch* b = queue_.front();
      queue_.pop_front();
      lock.unlock();
      RewriteBatch(rw, path_, *b);
      lock.lock();
      b->rewritten = true;
      // The oldest batches that are rewritten, in order, by one thread at
      // a time; none after a failure (the output is not kept).
      if (writing_) continue;
      writing_ = true;
      while (!order_.empty() && order_.front()->rewritten) {
        Batch* w = order_.front();
        order_.pop_front();
        lock.unlock();
        if (!failed_ && w->status.ok() && out_) w->status = WriteOut(w->out);
        if (!w->status.ok()) failed_ = true;
        lock.lock();
        w->done = true;
        done_.notify_all();
      }
      writing_ = false;
    }
  }
  Status WriteOut(const ByteBuffer& b) noexcept {
    try {
      return out_->Write(b.data(), b.size());
    } catch (const std::bad_alloc&) {
      return Status::Error(vpsdk::kNoMemory, "out of memory writing the output");
    }
  }
  const std::string& path_;
  OutputFile* out_;
  std::vector<std::unique_ptr<Rewriter>> rewriters_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable work_, done_;
  std::deque<Batch*> queue_;  // to rewrite
  std::deque<Batch*> order_;  // to write, in input order
  bool writing_ = false;
  bool failed_ = false;  // only read and written by the writing thread
  bool stop_ = false;
};

// An input copied as it is (the main side when nothing of it changes).
Status CopyVerbatim(TraceReader& r, const Transform& t, OutputFile* out, Progress* progress,
                    RewriteStats* stats) {
  Rewriter rw(t);
  ByteBuffer buf;
  Progress::Local shown(progress);
  PacketView pv;
  int rc;
  while ((rc = r.Next(&pv)) == 1) {
    shown.Add(pv.raw_size);
    Status st = rw.Packet(pv, &buf);  // (a copy: Identity())
    if (!st.ok()) return st;
    if (buf.size() >= kBatchBytes) {
      if (out) st = out->Write(buf.data(), buf.size());
      if (!st.ok()) return st;
      buf.clear();
    }
  }
  if (rc < 0) return r.status();
  *stats = rw.stats();
  return out ? out->Write(buf.data(), buf.size()) : Status::Ok();
}

}  // namespace

unsigned AutoThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return std::max(1u, std::min(n, 4u));
}

Status RewriteSide(const InputSummary& in, const Transform& t, unsigned threads, OutputFile* out,
                   Progress* progress, RewriteStats* stats) {
  const std::string& path = in.path;
  *stats = RewriteStats();
  uint64_t complete = in.truncated ? in.truncated_at : in.bytes;
  if (t.Identity() && !in.gzip && in.packet_bytes == complete) {
    stats->packets_read = stats->packets_written = in.top_level_packets;
    progress->Add(complete);
    return out ? out->CopyFromInBackground(path, complete) : Status::Ok();
  }
  TraceReader r;
  Status st = r.Open(path);
  if (!st.ok()) return st;
  if (t.Identity()) return CopyVerbatim(r, t, out, progress, stats);

  // One thread: the batches are rewritten and written here, in turn. More:
  // by workers, which also write them in order (Pool), while this thread
  // reads the next ones (at most 2 per worker in flight: memory stays flat).
  if (threads == 0) threads = AutoThreads();
  // The batches before the pool: should this thread leave by an exception,
  // the pool's threads end (finishing what they hold) before the batches go.
  std::deque<std::unique_ptr<Batch>> in_flight;
  std::vector<std::unique_ptr<Batch>> spare;
  std::unique_ptr<Rewriter> inline_rw;
  std::unique_ptr<Pool> pool;
  if (threads > 1) {
    try {
      pool.reset(new Pool(t, path, out, threads));
    } catch (const std::system_error&) {  // no thread to be had: on this one
      threads = 1;
    }
  }
  if (threads == 1) inline_rw.reset(new Rewriter(t));
  const size_t max_in_flight = threads == 1 ? 1 : 2 * threads;

  // Recycles the oldest batch once it is written (here with one thread).
  auto retire = [&]() -> Status {
    Batch* b = in_flight.front().get();
    if (pool) pool->Wait(b);  // (and written)
    Status s = b->status;
    if (!pool && s.ok() && out) s = out->Write(b->out.data(), b->out.size());
    spare.push_back(std::move(in_flight.front()));
    in_flight.pop_front();
    return s;
  };
  auto submit = [&](std::unique_ptr<Batch> b) -> Status {
    Batch* p = b.get();
    in_flight.push_back(std::move(b));
    if (pool) pool->Submit(p);
    else RewriteBatch(*inline_rw, path, *p);
    return in_flight.size() >= max_in_flight ? retire() : Status::Ok();
  };
  auto fresh = [&](uint64_t index, const SeqTracker& seqs) {
    std::unique_ptr<Batch> b;
    if (!spare.empty()) {
      b = std::move(spare.back());
      spare.pop_back();
    } else {
      b.reset(new Batch());
    }
    b->in.clear();
    b->out.clear();
    b->offsets.clear();
    b->status = Status::Ok();
    b->rewritten = b->done = false;
    b->first_index = index;
    b->seqs = seqs.State();
    return b;
  };

  SeqTracker seqs(t.ref_clock);
  uint64_t n = 0;
  std::unique_ptr<Batch> cur = fresh(0, seqs);
  Progress::Local shown(progress);
  PacketView pv;
  int rc;
  while ((rc = r.Next(&pv)) == 1) {
    shown.Add(pv.raw_size);
    cur->in.Append(pv.raw, pv.raw_size);
    cur->offsets.push_back(pv.offset);
    seqs.Packet(pv.data, pv.size);
    n++;
    if (cur->in.size() >= kBatchBytes) {
      st = submit(std::move(cur));
      cur = fresh(n, seqs);
      if (!st.ok()) break;
    }
  }
  if (st.ok() && rc < 0) st = r.status();
  if (st.ok() && !cur->offsets.empty()) st = submit(std::move(cur));
  while (!in_flight.empty()) {  // in order: the first failure is the one said
    Status s = retire();
    if (st.ok()) st = s;
  }
  if (pool) pool->AddStats(stats);
  else stats->Add(inline_rw->stats());
  return st;
}

}  // namespace vpmerge
