// The io_uring engine. A few rings, each guarded by its own mutex, so that several threads
// (the demotion writer, request readers) submit at once without sharing a submission queue.
// A batch runs on one ring: up to queue_depth ops in flight, refilled as completions arrive.
//
// Every ring has the device's fd registered (IOSQE_FIXED_FILE saves the per-op fd lookup) and
// the memory given to RegisterMemory registered as fixed buffers: a single-segment op whose
// bytes lie inside one of them goes out as READ_FIXED / WRITE_FIXED, which skips pinning the
// pages on every op. Multi-segment ops (a record's header and payload) use READV / WRITEV.
#include <liburing.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kvtier/common/units.h"
#include "spdlog/spdlog.h"
#include "tiers/src/nvme/io_engine.h"
#include "tiers/src/nvme/io_util.h"

namespace kvtier::tiers::nvme {
namespace {

// The kernel refuses fixed buffers larger than 1 GiB; larger memory is registered in pieces.
constexpr size_t kMaxFixedBuffer = size_t{1} << 30;

struct Ring {
  absl::Mutex mu;
  // Held by a stream (RunStream), which may keep the ring for as long as its producer has work:
  // a submitter that must wait for a ring waits for another one.
  std::atomic<bool> streaming{false};
  io_uring ring ABSL_GUARDED_BY(mu);
  // What is registered on this ring, in table order: every registration the kernel accepted
  // for it (a refused one leaves the earlier ones in place).
  std::vector<iovec> fixed ABSL_GUARDED_BY(mu);
};

// Progress of one op across short transfers and retries.
struct Pending {
  IoOp* op = nullptr;
  iovec iov[IoOp::kMaxSegments];
  int first = 0;
  int count = 0;
  uint64_t offset = 0;
  int fixed_index = -1;  // fixed-buffer table index for single-segment ops, or -1
};

class UringEngine final : public IoEngine {
 public:
  UringEngine(uint32_t queue_depth, std::vector<std::unique_ptr<Ring>> rings)
      : queue_depth_(queue_depth), rings_(std::move(rings)) {}

  ~UringEngine() override {
    for (auto& r : rings_) {
      absl::MutexLock lock(&r->mu);
      // Dropped before the ring so that the file and the pinned pages are let go at once rather
      // than when the kernel gets round to the ring's deferred teardown.
      if (!r->fixed.empty()) io_uring_unregister_buffers(&r->ring);
      io_uring_unregister_files(&r->ring);
      io_uring_queue_exit(&r->ring);
    }
  }

  std::string_view name() const override { return "io_uring"; }

  absl::Status RegisterMemory(std::span<std::byte> memory) override {
    // Nothing to register: asking the kernel for an empty table would fail, and its log line
    // would use up the one that a real refusal needs.
    if (memory.empty()) return absl::OkStatus();
    std::vector<iovec> pieces;
    for (size_t done = 0; done < memory.size(); done += kMaxFixedBuffer) {
      pieces.push_back({memory.data() + done, std::min(kMaxFixedBuffer, memory.size() - done)});
    }
    absl::MutexLock reg_lock(&register_mu_);
    size_t refused = 0;
    int err = 0;
    for (auto& r : rings_) {
      absl::MutexLock lock(&r->mu);
      std::vector<iovec> wanted = r->fixed;
      wanted.insert(wanted.end(), pieces.begin(), pieces.end());
      // A ring's table is replaced whole: the kernel adds no buffers to a registered table.
      if (!r->fixed.empty()) io_uring_unregister_buffers(&r->ring);
      const int rc =
          io_uring_register_buffers(&r->ring, wanted.data(), static_cast<unsigned>(wanted.size()));
      if (rc == 0) {
        r->fixed = std::move(wanted);
        continue;
      }
      ++refused;
      err = -rc;
      // Put back what the ring had, so that a refusal costs only the new memory. (Every ring
      // pins its own table: the later rings of a large registration are the ones refused.)
      if (!r->fixed.empty() &&
          io_uring_register_buffers(&r->ring, r->fixed.data(),
                                    static_cast<unsigned>(r->fixed.size())) < 0) {
        r->fixed.clear();
      }
    }
    if (refused > 0) {
      static std::atomic<bool> logged{false};
      if (!logged.exchange(true)) {
        spdlog::warn(
            "io_uring: cannot register {} of I/O buffers on {} of {} ring(s) ({}); NVMe I/O into "
            "it goes on without fixed buffers, only slower. Each ring pins the memory: raise "
            "RLIMIT_MEMLOCK to at least {} x {} (e.g. LimitMEMLOCK=infinity) to enable them",
            FormatByteSize(memory.size()), refused, rings_.size(), std::strerror(err),
            rings_.size(), FormatByteSize(memory.size()));
      }
    }
    return absl::OkStatus();
  }

  void Run(std::span<IoOp* const> ops, absl::FunctionRef<void(IoOp*)> on_complete) override {
    if (ops.empty()) return;
    Ring& r = AcquireRing();
    RunOnRing(r, ops, on_complete, [] { return std::span<IoOp* const>(); });
    r.mu.Unlock();
  }

  void RunStream(std::span<IoOp* const> ops, absl::FunctionRef<void(IoOp*)> on_complete,
                 absl::FunctionRef<std::span<IoOp* const>()> more) override {
    if (ops.empty()) return;
    Ring& r = AcquireRing();
    r.streaming.store(true, std::memory_order_relaxed);
    RunOnRing(r, ops, on_complete, more);
    r.streaming.store(false, std::memory_order_relaxed);
    r.mu.Unlock();
  }

 private:
  // Any idle ring, else waits for one picked round-robin among those no stream holds (a
  // stream keeps its ring as long as its producer has work: a reader waiting behind it could
  // wait for the whole of a write burst). Returns it locked.
  Ring& AcquireRing() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto& r : rings_) {
      if (r->mu.TryLock()) return *r;
    }
    size_t pick = next_ring_.fetch_add(1, std::memory_order_relaxed) % rings_.size();
    for (size_t tries = 0; tries < rings_.size(); ++tries) {
      if (!rings_[pick]->streaming.load(std::memory_order_relaxed)) break;
      pick = (pick + 1) % rings_.size();
    }
    Ring& r = *rings_[pick];
    r.mu.Lock();
    return r;
  }

  // Runs `ops` on the ring, then whatever `more()` adds while there is room, until nothing is
  // in flight and `more()` has nothing. Completions are handled on this thread.
  void RunOnRing(Ring& r, std::span<IoOp* const> ops, absl::FunctionRef<void(IoOp*)> on_complete,
                 absl::FunctionRef<std::span<IoOp* const>()> more)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
    // Progress records live in `storage` (stable addresses: completions point at them) and are
    // reused once their op is done, so that a long stream needs only as many as are alive.
    std::deque<Pending> storage;
    std::vector<Pending*> unused;
    std::deque<Pending*> ready;
    auto add = [&](std::span<IoOp* const> batch) {
      for (IoOp* op : batch) {
        Pending* p;
        if (unused.empty()) {
          p = &storage.emplace_back();
        } else {
          p = unused.back();
          unused.pop_back();
          *p = Pending{};
        }
        p->op = op;
        p->offset = op->offset;
        p->count = static_cast<int>(op->segments.size());
        for (int s = 0; s < p->count; ++s) {
          p->iov[s] = {op->segments[s].data, op->segments[s].length};
        }
        if (p->count == 1) p->fixed_index = FixedIndex(r, p->iov[0]);
        ready.push_back(p);
      }
    };
    add(ops);
    size_t in_flight = 0;
    auto refill = [&] {
      while (!ready.empty() && in_flight < queue_depth_) {
        io_uring_sqe* sqe = io_uring_get_sqe(&r.ring);
        if (sqe == nullptr) break;
        Prepare(sqe, *ready.front());
        ready.pop_front();
        ++in_flight;
      }
    };
    bool broken = false;  // the ring failed: finish what is in flight, take nothing more
    std::vector<IoOp*> finished;
    while (true) {
      if (!broken && ready.empty() && in_flight < queue_depth_) add(more());
      if (ready.empty() && in_flight == 0) break;
      refill();
      const int rc = io_uring_submit_and_wait(&r.ring, 1);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        // The ring itself failed: fail what has not been submitted. The kernel still owns the
        // submitted ops' buffers, so their completions are awaited below before returning.
        const absl::Status status = ErrnoStatus(-rc, "io_uring_submit");
        for (Pending* p : ready) {
          p->op->status = status;
          finished.push_back(p->op);
        }
        ready.clear();
        broken = true;
      }
      io_uring_cqe* cqe;
      while (in_flight > 0 && io_uring_peek_cqe(&r.ring, &cqe) == 0) {
        Pending* p = static_cast<Pending*>(io_uring_cqe_get_data(cqe));
        const int res = cqe->res;
        io_uring_cqe_seen(&r.ring, cqe);
        --in_flight;
        if (Complete(*p, res, ready)) {
          finished.push_back(p->op);
          unused.push_back(p);
        }
      }
      if (finished.empty()) {
        if (rc < 0 && ready.empty() && in_flight > 0) (void)io_uring_wait_cqe(&r.ring, &cqe);
        continue;
      }
      // Keep the device busy while the caller looks at what finished.
      refill();
      (void)io_uring_submit(&r.ring);
      for (IoOp* op : finished) on_complete(op);
      finished.clear();
    }
  }

  void Prepare(io_uring_sqe* sqe, Pending& p) {
    const bool write = p.op->type == IoOp::Type::kWrite;
    const int remaining = p.count - p.first;
    if (p.fixed_index >= 0) {
      const iovec& v = p.iov[p.first];
      if (write) {
        io_uring_prep_write_fixed(sqe, 0, v.iov_base, static_cast<unsigned>(v.iov_len), p.offset,
                                  p.fixed_index);
      } else {
        io_uring_prep_read_fixed(sqe, 0, v.iov_base, static_cast<unsigned>(v.iov_len), p.offset,
                                 p.fixed_index);
      }
    } else if (remaining == 1) {
      const iovec& v = p.iov[p.first];
      if (write) {
        io_uring_prep_write(sqe, 0, v.iov_base, static_cast<unsigned>(v.iov_len), p.offset);
      } else {
        io_uring_prep_read(sqe, 0, v.iov_base, static_cast<unsigned>(v.iov_len), p.offset);
      }
    } else if (write) {
      io_uring_prep_writev(sqe, 0, p.iov + p.first, static_cast<unsigned>(remaining), p.offset);
    } else {
      io_uring_prep_readv(sqe, 0, p.iov + p.first, static_cast<unsigned>(remaining), p.offset);
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, &p);
  }

  // Records a completion; true when the op is done (its status set), false when it goes round
  // again (retry, or the rest of a short transfer).
  static bool Complete(Pending& p, int res, std::deque<Pending*>& ready) {
    const bool write = p.op->type == IoOp::Type::kWrite;
    if (res == -EINTR || res == -EAGAIN) {
      ready.push_back(&p);
      return false;
    }
    if (res < 0) {
      p.op->status = ErrnoStatus(
          -res, absl::StrCat("io_uring ", write ? "write" : "read", " at offset ", p.offset));
      return true;
    }
    if (res == 0) {
      p.op->status = absl::UnavailableError(absl::StrCat(
          "short ", write ? "write" : "read", " at offset ", p.offset, ": end of device"));
      return true;
    }
    // Short transfers are rare with O_DIRECT but legal: continue from where it stopped.
    p.offset += static_cast<uint64_t>(res);
    size_t left = static_cast<size_t>(res);
    while (p.first < p.count && left >= p.iov[p.first].iov_len) left -= p.iov[p.first++].iov_len;
    if (p.first == p.count) {
      p.op->status = absl::OkStatus();
      return true;
    }
    p.iov[p.first].iov_base = static_cast<std::byte*>(p.iov[p.first].iov_base) + left;
    p.iov[p.first].iov_len -= left;
    ready.push_back(&p);
    return false;
  }

  static int FixedIndex(const Ring& r, const iovec& v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
    const auto* begin = static_cast<const std::byte*>(v.iov_base);
    for (size_t i = 0; i < r.fixed.size(); ++i) {
      const auto* base = static_cast<const std::byte*>(r.fixed[i].iov_base);
      if (begin >= base && begin + v.iov_len <= base + r.fixed[i].iov_len) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }

  const uint32_t queue_depth_;
  std::vector<std::unique_ptr<Ring>> rings_;
  std::atomic<size_t> next_ring_{0};
  absl::Mutex register_mu_;  // one registration at a time
};

}  // namespace

absl::StatusOr<std::unique_ptr<IoEngine>> NewUringEngine(int fd, uint32_t queue_depth,
                                                         uint32_t ring_count) {
  std::vector<std::unique_ptr<Ring>> rings;
  for (uint32_t i = 0; i < ring_count; ++i) {
    auto r = std::make_unique<Ring>();
    absl::MutexLock lock(&r->mu);
    int rc = io_uring_queue_init(queue_depth, &r->ring, 0);
    if (rc < 0) {
      for (auto& done : rings) {
        absl::MutexLock done_lock(&done->mu);
        io_uring_queue_exit(&done->ring);
      }
      return ErrnoStatus(-rc, "io_uring_queue_init");
    }
    rc = io_uring_register_files(&r->ring, &fd, 1);
    if (rc < 0) {
      io_uring_queue_exit(&r->ring);
      for (auto& done : rings) {
        absl::MutexLock done_lock(&done->mu);
        io_uring_queue_exit(&done->ring);
      }
      return ErrnoStatus(-rc, "io_uring_register_files");
    }
    rings.push_back(std::move(r));
  }
  return std::unique_ptr<IoEngine>(new UringEngine(queue_depth, std::move(rings)));
}

}  // namespace kvtier::tiers::nvme
