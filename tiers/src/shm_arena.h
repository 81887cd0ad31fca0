// ShmArena: the DRAM tier's shared-memory arena -- one sealed memfd, mapped read/write by the
// daemon and (through the fd) by every local client.
//
// Layout:
//   [generation table: one uint64 per page of the whole arena, table_bytes()]
//   [data: data_bytes(), page-aligned, starting at data_offset() == table_bytes()]
// The generation of the slot at arena offset `o` is table entry o / page_bytes. The table
// covers its own pages too (those entries stay 0) so that a client needs only
// `offset / page_bytes` to find a slot's generation, with no layout constants to agree on.
//
// Generations are written only by the daemon (under the tier's lock) with release stores and
// only ever grow; clients read them with acquire loads after copying a slot (seqlock style).
//
// The memfd is sealed against shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW), so a client
// holding the fd cannot truncate it under the daemon's mapping (which would SIGBUS the daemon).
//
// Owns the fd and the mapping; both are released by the destructor. Generation accessors are
// lock-free and may be called from any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvtier::tiers::internal {

class ShmArena {
 public:
  // Size of the generation table for `data_bytes` of data in pages of `page_bytes`: a whole
  // number of pages holding one uint64 per page of table + data.
  // REQUIRES: page_bytes is a power of two >= 8; data_bytes is a multiple of page_bytes.
  static uint64_t TableBytesFor(uint32_t page_bytes, uint64_t data_bytes);

  // Creates the memfd (MFD_CLOEXEC | MFD_ALLOW_SEALING) named `name`, sizes it to table + data,
  // optionally reserves the memory (fallocate), seals its size and maps it MAP_SHARED.
  // `preallocate` makes a host without enough memory fail here rather than with SIGBUS on the
  // first touch of a page. Errors: kResourceExhausted (the memory or fds cannot be had; the
  // message names --dram-capacity), kInternal otherwise; both carry the errno text.
  // REQUIRES: as for TableBytesFor.
  static absl::StatusOr<std::unique_ptr<ShmArena>> Create(std::string_view name,
                                                          uint32_t page_bytes, uint64_t data_bytes,
                                                          bool preallocate);
  ~ShmArena();
  ShmArena(const ShmArena&) = delete;
  ShmArena& operator=(const ShmArena&) = delete;

  int fd() const { return fd_; }
  std::byte* base() const { return base_; }
  uint64_t size() const { return size_; }
  uint32_t page_bytes() const { return page_bytes_; }
  uint64_t table_bytes() const { return table_bytes_; }
  uint64_t data_offset() const { return table_bytes_; }
  uint64_t data_bytes() const { return size_ - table_bytes_; }

  // The generation of the page at arena offset `offset`. REQUIRES: offset < size().
  uint64_t Generation(uint64_t offset) const {
    return std::atomic_ref<uint64_t>(table_[offset / page_bytes_]).load(std::memory_order_acquire);
  }
  // Adds one to that generation with a release store. Single writer: the caller serializes
  // bumps (the tier's lock), so load + store needs no read-modify-write.
  void BumpGeneration(uint64_t offset) {
    std::atomic_ref<uint64_t> g(table_[offset / page_bytes_]);
    g.store(g.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

 private:
  ShmArena(int fd, std::byte* base, uint64_t size, uint32_t page_bytes, uint64_t table_bytes);

  const int fd_;
  std::byte* const base_;
  const uint64_t size_;
  const uint32_t page_bytes_;
  const uint64_t table_bytes_;
  uint64_t* const table_;
};

}  // namespace kvtier::tiers::internal
