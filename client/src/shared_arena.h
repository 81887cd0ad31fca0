// SharedArena: this process's mapping of the daemon's DRAM arena (a memfd received at Hello).
//
// Layout (kvtier.proto ArenaInfo): the arena starts with a generation table of little-endian
// uint64, one per page of page_bytes; block slots live after the table. The daemon bumps a
// slot's generation before it reuses the slot, so a reader that copies a block and then still
// sees the generation the daemon quoted knows its copy is intact (a seqlock read).
//
// Every offset the daemon sends is checked here before it is dereferenced: a daemon bug must
// not make the client scribble over its own memory. Owns the mapping (unmapped on
// destruction). Thread-safe for concurrent copies; the mapping itself is immutable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier.pb.h"

namespace kvtier::client {

class SharedArena {
 public:
  // Maps `info.size_bytes` of `fd` read-write, MAP_SHARED. Always closes `fd` (the mapping
  // keeps the memory alive). Internal when the geometry is inconsistent (a table that does not
  // fit, page_bytes 0); Unavailable when mmap fails.
  static absl::StatusOr<std::unique_ptr<SharedArena>> Map(int fd, const proto::ArenaInfo& info);

  ~SharedArena();
  SharedArena(const SharedArena&) = delete;
  SharedArena& operator=(const SharedArena&) = delete;

  uint64_t size() const { return size_; }

  // Internal unless [offset, offset + length) lies in the slot area after the generation
  // table and its page has a generation entry.
  absl::Status CheckSlot(uint64_t offset, uint64_t length) const;

  // The whole mapping, for callers that register it with a DMA engine (client/cuda).
  std::span<std::byte> memory() const { return {base_, size_}; }
  // The slot's bytes in this mapping. REQUIRES: CheckSlot(offset, length) is OK.
  std::span<std::byte> Slot(uint64_t offset, uint64_t length) const {
    return {base_ + offset, length};
  }

  // The current generation of the slot at `offset` (an acquire load).
  // REQUIRES: CheckSlot(offset, ...) is OK.
  uint64_t Generation(uint64_t offset) const;

 private:
  SharedArena(std::byte* base, uint64_t size, uint64_t table_bytes, uint32_t page_bytes)
      : base_(base), size_(size), table_bytes_(table_bytes), page_bytes_(page_bytes) {}

  std::byte* base_;
  uint64_t size_;
  uint64_t table_bytes_;
  uint32_t page_bytes_;
};

}  // namespace kvtier::client
