// OpenFileDevice: opens and checks the file or block device behind the NVMe tier, works out the
// direct-I/O alignment, and picks the I/O engine.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "kvtier/common/units.h"
#include "kvtier/tiers/nvme_device.h"
#include "spdlog/spdlog.h"
#include "tiers/src/nvme/io_engine.h"
#include "tiers/src/nvme/io_util.h"

namespace kvtier::tiers {
namespace {

using nvme::ErrnoStatus;

constexpr uint32_t kMinAlignment = 4096;

void LogOnce(std::atomic<bool>& flag, const std::string& line) {
  if (!flag.exchange(true)) spdlog::warn("{}", line);
}

class FileDevice final : public NvmeDevice {
 public:
  FileDevice(int fd, uint64_t size, uint32_t alignment, std::unique_ptr<nvme::IoEngine> engine)
      : fd_(fd), size_(size), alignment_(alignment), engine_(std::move(engine)) {}
  ~FileDevice() override {
    engine_.reset();  // its threads and rings use fd_
    // Unlock explicitly: a ring that had the file registered may hold a reference to it for a
    // moment after its teardown, and the lock lives as long as any reference does.
    flock(fd_, LOCK_UN);
    close(fd_);
  }

  uint64_t size_bytes() const override { return size_; }
  uint32_t alignment() const override { return alignment_; }
  std::string_view engine() const override { return engine_->name(); }

  absl::Status RegisterMemory(std::span<std::byte> memory) override {
    if ((reinterpret_cast<uintptr_t>(memory.data()) & (alignment_ - 1)) != 0) {
      return absl::InvalidArgumentError("RegisterMemory: memory is not aligned");
    }
    return engine_->RegisterMemory(memory);
  }

  using NvmeDevice::Submit;
  absl::Status Submit(std::span<IoOp> ops, absl::FunctionRef<void(size_t)> on_complete) override {
    std::vector<IoOp*> valid;
    valid.reserve(ops.size());
    for (IoOp& op : ops) {
      op.status = nvme::ValidateIoOp(op, alignment_, size_);
      if (op.status.ok()) {
        valid.push_back(&op);
      } else {
        on_complete(static_cast<size_t>(&op - ops.data()));
      }
    }
    engine_->Run(valid, [&](IoOp* op) { on_complete(static_cast<size_t>(op - ops.data())); });
    for (const IoOp& op : ops) {
      if (!op.status.ok()) return op.status;
    }
    return absl::OkStatus();
  }

  absl::Status SubmitStream(std::span<IoOp> ops, absl::FunctionRef<void(IoOp&)> on_complete,
                            absl::FunctionRef<std::span<IoOp>()> more) override {
    absl::Mutex first_mu;  // the thread pool engine completes ops on its workers
    absl::Status first;
    auto complete = [&](IoOp& op) {
      if (!op.status.ok()) {
        absl::MutexLock lock(&first_mu);
        if (first.ok()) first = op.status;
      }
      on_complete(op);
    };
    // The engine gets the valid ops of each batch; an invalid one is finished here at once.
    // A batch with none valid asks for the next, so that "none" still means none yet.
    std::vector<IoOp*> valid;
    auto take = [&](std::span<IoOp> batch) -> std::span<IoOp* const> {
      valid.clear();
      while (true) {
        for (IoOp& op : batch) {
          op.status = nvme::ValidateIoOp(op, alignment_, size_);
          if (op.status.ok()) {
            valid.push_back(&op);
          } else {
            complete(op);
          }
        }
        if (!valid.empty() || batch.empty()) return valid;
        batch = more();
      }
    };
    const std::span<IoOp* const> start = take(ops);
    if (!start.empty()) {
      engine_->RunStream(
          start, [&](IoOp* op) { complete(*op); }, [&] { return take(more()); });
    }
    absl::MutexLock lock(&first_mu);
    return first;
  }

  absl::Status Sync() override {
    while (fdatasync(fd_) != 0) {
      if (errno != EINTR) return ErrnoStatus(errno, "fdatasync of the NVMe device");
    }
    return absl::OkStatus();
  }

 private:
  const int fd_;
  const uint64_t size_;
  const uint32_t alignment_;
  std::unique_ptr<nvme::IoEngine> engine_;
};

// The direct-I/O alignment: statx(STATX_DIOALIGN) where the kernel reports it (files since
// Linux 6.1), the logical block size of a block device otherwise, never below 4096 so that
// records stay aligned to flash pages.
uint32_t DirectIoAlignment(int fd, bool block_device) {
  uint32_t align = kMinAlignment;
  struct statx stx;
  std::memset(&stx, 0, sizeof(stx));
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN)) {
    align = std::max({align, stx.stx_dio_offset_align, stx.stx_dio_mem_align});
  } else if (block_device) {
    int logical = 0;
    if (ioctl(fd, BLKSSZGET, &logical) == 0 && logical > 0) {
      align = std::max(align, static_cast<uint32_t>(logical));
    }
  }
  // Not a power of two would be a strange device; round up to one so masks work.
  uint32_t pow2 = kMinAlignment;
  while (pow2 < align) pow2 <<= 1;
  return pow2;
}

absl::Status CheckMissingPath(const NvmeDeviceOptions& o) {
  const std::filesystem::path path(o.path);
  std::error_code ec;
  const std::filesystem::path dir =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("NVMe path ", o.path, ": directory ", dir.string(),
                                            " does not exist; create it or point --nvme-path "
                                            "at an existing directory"));
  }
  if (!o.create_if_missing) {
    return absl::NotFoundError(absl::StrCat("NVMe path ", o.path, " does not exist"));
  }
  if (o.capacity_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("NVMe path ", o.path,
                     " does not exist and no capacity was given to create it: pass "
                     "--nvme-capacity (e.g. 64GiB)"));
  }
  return absl::OkStatus();
}

// Sizes a new or empty regular file: fallocate reserves the blocks now, so that a full
// filesystem is reported at startup instead of as ENOSPC under load.
absl::Status SizeNewFile(int fd, const NvmeDeviceOptions& o) {
  if (fallocate(fd, 0, 0, static_cast<off_t>(o.capacity_bytes)) == 0) return absl::OkStatus();
  const int err = errno;
  if (err == ENOSPC || err == EDQUOT) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "NVMe path ", o.path, ": the filesystem cannot hold --nvme-capacity ",
        FormatByteSize(o.capacity_bytes), " (ENOSPC); free space or lower --nvme-capacity"));
  }
  if (err != EOPNOTSUPP) return ErrnoStatus(err, absl::StrCat("fallocate ", o.path));
  if (ftruncate(fd, static_cast<off_t>(o.capacity_bytes)) != 0) {
    return ErrnoStatus(errno, absl::StrCat("ftruncate ", o.path));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> UsableBytes(int fd, const struct stat& st, bool created,
                                     const NvmeDeviceOptions& o) {
  if (S_ISBLK(st.st_mode)) {
    uint64_t dev_bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &dev_bytes) != 0) {
      return ErrnoStatus(errno, absl::StrCat("BLKGETSIZE64 ", o.path));
    }
    if (o.capacity_bytes > dev_bytes) {
      return absl::FailedPreconditionError(
          absl::StrCat("block device ", o.path, " holds ", FormatByteSize(dev_bytes),
                       ", less than --nvme-capacity ", FormatByteSize(o.capacity_bytes),
                       "; lower --nvme-capacity or pass 0 for the whole device"));
    }
    return o.capacity_bytes == 0 ? dev_bytes : o.capacity_bytes;
  }
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  if (created || file_bytes == 0) {
    if (o.capacity_bytes == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "NVMe file ", o.path, " is empty and no capacity was given: pass --nvme-capacity"));
    }
    KVTIER_RETURN_IF_ERROR(SizeNewFile(fd, o));
    return o.capacity_bytes;
  }
  if (o.capacity_bytes != 0 && file_bytes != o.capacity_bytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "NVMe file ", o.path, " is ", file_bytes, " bytes (", FormatByteSize(file_bytes),
        ") but --nvme-capacity is ", o.capacity_bytes, " bytes (", FormatByteSize(o.capacity_bytes),
        "): pass --nvme-capacity ", file_bytes,
        " to keep its contents, or delete the file to start an empty tier of the new size"));
  }
  return file_bytes;
}

}  // namespace

absl::Status NvmeDeviceOptions::Validate() const {
  if (path.empty()) return absl::InvalidArgumentError("NVMe device path is empty (--nvme-path)");
  if (queue_depth < 1 || queue_depth > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("NVMe queue_depth ", queue_depth, " must be in 1..4096"));
  }
  if (rings < 1 || rings > 64) {
    return absl::InvalidArgumentError(absl::StrCat("NVMe rings ", rings, " must be in 1..64"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<NvmeDevice>> OpenFileDevice(const NvmeDeviceOptions& o) {
  KVTIER_RETURN_IF_ERROR(o.Validate());
  struct stat st;
  bool created = false;
  if (stat(o.path.c_str(), &st) != 0) {
    if (errno != ENOENT) return ErrnoStatus(errno, absl::StrCat("stat ", o.path));
    KVTIER_RETURN_IF_ERROR(CheckMissingPath(o));
    created = true;
  } else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("NVMe path ", o.path, " is neither a regular file nor a block device"));
  }

  int flags = O_RDWR | O_CLOEXEC | (created ? O_CREAT : 0);
  int fd = open(o.path.c_str(), flags | (o.direct_io ? O_DIRECT : 0), 0600);
  if (fd < 0 && errno == EINVAL && o.direct_io) {
    // tmpfs and a few FUSE filesystems refuse O_DIRECT; buffered I/O keeps the tier usable.
    static std::atomic<bool> logged{false};
    LogOnce(logged, absl::StrCat("NVMe path ", o.path,
                                 ": the filesystem refuses O_DIRECT; using buffered I/O (page "
                                 "cache), which is slower and competes with the DRAM tier"));
    fd = open(o.path.c_str(), flags, 0600);
  }
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open NVMe path ", o.path));

  auto fail = [&](absl::Status s) {
    close(fd);
    if (created) unlink(o.path.c_str());
    return s;
  };
  // A process killed a moment ago may still hold the lock while the kernel tears down its
  // io_uring rings, so wait a little before calling the device busy.
  int lock_rc = flock(fd, LOCK_EX | LOCK_NB);
  for (int tries = 0; lock_rc != 0 && errno == EWOULDBLOCK && tries < 100; ++tries) {
    usleep(10'000);
    lock_rc = flock(fd, LOCK_EX | LOCK_NB);
  }
  if (lock_rc != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      return fail(absl::UnavailableError(absl::StrCat(
          "NVMe path ", o.path, " is in use by another process (is another kvtierd running?)")));
    }
    return fail(ErrnoStatus(err, absl::StrCat("flock ", o.path)));
  }
  if (fstat(fd, &st) != 0) return fail(ErrnoStatus(errno, absl::StrCat("fstat ", o.path)));
  const uint32_t alignment = DirectIoAlignment(fd, S_ISBLK(st.st_mode));
  absl::StatusOr<uint64_t> usable = UsableBytes(fd, st, created, o);
  if (!usable.ok()) return fail(usable.status());
  const uint64_t size = *usable / alignment * alignment;

  std::unique_ptr<nvme::IoEngine> engine;
  if (o.engine != NvmeDeviceOptions::Engine::kThreadPool) {
    absl::StatusOr<std::unique_ptr<nvme::IoEngine>> uring =
        nvme::NewUringEngine(fd, o.queue_depth, o.rings);
    if (uring.ok()) {
      engine = std::move(*uring);
    } else if (o.engine == NvmeDeviceOptions::Engine::kIoUring) {
      return fail(absl::UnavailableError(
          absl::StrCat("io_uring is unavailable (", uring.status().message(),
                       "); use the thread-pool engine (--nvme-io-engine thread_pool)")));
    } else {
      static std::atomic<bool> logged{false};
      LogOnce(logged, absl::StrCat("io_uring is unavailable (", uring.status().message(),
                                   "); NVMe I/O uses a pool of ", o.queue_depth,
                                   " pread/pwrite threads instead"));
    }
  }
  if (engine == nullptr) engine = nvme::NewThreadPoolEngine(fd, o.queue_depth);
  return std::unique_ptr<NvmeDevice>(new FileDevice(fd, size, alignment, std::move(engine)));
}

}  // namespace kvtier::tiers
