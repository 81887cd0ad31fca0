// The fallback engine: a fixed pool of threads doing preadv/pwritev. Its parallelism plays the
// role of io_uring's queue depth: `threads` ops are in flight at most.
#include <sys/uio.h>

#include <cerrno>
#include <deque>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tiers/src/nvme/io_engine.h"
#include "tiers/src/nvme/io_util.h"

namespace kvtier::tiers::nvme {

absl::Status RunBlocking(int fd, const IoOp& op) {
  iovec iov[IoOp::kMaxSegments];
  int first = 0;
  const int count = static_cast<int>(op.segments.size());
  for (int i = 0; i < count; ++i) iov[i] = {op.segments[i].data, op.segments[i].length};
  uint64_t offset = op.offset;
  const bool write = op.type == IoOp::Type::kWrite;
  while (first < count) {
    const ssize_t n = write ? pwritev(fd, iov + first, count - first, static_cast<off_t>(offset))
                            : preadv(fd, iov + first, count - first, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat(write ? "pwritev" : "preadv", " at offset ", offset));
    }
    if (n == 0) {
      return absl::UnavailableError(absl::StrCat("short ", write ? "write" : "read", " at offset ",
                                                 offset, ": end of device"));
    }
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (first < count && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < count) {
      iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return absl::OkStatus();
}

namespace {

class ThreadPoolEngine final : public IoEngine {
 public:
  ThreadPoolEngine(int fd, uint32_t threads) : fd_(fd) {
    workers_.reserve(threads);
    for (uint32_t i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }
  ~ThreadPoolEngine() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : workers_) t.join();
  }

  std::string_view name() const override { return "thread_pool"; }
  absl::Status RegisterMemory(std::span<std::byte>) override { return absl::OkStatus(); }

  void Run(std::span<IoOp* const> ops, absl::FunctionRef<void(IoOp*)> on_complete) override {
    RunStream(ops, on_complete, [] { return std::span<IoOp* const>(); });
  }

  // More ops are asked for as soon as every op given so far has been taken by a worker, so
  // that the workers never wait for the caller between batches; and again after each
  // completion while more() has none, until nothing is left.
  void RunStream(std::span<IoOp* const> ops, absl::FunctionRef<void(IoOp*)> on_complete,
                 absl::FunctionRef<std::span<IoOp* const>()> more) override {
    if (ops.empty()) return;
    Batch batch{0, 0, on_complete};
    absl::MutexLock lock(&mu_);
    auto add = [&](std::span<IoOp* const> next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (IoOp* op : next) queue_.push_back({op, &batch});
      batch.remaining += next.size();
      batch.waiting += next.size();
    };
    add(ops);
    while (true) {
      mu_.Await(absl::Condition(
          +[](Batch* b) { return b->waiting == 0; }, &batch));
      const size_t before = batch.remaining;
      mu_.Unlock();  // more() may take a while (the tier places its next calls)
      const std::span<IoOp* const> next = more();
      mu_.Lock();
      if (!next.empty()) {
        add(next);
        continue;
      }
      if (batch.remaining == 0) return;
      struct Progress {
        const Batch* batch;
        size_t before;
      } progress{&batch, before};
      mu_.Await(absl::Condition(
          +[](Progress* p) { return p->batch->remaining < p->before; }, &progress));
    }
  }

 private:
  struct Batch {
    size_t remaining;  // ops not completed
    size_t waiting;    // ops not yet taken by a worker
    absl::FunctionRef<void(IoOp*)> on_complete;
  };
  struct Task {
    IoOp* op;
    Batch* batch;
  };

  void Work() {
    while (true) {
      Task task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](ThreadPoolEngine* e) { return e->stopping_ || !e->queue_.empty(); }, this));
        if (queue_.empty()) return;  // stopping, and nothing left to do
        task = queue_.front();
        queue_.pop_front();
        --task.batch->waiting;
      }
      task.op->status = RunBlocking(fd_, *task.op);
      // Outside the lock, so that workers verify finished ops in parallel; the batch cannot
      // end before `remaining` drops below.
      task.batch->on_complete(task.op);
      absl::MutexLock lock(&mu_);
      --task.batch->remaining;
    }
  }

  const int fd_;
  absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace

std::unique_ptr<IoEngine> NewThreadPoolEngine(int fd, uint32_t threads) {
  return std::make_unique<ThreadPoolEngine>(fd, threads);
}

}  // namespace kvtier::tiers::nvme
