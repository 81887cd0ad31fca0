// The NVMe tier's superblock: the first alignment unit of the device says what the rest is.
//
// It makes three checks possible at open: that the device holds a kvtier tier at all (so a
// mistyped --nvme-path to someone's database is refused, not overwritten), that the layout
// (format version, capacity, region size, alignment) is the one the options ask for, and that
// the RocksDB index belongs to this device (instance_id, a random number drawn at format time,
// is stored in both places).
//
// Layout (little-endian): 0 magic u64 "KVTNVME1", 8 format u32, 12 alignment u32,
// 16 capacity u64, 24 region bytes u64, 32 data offset u64, 40 region count u32, 44 reserved,
// 48 instance id u64, 56 created (Unix seconds) u64, 64 checksum u64 (XXH3-64 of [0, 64)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/statusor.h"

namespace kvtier::tiers::nvme {

inline constexpr uint32_t kSuperblockFormat = 1;
// Records start here: 1 MiB keeps regions aligned to flash erase blocks.
inline constexpr uint64_t kDataOffset = 1ull << 20;

struct Superblock {
  uint32_t format = kSuperblockFormat;
  uint32_t alignment = 0;
  uint64_t capacity_bytes = 0;
  uint64_t region_bytes = 0;
  uint64_t data_offset = kDataOffset;
  uint32_t region_count = 0;
  uint64_t instance_id = 0;
  uint64_t created_unix_s = 0;

  friend bool operator==(const Superblock&, const Superblock&) = default;
};

// Writes the superblock at the start of `unit` and zeroes the rest. REQUIRES: unit.size() >= 72.
void EncodeSuperblock(const Superblock& sb, std::span<std::byte> unit);

// kNotFound: the unit is all zeros (a new device). kFailedPrecondition: something else that is
// not a kvtier superblock. kDataLoss: a kvtier magic with a bad checksum.
absl::StatusOr<Superblock> DecodeSuperblock(std::span<const std::byte> unit);

}  // namespace kvtier::tiers::nvme
