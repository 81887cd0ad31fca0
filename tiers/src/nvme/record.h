// On-flash record format of the NVMe tier.
//
// A record is one block: a header unit (one device alignment unit, 4 KiB on common devices)
// followed by the payload, zero-padded to the alignment:
//
//   [header: kEncodedHeaderBytes of fields, zeros to the unit's end][payload][zero pad]
//
// Header fields (little-endian, at fixed offsets):
//    0 magic u32 "KVTR"        4 format u16        6 encoded size u16
//    8 namespace u32          12 codec u8         13 flags u8        14 reserved u16
//   16 key [32]               48 payload length u64
//   56 region generation u64  64 payload checksum u64
//   72 expiry (Unix seconds, 0 = none) u32      76 reserved u32
//   80 header checksum u64 (XXH3-64 of bytes [0, 80))
//
// Checksums are XXH3-64 (libxxhash). Why not CRC32C: 64 bits make an undetected corruption
// about 2^32 times less likely than 32 bits, and XXH3 hashes at memory speed on any x86-64
// without needing the SSE4.2 instruction a fast CRC32C wants. The payload checksum is seeded
// with (namespace, key, length), so it also proves that the bytes at an address were written
// for this key: an index entry pointing at another block's record fails the same check as a
// flipped bit. It leaves the generation out on purpose, so that it can be computed before a
// block is placed (off the writer's critical path, and kept as is when a block is reinserted);
// stale locations are caught by the generation instead, which the index entry, the record
// header and the region table all carry. The read path therefore reads only the payload and
// trusts the index's copy of the checksum; the header is for recovery scans and region checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "kvtier/common/block_key.h"

namespace kvtier::tiers::nvme {

inline constexpr uint32_t kRecordMagic = 0x5254564b;  // "KVTR" read as little-endian bytes
inline constexpr uint16_t kRecordFormat = 1;
inline constexpr size_t kEncodedHeaderBytes = 88;

// Record flag bits (RecordHeader::flags, BlockLocation::flags).
inline constexpr uint8_t kFlagPinned = 1;

struct RecordHeader {
  uint32_t namespace_id = 0;
  BlockKey key;
  uint64_t length = 0;  // payload bytes
  uint64_t generation = 0;
  uint64_t payload_checksum = 0;
  uint32_t expiry_unix_s = 0;
  uint8_t codec = 0;
  uint8_t flags = 0;
};

inline uint64_t RoundUp(uint64_t n, uint64_t align) { return (n + align - 1) / align * align; }

// Bytes a record of `length` payload bytes occupies on the device.
inline uint64_t RecordBytes(uint64_t length, uint32_t alignment) {
  return alignment + RoundUp(length, alignment);
}

// The payload checksum, seeded with the block's identity (see the file comment).
uint64_t PayloadChecksum(uint32_t namespace_id, const BlockKey& key,
                         std::span<const std::byte> payload);

// Writes the header's fields and checksum at the start of `unit` and zeroes the rest.
// REQUIRES: unit.size() >= kEncodedHeaderBytes.
void EncodeRecordHeader(const RecordHeader& header, std::span<std::byte> unit);

// Parses a header unit. kNotFound when the unit holds no record (no magic: never written, or
// past the end of a region's records); kDataLoss when the magic is there but the format,
// encoded size or header checksum is wrong.
absl::StatusOr<RecordHeader> DecodeRecordHeader(std::span<const std::byte> unit);

}  // namespace kvtier::tiers::nvme
