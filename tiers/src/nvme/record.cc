#include "tiers/src/nvme/record.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tiers/src/nvme/le.h"
#include "tiers/src/nvme/xxh3.h"

namespace kvtier::tiers::nvme {
namespace {

constexpr size_t kChecksumOffset = 80;

}  // namespace

uint64_t PayloadChecksum(uint32_t namespace_id, const BlockKey& key,
                         std::span<const std::byte> payload) {
  std::byte identity[4 + BlockKey::kSize + 8];
  StoreLe32(identity, namespace_id);
  std::memcpy(identity + 4, key.bytes.data(), BlockKey::kSize);
  StoreLe64(identity + 4 + BlockKey::kSize, payload.size());
  const uint64_t seed = Xxh3(identity, sizeof(identity));
  return Xxh3(payload.data(), payload.size(), seed);
}

void EncodeRecordHeader(const RecordHeader& h, std::span<std::byte> unit) {
  std::memset(unit.data(), 0, unit.size());
  std::byte* p = unit.data();
  StoreLe32(p + 0, kRecordMagic);
  StoreLe16(p + 4, kRecordFormat);
  StoreLe16(p + 6, kEncodedHeaderBytes);
  StoreLe32(p + 8, h.namespace_id);
  p[12] = std::byte{h.codec};
  p[13] = std::byte{h.flags};
  std::memcpy(p + 16, h.key.bytes.data(), BlockKey::kSize);
  StoreLe64(p + 48, h.length);
  StoreLe64(p + 56, h.generation);
  StoreLe64(p + 64, h.payload_checksum);
  StoreLe32(p + 72, h.expiry_unix_s);
  StoreLe64(p + kChecksumOffset, Xxh3(p, kChecksumOffset));
}

absl::StatusOr<RecordHeader> DecodeRecordHeader(std::span<const std::byte> unit) {
  if (unit.size() < kEncodedHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("record header unit of ", unit.size(), " bytes is too short"));
  }
  const std::byte* p = unit.data();
  if (LoadLe32(p) != kRecordMagic) return absl::NotFoundError("no record");
  if (LoadLe16(p + 4) != kRecordFormat || LoadLe16(p + 6) != kEncodedHeaderBytes) {
    return absl::DataLossError(absl::StrCat("record header of unknown format ", LoadLe16(p + 4),
                                            " (size ", LoadLe16(p + 6), ")"));
  }
  if (LoadLe64(p + kChecksumOffset) != Xxh3(p, kChecksumOffset)) {
    return absl::DataLossError("record header checksum mismatch");
  }
  RecordHeader h;
  h.namespace_id = LoadLe32(p + 8);
  h.codec = static_cast<uint8_t>(p[12]);
  h.flags = static_cast<uint8_t>(p[13]);
  h.key = BlockKey::FromBytes(p + 16);
  h.length = LoadLe64(p + 48);
  h.generation = LoadLe64(p + 56);
  h.payload_checksum = LoadLe64(p + 64);
  h.expiry_unix_s = LoadLe32(p + 72);
  return h;
}

}  // namespace kvtier::tiers::nvme
