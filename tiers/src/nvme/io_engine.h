// IoEngine: how a file device moves bytes. FileDevice validates ops and owns the fd; an engine
// only runs valid ops against it. Two engines: io_uring (uring_engine.cc) and a pread/pwrite
// thread pool (thread_pool_engine.cc) for hosts where io_uring is unavailable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/tiers/nvme_device.h"

namespace kvtier::tiers::nvme {

class IoEngine {
 public:
  virtual ~IoEngine() = default;
  virtual std::string_view name() const = 0;
  // As NvmeDevice::RegisterMemory.
  virtual absl::Status RegisterMemory(std::span<std::byte> memory) = 0;
  // Runs every op (all valid), sets each one's status and calls on_complete(op) as it
  // completes (see NvmeDevice::Submit); blocks until all have completed. Thread-safe.
  virtual void Run(std::span<IoOp* const> ops, absl::FunctionRef<void(IoOp*)> on_complete) = 0;
  // Run with more ops asked for as room frees up (see NvmeDevice::SubmitStream); `more()`
  // returns valid ops only. This default asks after each batch has completed.
  virtual void RunStream(std::span<IoOp* const> ops, absl::FunctionRef<void(IoOp*)> on_complete,
                         absl::FunctionRef<std::span<IoOp* const>()> more) {
    for (std::span<IoOp* const> batch = ops; !batch.empty(); batch = more()) {
      Run(batch, on_complete);
    }
  }
};

// Sets up `rings` io_uring instances of `queue_depth` entries with `fd` registered. The
// kernel's error when io_uring is unavailable (kPermissionDenied for EPERM, kUnavailable for
// ENOSYS, ...). `fd` must outlive the engine.
absl::StatusOr<std::unique_ptr<IoEngine>> NewUringEngine(int fd, uint32_t queue_depth,
                                                         uint32_t rings);

// `threads` workers running preadv/pwritev on `fd`. `fd` must outlive the engine.
std::unique_ptr<IoEngine> NewThreadPoolEngine(int fd, uint32_t threads);

// Moves every byte of `op` with preadv/pwritev, continuing after short transfers and EINTR.
// Used by the thread pool engine.
absl::Status RunBlocking(int fd, const IoOp& op);

}  // namespace kvtier::tiers::nvme
