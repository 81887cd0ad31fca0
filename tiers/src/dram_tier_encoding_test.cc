// Encoded (compressed) blocks in the DRAM tier: slots of about the encoded size in namespaces
// with size steps, encodings carried through reserve, commit, read, eviction and listing, and
// the accounting of stored versus original bytes.
#include <vector>

#include "dram_tier_test_fixture.h"

namespace kvtier::tiers {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;

constexpr NamespaceId kZ = 7;            // a compressed namespace
constexpr uint64_t kBlock = 16 * kPage;  // 64 KiB blocks
constexpr uint32_t kSteps = 16;          // one page per step
constexpr uint8_t kKvz = 1;

class DramTierEncodingTest : public DramTierTest {
 protected:
  void SetUp() override {
    Make(/*capacity_pages=*/256, /*slab_pages=*/32);
    ASSERT_TRUE(tier_->AddNamespace(kZ, kBlock, kSteps).ok());
  }

  // Puts keys `ids` in kZ with `stored` bytes each, encoded from kBlock bytes.
  LeaseGrant PutEncoded(std::vector<uint64_t> ids, uint64_t stored, OwnerId owner = kAlice) {
    std::vector<BlockKey> keys;
    for (uint64_t i : ids) keys.push_back(Key(i));
    const std::vector<uint64_t> lengths(keys.size(), stored);
    const std::vector<BlockEncoding> encodings(keys.size(), {.codec = kKvz, .raw_length = kBlock});
    LeaseGrant g = tier_->ReservePut(owner, kZ, keys, lengths, {.encodings = encodings});
    for (size_t k = 0; k < keys.size(); ++k) {
      if (g.codes[k] == Code::kOk) Write(ids[k], g.slots[k]);
    }
    if (g.lease_id != 0) {
      auto codes = tier_->CommitPut(owner, g.lease_id);
      EXPECT_TRUE(codes.ok()) << codes.status();
    }
    return g;
  }
};

class Recorder : public EvictionListener {
 public:
  void OnEvict(const EvictedBlock& b) override { seen.push_back(b); }
  std::vector<EvictedBlock> seen;
};

TEST_F(DramTierEncodingTest, SlotsFollowTheEncodedSize) {
  // 5 pages and a byte: the next step up is 6 pages.
  LeaseGrant g = PutEncoded({1}, 5 * kPage + 1);
  ASSERT_THAT(g.codes, ElementsAre(Code::kOk));
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.stored_bytes, 5 * kPage + 1);
  EXPECT_EQ(s.raw_bytes, kBlock);
  // Space in use: one slot of 6 pages, not the 16 of a full block.
  EXPECT_EQ(s.used_bytes, 6 * kPage);
  const NamespaceSnapshot& ns = s.namespaces.back();
  ASSERT_EQ(ns.namespace_id, kZ);
  EXPECT_EQ(ns.used_bytes, 5 * kPage + 1);
  EXPECT_EQ(ns.raw_bytes, kBlock);

  // The read returns the stored length and the encoding.
  std::vector<BlockKey> k = {Key(1)};
  LeaseGrant r = tier_->AcquireRead(kBob, kZ, k);
  ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
  EXPECT_EQ(r.slots[0].length, 5 * kPage + 1);
  EXPECT_EQ(r.slots[0].encoding.codec, kKvz);
  EXPECT_EQ(r.slots[0].encoding.raw_length, kBlock);
  EXPECT_TRUE(Holds(1, r.slots[0]));
  ASSERT_TRUE(tier_->Release(kBob, r.lease_id).ok());

  // Blocks of different encoded sizes sit in slots of their own step.
  ASSERT_THAT(PutEncoded({2}, kPage).codes, ElementsAre(Code::kOk));
  ASSERT_THAT(PutEncoded({3}, kBlock).codes, ElementsAre(Code::kOk));
  std::vector<BlockKey> both = {Key(2), Key(3)};
  r = tier_->AcquireRead(kBob, kZ, both);
  ASSERT_THAT(r.codes, Each(Code::kOk));
  EXPECT_TRUE(Holds(2, r.slots[0]));
  EXPECT_TRUE(Holds(3, r.slots[1]));
  EXPECT_EQ(tier_->Snapshot().namespaces.back().raw_bytes, 3 * kBlock);
  ASSERT_TRUE(tier_->Release(kBob, r.lease_id).ok());
  ExpectInvariants();
}

TEST_F(DramTierEncodingTest, CapacityCountsRealBytes) {
  // 256 pages hold 16 blocks of 16 pages; encoded to 4 pages, 64 fit without an eviction.
  Recorder recorder;
  tier_->SetEvictionListener(&recorder);
  std::vector<uint64_t> ids;
  for (uint64_t i = 0; i < 64; ++i) ids.push_back(100 + i);
  for (uint64_t id : ids) ASSERT_THAT(PutEncoded({id}, 4 * kPage).codes, ElementsAre(Code::kOk));
  EXPECT_TRUE(recorder.seen.empty());
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.blocks, 64u);
  EXPECT_EQ(s.raw_bytes, 64 * kBlock);  // four times the capacity, in original bytes
  EXPECT_LE(s.used_bytes, s.capacity_bytes);
  // One more evicts the oldest, and the listener sees how it is encoded.
  ASSERT_THAT(PutEncoded({999}, 4 * kPage).codes, ElementsAre(Code::kOk));
  ASSERT_EQ(recorder.seen.size(), 1u);
  EXPECT_EQ(recorder.seen[0].key, Key(100));
  EXPECT_EQ(recorder.seen[0].bytes.size(), 4 * kPage);
  EXPECT_EQ(recorder.seen[0].encoding.codec, kKvz);
  EXPECT_EQ(recorder.seen[0].encoding.raw_length, kBlock);
  tier_->SetEvictionListener(nullptr);
  ExpectInvariants();
}

TEST_F(DramTierEncodingTest, BadEncodingsAreRefusedPerKey) {
  std::vector<BlockKey> keys = Keys({1, 2, 3, 4});
  const std::vector<uint64_t> lengths = {kPage, kPage, kPage, kPage};
  const std::vector<BlockEncoding> encodings = {
      {.codec = kKvz, .raw_length = kBlock},      // fine
      {.codec = kKvz, .raw_length = kPage - 1},   // shorter than what is stored
      {.codec = kKvz, .raw_length = kBlock + 2},  // more than a block
      {.codec = 0, .raw_length = 2 * kPage},      // stored, yet another length
  };
  LeaseGrant g = tier_->ReservePut(kAlice, kZ, keys, lengths, {.encodings = encodings});
  EXPECT_THAT(g.codes, ElementsAre(Code::kOk, Code::kInvalidArgument, Code::kInvalidArgument,
                                   Code::kInvalidArgument));
  ASSERT_TRUE(tier_->Release(kAlice, g.lease_id).ok());

  // An encoded block in a namespace without size steps.
  std::vector<BlockKey> one = {Key(9)};
  const std::vector<uint64_t> page = {kPage};
  const std::vector<BlockEncoding> kvz = {{.codec = kKvz, .raw_length = kPage}};
  EXPECT_THAT(tier_->ReservePut(kAlice, kNs, one, page, {.encodings = kvz}).codes,
              ElementsAre(Code::kInvalidArgument));
  // Encodings that do not match the keys in number.
  const std::vector<BlockEncoding> none;
  const std::vector<BlockEncoding> two(2);
  EXPECT_THAT(tier_->ReservePut(kAlice, kZ, one, page, {.encodings = two}).codes,
              ElementsAre(Code::kInvalidArgument));

  // Size steps out of range, or other steps for a namespace registered already.
  EXPECT_TRUE(absl::IsInvalidArgument(tier_->AddNamespace(20, kBlock, 0)));
  EXPECT_TRUE(
      absl::IsInvalidArgument(tier_->AddNamespace(20, kBlock, DramTier::kMaxSizeSteps + 1)));
  EXPECT_TRUE(absl::IsAlreadyExists(tier_->AddNamespace(kZ, kBlock, 8)));
  EXPECT_TRUE(tier_->AddNamespace(kZ, kBlock, kSteps).ok());
}

TEST_F(DramTierEncodingTest, CommitSetsTheEncodingAPromotionLearns) {
  // A promotion reserves a bound, reads, then commits the real length and encoding.
  std::vector<BlockKey> keys = Keys({5, 6});
  const std::vector<uint64_t> bound = {8 * kPage, 8 * kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kZ, keys, bound);
  ASSERT_THAT(g.codes, Each(Code::kOk));
  Write(5, g.slots[0]);
  Write(6, g.slots[1]);
  const std::vector<uint64_t> lengths = {3 * kPage, 8 * kPage};
  // A raw length below the final length is refused whole, and the lease stays open.
  const std::vector<BlockEncoding> bad = {{.codec = kKvz, .raw_length = 2 * kPage}, {}};
  auto codes = tier_->CommitPut(kAlice, g.lease_id, {.lengths = lengths, .encodings = bad});
  ASSERT_TRUE(codes.ok());
  EXPECT_THAT(*codes, Each(Code::kInvalidArgument));
  const std::vector<BlockEncoding> good = {{.codec = kKvz, .raw_length = kBlock}, {}};
  codes = tier_->CommitPut(kAlice, g.lease_id, {.lengths = lengths, .encodings = good});
  ASSERT_TRUE(codes.ok());
  EXPECT_THAT(*codes, Each(Code::kOk));

  LeaseGrant r = tier_->AcquireRead(kBob, kZ, keys);
  ASSERT_THAT(r.codes, Each(Code::kOk));
  EXPECT_EQ(r.slots[0].length, 3 * kPage);
  EXPECT_EQ(r.slots[0].encoding.codec, kKvz);
  EXPECT_EQ(r.slots[0].encoding.raw_length, kBlock);
  EXPECT_EQ(r.slots[1].length, 8 * kPage);
  EXPECT_EQ(r.slots[1].encoding.codec, 0);
  EXPECT_EQ(r.slots[1].encoding.raw_length, 0u);
  ASSERT_TRUE(tier_->Release(kBob, r.lease_id).ok());
  EXPECT_EQ(tier_->Snapshot().namespaces.back().raw_bytes, kBlock + 8 * kPage);

  // Listings carry the encoding too (a shutdown save writes it to NVMe).
  bool listed = false;
  for (const BlockListing& b : tier_->ListBlocks()) {
    if (b.key != Key(5)) continue;
    listed = true;
    EXPECT_EQ(b.encoding.codec, kKvz);
    EXPECT_EQ(b.encoding.raw_length, kBlock);
  }
  EXPECT_TRUE(listed);
}

TEST_F(DramTierEncodingTest, QuotaEvictsTheColdestBlockOfAnySize) {
  // Quota of two full blocks; the blocks sit in three size classes.
  ASSERT_TRUE(tier_->SetNamespaceLimits(kZ, {.quota_bytes = 2 * kBlock}).ok());
  ASSERT_THAT(PutEncoded({1}, 2 * kPage).codes, ElementsAre(Code::kOk));
  clock_.Advance(10);
  ASSERT_THAT(PutEncoded({2}, 9 * kPage).codes, ElementsAre(Code::kOk));
  clock_.Advance(10);
  ASSERT_THAT(PutEncoded({3}, 5 * kPage).codes, ElementsAre(Code::kOk));
  std::vector<BlockKey> keys = Keys({1, 2, 3});
  std::vector<bool> present = tier_->Present(kZ, keys);
  EXPECT_THAT(present, ElementsAre(false, true, true));  // 1 was the coldest
  EXPECT_EQ(tier_->Snapshot().namespaces.back().counters.quota_evictions, 1u);
}

}  // namespace
}  // namespace kvtier::tiers
