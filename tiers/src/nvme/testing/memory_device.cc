#include <algorithm>
#include <cstring>

#include "kvtier/tiers/testing/nvme_memory_device.h"
#include "tiers/src/nvme/io_util.h"

namespace kvtier::tiers::testing {

void MemoryMedium::FlipByte(uint64_t offset, uint8_t mask) {
  absl::MutexLock lock(&mu_);
  bytes_[offset] ^= std::byte{mask};
}

void MemoryMedium::Overwrite(uint64_t offset, std::span<const std::byte> data) {
  absl::MutexLock lock(&mu_);
  std::memcpy(bytes_.data() + offset, data.data(), data.size());
}

std::vector<std::byte> MemoryMedium::Read(uint64_t offset, uint64_t length) const {
  absl::MutexLock lock(&mu_);
  return {bytes_.begin() + static_cast<ptrdiff_t>(offset),
          bytes_.begin() + static_cast<ptrdiff_t>(offset + length)};
}

void MemoryMedium::FailWritesAfter(uint64_t budget_bytes, int err, bool torn) {
  absl::MutexLock lock(&mu_);
  fail_writes_ = true;
  write_budget_ = budget_bytes;
  write_errno_ = err;
  torn_writes_ = torn;
}

void MemoryMedium::OnWrite(std::function<void()> hook) {
  absl::MutexLock lock(&mu_);
  on_write_ = std::move(hook);
}

void MemoryMedium::FailReads(int err) {
  absl::MutexLock lock(&mu_);
  read_errno_ = err;
}

void MemoryMedium::FailSyncs(int err) {
  absl::MutexLock lock(&mu_);
  sync_errno_ = err;
}

void MemoryMedium::ClearFaults() {
  absl::MutexLock lock(&mu_);
  fail_writes_ = false;
  torn_writes_ = false;
  read_errno_ = 0;
  sync_errno_ = 0;
}

uint64_t MemoryMedium::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

uint64_t MemoryMedium::syncs() const {
  absl::MutexLock lock(&mu_);
  return syncs_;
}

absl::Status MemoryMedium::Transfer(const IoOp& op) {
  if (op.type == IoOp::Type::kWrite) {
    std::function<void()> hook;
    {
      absl::MutexLock lock(&mu_);
      hook = on_write_;
    }
    // Outside the lock: the hook may take the test's own locks or wait for another thread.
    if (hook) hook();
  }
  absl::MutexLock lock(&mu_);
  const size_t total = nvme::IoOpBytes(op);
  // Bytes to move; fewer than `total` for a torn write, which then fails.
  size_t transfer = total;
  absl::Status status;
  if (op.type == IoOp::Type::kRead) {
    if (read_errno_ != 0) return nvme::ErrnoStatus(read_errno_, "memory read");
  } else if (fail_writes_) {
    if (total > write_budget_) {
      status = nvme::ErrnoStatus(write_errno_, "memory write");
      if (!torn_writes_) return status;
      transfer = write_budget_;
    }
    write_budget_ -= transfer;
  }
  uint64_t offset = op.offset;
  for (const IoSegment& s : op.segments) {
    if (transfer == 0) break;
    const size_t n = std::min(s.length, transfer);
    if (op.type == IoOp::Type::kRead) {
      std::memcpy(s.data, bytes_.data() + offset, n);
    } else {
      std::memcpy(bytes_.data() + offset, s.data, n);
    }
    offset += n;
    transfer -= n;
  }
  if (op.type == IoOp::Type::kWrite && status.ok()) ++writes_;
  return status;
}

absl::Status MemoryMedium::Sync() {
  absl::MutexLock lock(&mu_);
  if (sync_errno_ != 0) return nvme::ErrnoStatus(sync_errno_, "memory sync");
  ++syncs_;
  return absl::OkStatus();
}

class MemoryDevice final : public NvmeDevice {
 public:
  MemoryDevice(std::shared_ptr<MemoryMedium> medium, uint32_t alignment)
      : medium_(std::move(medium)), alignment_(alignment) {}

  uint64_t size_bytes() const override { return medium_->size_bytes() / alignment_ * alignment_; }
  uint32_t alignment() const override { return alignment_; }
  std::string_view engine() const override { return "memory"; }

  using NvmeDevice::Submit;
  absl::Status Submit(std::span<IoOp> ops, absl::FunctionRef<void(size_t)> on_complete) override {
    absl::Status first;
    for (size_t i = 0; i < ops.size(); ++i) {
      ops[i].status = Run(ops[i]);
      if (first.ok()) first = ops[i].status;
      on_complete(i);
    }
    return first;
  }

  absl::Status Sync() override { return medium_->Sync(); }

 private:
  absl::Status Run(IoOp& op) {
    absl::Status valid = nvme::ValidateIoOp(op, alignment_, size_bytes());
    if (!valid.ok()) return valid;
    return medium_->Transfer(op);
  }

  std::shared_ptr<MemoryMedium> medium_;
  const uint32_t alignment_;
};

std::unique_ptr<NvmeDevice> NewMemoryDevice(std::shared_ptr<MemoryMedium> medium,
                                            uint32_t alignment) {
  return std::make_unique<MemoryDevice>(std::move(medium), alignment);
}

}  // namespace kvtier::tiers::testing
