// Record and superblock encodings: round trips, and every single-byte corruption caught.
#include "tiers/src/nvme/record.h"

#include <gtest/gtest.h>

#include <vector>

#include "tiers/src/nvme/superblock.h"
#include "tiers/src/nvme/test_util.h"
#include "tiers/src/nvme/xxh3.h"

namespace kvtier::tiers::nvme {
namespace {

using testing::TestKey;
using testing::TestPayload;

RecordHeader SampleHeader() {
  RecordHeader h;
  h.namespace_id = 7;
  h.key = TestKey(42);
  h.length = 262144 + 5;
  h.generation = 123456789;
  h.payload_checksum = 0x1122334455667788ull;
  h.expiry_unix_s = 1'900'000'000;
  h.codec = 3;
  h.flags = kFlagPinned;
  return h;
}

TEST(RecordTest, HeaderRoundTrips) {
  std::vector<std::byte> unit(4096, std::byte{0xaa});
  const RecordHeader h = SampleHeader();
  EncodeRecordHeader(h, unit);
  for (size_t i = kEncodedHeaderBytes; i < unit.size(); ++i) ASSERT_EQ(unit[i], std::byte{0});
  absl::StatusOr<RecordHeader> d = DecodeRecordHeader(unit);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->namespace_id, h.namespace_id);
  EXPECT_EQ(d->key, h.key);
  EXPECT_EQ(d->length, h.length);
  EXPECT_EQ(d->generation, h.generation);
  EXPECT_EQ(d->payload_checksum, h.payload_checksum);
  EXPECT_EQ(d->expiry_unix_s, h.expiry_unix_s);
  EXPECT_EQ(d->codec, h.codec);
  EXPECT_EQ(d->flags, h.flags);
}

TEST(RecordTest, EveryCorruptedHeaderByteIsCaught) {
  std::vector<std::byte> unit(4096);
  EncodeRecordHeader(SampleHeader(), unit);
  for (size_t i = 0; i < kEncodedHeaderBytes; ++i) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      std::vector<std::byte> bad = unit;
      bad[i] ^= std::byte{mask};
      absl::StatusOr<RecordHeader> d = DecodeRecordHeader(bad);
      ASSERT_FALSE(d.ok()) << "byte " << i << " mask " << int{mask};
      // Bytes 0-3 are the magic: damaged, the unit reads as "no record"; elsewhere, DataLoss.
      EXPECT_EQ(d.status().code(),
                i < 4 ? absl::StatusCode::kNotFound : absl::StatusCode::kDataLoss);
    }
  }
}

TEST(RecordTest, ZeroUnitIsNoRecord) {
  std::vector<std::byte> unit(4096);
  EXPECT_TRUE(absl::IsNotFound(DecodeRecordHeader(unit).status()));
}

TEST(RecordTest, PayloadChecksumBindsIdentityAndBytes) {
  const std::vector<std::byte> p = TestPayload(1, 1, 10000);
  const uint64_t base = PayloadChecksum(1, TestKey(1), p);
  EXPECT_EQ(base, PayloadChecksum(1, TestKey(1), p));
  EXPECT_NE(base, PayloadChecksum(2, TestKey(1), p));                         // namespace
  EXPECT_NE(base, PayloadChecksum(1, TestKey(2), p));                         // key
  EXPECT_NE(base, PayloadChecksum(1, TestKey(1), std::span(p).first(9999)));  // length
  std::vector<std::byte> flipped = p;
  flipped[5000] ^= std::byte{1};
  EXPECT_NE(base, PayloadChecksum(1, TestKey(1), flipped));
}

TEST(RecordTest, DispatchedXxh3MatchesTheBaselineBuild) {
  // Awkward lengths around XXH3's internal block and stripe sizes.
  for (size_t len : {0, 1, 3, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025, 4096, 100003}) {
    const std::vector<std::byte> p = TestPayload(len, 3, len);
    for (uint64_t seed : {0ull, 1ull, 0x9e3779b97f4a7c15ull}) {
      ASSERT_EQ(Xxh3(p.data(), p.size(), seed), Xxh3Baseline(p.data(), p.size(), seed))
          << "length " << len << " seed " << seed;
    }
  }
}

TEST(RecordTest, RecordBytesPadsToAlignment) {
  EXPECT_EQ(RecordBytes(1, 4096), 8192u);
  EXPECT_EQ(RecordBytes(4096, 4096), 8192u);
  EXPECT_EQ(RecordBytes(4097, 4096), 12288u);
  EXPECT_EQ(RecordBytes(262144, 4096), 262144u + 4096u);
}

Superblock SampleSuperblock() {
  Superblock sb;
  sb.alignment = 4096;
  sb.capacity_bytes = 1ull << 30;
  sb.region_bytes = 16ull << 20;
  sb.region_count = 63;
  sb.instance_id = 0xabcdef;
  sb.created_unix_s = 1'700'000'000;
  return sb;
}

TEST(SuperblockTest, RoundTrips) {
  std::vector<std::byte> unit(4096);
  EncodeSuperblock(SampleSuperblock(), unit);
  absl::StatusOr<Superblock> d = DecodeSuperblock(unit);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, SampleSuperblock());
}

TEST(SuperblockTest, ZerosForeignAndDamagedAreTold) {
  std::vector<std::byte> unit(4096);
  EXPECT_TRUE(absl::IsNotFound(DecodeSuperblock(unit).status()));
  unit[100] = std::byte{1};
  EXPECT_TRUE(absl::IsFailedPrecondition(DecodeSuperblock(unit).status()));
  EncodeSuperblock(SampleSuperblock(), unit);
  for (size_t i = 8; i < 72; ++i) {
    std::vector<std::byte> bad = unit;
    bad[i] ^= std::byte{0x10};
    EXPECT_TRUE(absl::IsDataLoss(DecodeSuperblock(bad).status())) << "byte " << i;
  }
}

}  // namespace
}  // namespace kvtier::tiers::nvme
