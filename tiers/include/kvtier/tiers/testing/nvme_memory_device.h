// An in-memory NvmeDevice for tests, with fault injection: plant corrupted bytes, fail writes
// (ENOSPC or EIO after a byte budget, whole or torn), reads or syncs, and run a hook before
// each write (to move a clock or race another thread). Test-only: target
// kvtier_tiers_nvme_testing, never linked into the daemon.
//
// The bytes live in a MemoryMedium that outlives any one device, so a test can close the tier,
// corrupt the medium and open a new tier over it (a restart). Submit enforces the same
// alignment rules as O_DIRECT so that tests catch misaligned I/O.
//
// Thread-safe: one mutex around the medium.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "kvtier/tiers/nvme_device.h"

namespace kvtier::tiers::testing {

class MemoryMedium {
 public:
  explicit MemoryMedium(uint64_t size_bytes) : bytes_(size_bytes) {}

  uint64_t size_bytes() const { return bytes_.size(); }

  // XORs `mask` into the byte at `offset`. REQUIRES: offset < size_bytes().
  void FlipByte(uint64_t offset, uint8_t mask = 0xff);
  // Copies `data` over the medium at `offset`.
  void Overwrite(uint64_t offset, std::span<const std::byte> data);
  // Copy of `length` bytes at `offset`.
  std::vector<std::byte> Read(uint64_t offset, uint64_t length) const;

  // After `budget_bytes` more bytes have been written, every write op fails with `err` (e.g.
  // ENOSPC, EIO) until ClearFaults. A write op that would cross the budget fails whole, or, when
  // `torn`, lands its bytes up to the budget first (a short write the device then reports as
  // failed: what a dying drive or a full thin volume leaves behind).
  void FailWritesAfter(uint64_t budget_bytes, int err, bool torn = false);
  // Every read op fails with `err` until ClearFaults.
  void FailReads(int err);
  // Sync fails with `err` until ClearFaults.
  void FailSyncs(int err);
  void ClearFaults();
  // Runs `hook` before each write op reaches the medium, outside its lock, on the submitting
  // thread; null removes it. Not cleared by ClearFaults.
  void OnWrite(std::function<void()> hook);

  uint64_t writes() const;  // write ops completed
  uint64_t syncs() const;

  // What the device does with an op (already validated) and with Sync, faults applied. Transfer
  // runs the OnWrite hook first for a write.
  absl::Status Transfer(const IoOp& op);
  absl::Status Sync();

 private:
  mutable absl::Mutex mu_;
  std::vector<std::byte> bytes_ ABSL_GUARDED_BY(mu_);
  bool fail_writes_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t write_budget_ ABSL_GUARDED_BY(mu_) = 0;
  bool torn_writes_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_write_ ABSL_GUARDED_BY(mu_);
  int write_errno_ ABSL_GUARDED_BY(mu_) = 0;
  int read_errno_ ABSL_GUARDED_BY(mu_) = 0;
  int sync_errno_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
};

// A device over `medium` (shared with the test). `alignment`: a power of two >= 4096.
std::unique_ptr<NvmeDevice> NewMemoryDevice(std::shared_ptr<MemoryMedium> medium,
                                            uint32_t alignment = 4096);

}  // namespace kvtier::tiers::testing
