#include "tiers/src/nvme/superblock.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "tiers/src/nvme/le.h"
#include "tiers/src/nvme/xxh3.h"

namespace kvtier::tiers::nvme {
namespace {

constexpr uint64_t kMagic = 0x31454d564e54564bull;  // "KVTNVME1" as little-endian bytes
constexpr size_t kChecksumOffset = 64;

}  // namespace

void EncodeSuperblock(const Superblock& sb, std::span<std::byte> unit) {
  std::memset(unit.data(), 0, unit.size());
  std::byte* p = unit.data();
  StoreLe64(p + 0, kMagic);
  StoreLe32(p + 8, sb.format);
  StoreLe32(p + 12, sb.alignment);
  StoreLe64(p + 16, sb.capacity_bytes);
  StoreLe64(p + 24, sb.region_bytes);
  StoreLe64(p + 32, sb.data_offset);
  StoreLe32(p + 40, sb.region_count);
  StoreLe64(p + 48, sb.instance_id);
  StoreLe64(p + 56, sb.created_unix_s);
  StoreLe64(p + kChecksumOffset, Xxh3(p, kChecksumOffset));
}

absl::StatusOr<Superblock> DecodeSuperblock(std::span<const std::byte> unit) {
  const std::byte* p = unit.data();
  if (LoadLe64(p) != kMagic) {
    const bool zero =
        std::all_of(unit.begin(), unit.end(), [](std::byte b) { return b == std::byte{0}; });
    if (zero) return absl::NotFoundError("no superblock (unformatted device)");
    return absl::FailedPreconditionError("not a kvtier NVMe tier (no kvtier superblock)");
  }
  if (LoadLe64(p + kChecksumOffset) != Xxh3(p, kChecksumOffset)) {
    return absl::DataLossError("kvtier superblock checksum mismatch");
  }
  Superblock sb;
  sb.format = LoadLe32(p + 8);
  sb.alignment = LoadLe32(p + 12);
  sb.capacity_bytes = LoadLe64(p + 16);
  sb.region_bytes = LoadLe64(p + 24);
  sb.data_offset = LoadLe64(p + 32);
  sb.region_count = LoadLe32(p + 40);
  sb.instance_id = LoadLe64(p + 48);
  sb.created_unix_s = LoadLe64(p + 56);
  return sb;
}

}  // namespace kvtier::tiers::nvme
