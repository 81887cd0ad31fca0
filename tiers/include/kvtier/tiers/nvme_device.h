// NvmeDevice: the block store under the NVMe tier, in the manner of LevelDB's Env and CacheLib
// Navy's Device. The tier reaches the file or raw block device only through this interface, so
// tests run it over an in-memory device that can plant corruption and fail writes
// (kvtier/tiers/testing/nvme_memory_device.h, test-only target kvtier_tiers_nvme_testing).
//
// I/O is direct (O_DIRECT): every op's offset, every segment's address and every segment's
// length must be multiples of alignment(). Ops are submitted in batches; a device keeps up to
// its queue depth in flight and Submit blocks until the whole batch has completed.
//
// Two engines open a file or block device (OpenFileDevice):
//   - io_uring: a small pool of rings, each with the file registered (IOSQE_FIXED_FILE) and the
//     memory passed to RegisterMemory registered as fixed buffers (READ_FIXED / WRITE_FIXED for
//     single-segment ops that fall inside it);
//   - a thread pool running preadv/pwritev, used where io_uring is unavailable (EPERM/ENOSYS as
//     under Docker's default seccomp profile or gVisor; logged once) or when forced by options.
//
// Thread-safe: Submit, Sync and RegisterMemory may be called from any thread at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvtier::tiers {

// One aligned piece of memory read into or written from, back to back with the op's others.
struct IoSegment {
  std::byte* data = nullptr;
  size_t length = 0;
};

// One read or write of consecutive device bytes starting at `offset`.
struct IoOp {
  enum class Type { kRead, kWrite };
  Type type = Type::kRead;
  uint64_t offset = 0;
  // Caller-owned; must stay valid until Submit returns. At most kMaxSegments.
  std::span<const IoSegment> segments;
  // Set by Submit: OK when every byte was transferred.
  absl::Status status;

  static constexpr size_t kMaxSegments = 8;
};

class NvmeDevice {
 public:
  virtual ~NvmeDevice() = default;

  // Usable bytes, from offset 0. Fixed for the device's life.
  virtual uint64_t size_bytes() const = 0;
  // Alignment of offsets, lengths and buffer addresses; a power of two >= 4096.
  virtual uint32_t alignment() const = 0;
  // "io_uring", "thread_pool" or "memory": which engine serves the I/O (for logs and stats).
  virtual std::string_view engine() const = 0;

  // Makes `memory` eligible for registered-buffer I/O (io_uring fixed buffers) for the rest of
  // the device's life; ops on unregistered memory work too, only slower. Best effort: returns
  // OK and logs once when the kernel refuses (e.g. RLIMIT_MEMLOCK), since nothing depends on
  // it. REQUIRES: `memory` is aligned and outlives the device. Blocks until in-flight batches
  // on every ring have finished.
  virtual absl::Status RegisterMemory(std::span<std::byte> memory) { return absl::OkStatus(); }

  // Runs every op, up to the device's queue depth at a time, and blocks until all have
  // completed. Sets each op's status and returns the first failure (or OK). Errors:
  // kResourceExhausted for ENOSPC/EDQUOT, kUnavailable for other I/O errors (EIO, ...),
  // kInvalidArgument for misaligned or out-of-range ops (a caller bug; nothing is submitted
  // for such an op).
  //
  // `on_complete(i)` runs once for each ops[i] as soon as its status is set, while later ops
  // are still in flight, so that a caller can work on finished data (verify a checksum) without
  // leaving the device idle. It runs on the calling thread or on an I/O thread, possibly for
  // several ops at once: it must be thread-safe across different ops. Submit returns after the
  // last call has returned.
  virtual absl::Status Submit(std::span<IoOp> ops,
                              absl::FunctionRef<void(size_t op_index)> on_complete) = 0;
  absl::Status Submit(std::span<IoOp> ops) {
    return Submit(ops, [](size_t) {});
  }

  // Submit for a producer whose work arrives while earlier ops are in flight (the NVMe tier's
  // write stage): runs `ops`, and whenever every op given so far has been submitted and the
  // queue has room, asks `more()` for further ops, which join the same submission and share its
  // queue depth, so that the device is not left to drain between one batch and the next. An
  // empty span from `more()` means "none yet": it is asked again as ops complete, and
  // SubmitStream returns once nothing is in flight and `more()` still has none.
  //
  // `on_complete(op)` runs once per op, as Submit's does, possibly on an I/O thread while
  // `more()` runs on the calling one; after it returns, the device does not touch that op
  // again once it next calls `more()` or returns, so the caller may free an op (and its
  // buffers) from inside `more()` or afterwards, never from `on_complete`. Ops returned by
  // `more()` must stay valid until then; the span itself only until the next call. Returns the
  // first failure (or OK); each op's status says which failed.
  //
  // This default runs each batch with Submit, asking `more()` after the batch has completed:
  // correct everywhere, overlapped nowhere. Both file engines overlap them (io_uring keeps its
  // queue full; the thread pool asks as soon as its workers have taken every op).
  virtual absl::Status SubmitStream(std::span<IoOp> ops, absl::FunctionRef<void(IoOp&)> on_complete,
                                    absl::FunctionRef<std::span<IoOp>()> more) {
    absl::Status first;
    for (std::span<IoOp> batch = ops; !batch.empty(); batch = more()) {
      absl::Status s = Submit(batch, [&](size_t i) { on_complete(batch[i]); });
      if (first.ok()) first = std::move(s);
    }
    return first;
  }

  // Makes every write that completed before the call durable (fdatasync). kUnavailable on
  // failure, after which the state of those writes is unknown.
  virtual absl::Status Sync() = 0;
};

struct NvmeDeviceOptions {
  enum class Engine {
    kAuto,        // io_uring, or the thread pool (logged once) if io_uring is unavailable
    kIoUring,     // io_uring or an error from OpenFileDevice
    kThreadPool,  // always the thread pool (for hosts where io_uring is unwanted, and tests)
  };

  // A regular file or a block device. Required. A missing regular file is created (see
  // create_if_missing); its directory must exist.
  std::string path;
  // Bytes to use. For a regular file: the file's size (a new or empty file is sized to it with
  // fallocate; an existing file of another size is an error, so that a typo cannot destroy a
  // cache). 0 means "the existing file's size". For a block device: at most the device's size;
  // 0 means the whole device. Rounded down to alignment().
  uint64_t capacity_bytes = 0;
  // Create `path` if it does not exist (regular files only). Default true.
  bool create_if_missing = true;
  Engine engine = Engine::kAuto;
  // Ops in flight per submitter: the io_uring ring size, or the thread pool's size. Default 32.
  // Range 1..4096.
  uint32_t queue_depth = 32;
  // io_uring rings, so that this many threads can submit batches at once (a reader's small
  // batch does not wait behind a writer's large one). Default 4. Range 1..64.
  uint32_t rings = 4;
  // Open with O_DIRECT. Default true. Where the filesystem refuses O_DIRECT (tmpfs), the device
  // falls back to buffered I/O and logs it once; alignment rules still apply.
  bool direct_io = true;

  // kInvalidArgument naming the bad option.
  absl::Status Validate() const;
};

// Opens (creating if allowed) and checks the file or block device. Errors with the path in the
// message: kNotFound (path or its directory missing), kFailedPrecondition (existing file of
// another size than capacity_bytes, not a regular file or block device, capacity larger than a
// block device), kResourceExhausted (the filesystem cannot hold capacity_bytes),
// kPermissionDenied, kUnavailable (io_uring forced but unavailable; the device is locked by
// another process). The device holds an exclusive flock on the file while it is open.
absl::StatusOr<std::unique_ptr<NvmeDevice>> OpenFileDevice(const NvmeDeviceOptions& options);

}  // namespace kvtier::tiers
