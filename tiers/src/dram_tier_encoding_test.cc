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
  // The 3-page frame keeps the 8-page slot reserved for it: the quota counts that slot.
  EXPECT_EQ(tier_->Snapshot().namespaces.back().slot_bytes, 16 * kPage);

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
  // Quota of 18 pages; the blocks sit in three size classes, 20 pages in all.
  ASSERT_TRUE(tier_->SetNamespaceLimits(kZ, {.quota_bytes = 18 * kPage}).ok());
  ASSERT_THAT(PutEncoded({1}, 3 * kPage).codes, ElementsAre(Code::kOk));
  clock_.Advance(10);
  ASSERT_THAT(PutEncoded({2}, 9 * kPage).codes, ElementsAre(Code::kOk));
  clock_.Advance(10);
  ASSERT_THAT(PutEncoded({3}, 8 * kPage).codes, ElementsAre(Code::kOk));
  std::vector<BlockKey> keys = Keys({1, 2, 3});
  std::vector<bool> present = tier_->Present(kZ, keys);
  EXPECT_THAT(present, ElementsAre(false, true, true));  // 1 was the coldest
  EXPECT_EQ(tier_->Snapshot().namespaces.back().counters.quota_evictions, 1u);
  EXPECT_EQ(tier_->Snapshot().namespaces.back().slot_bytes, 17 * kPage);
}

TEST_F(DramTierEncodingTest, SmallFramesLetMoreBlocksIntoAQuota) {
  // A quota of two full blocks holds sixteen blocks encoded to two pages, and never more than
  // its bytes of slots.
  const uint64_t quota = 2 * kBlock;
  ASSERT_TRUE(tier_->SetNamespaceLimits(kZ, {.quota_bytes = quota}).ok());
  Recorder recorder;
  tier_->SetEvictionListener(&recorder);
  for (uint64_t i = 0; i < 16; ++i) {
    ASSERT_THAT(PutEncoded({i}, 2 * kPage).codes, ElementsAre(Code::kOk));
    clock_.Advance(10);
  }
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.namespaces.back().blocks, 16u);  // quota / block_bytes would be 2
  EXPECT_EQ(s.namespaces.back().slot_bytes, quota);
  EXPECT_EQ(s.used_bytes, quota);  // the tier's own count of the slots agrees
  EXPECT_EQ(s.namespaces.back().counters.quota_evictions, 0u);
  EXPECT_TRUE(recorder.seen.empty());
  // At the quota, each put evicts the namespace's coldest block, in the order they came.
  for (uint64_t i = 16; i < 32; ++i) {
    ASSERT_THAT(PutEncoded({i}, 2 * kPage).codes, ElementsAre(Code::kOk));
    clock_.Advance(10);
    s = tier_->Snapshot();
    EXPECT_LE(s.namespaces.back().slot_bytes, quota);
    EXPECT_LE(s.used_bytes, quota);
    EXPECT_EQ(s.namespaces.back().blocks, 16u);
    ASSERT_EQ(recorder.seen.size(), i - 15);
    EXPECT_EQ(recorder.seen.back().key, Key(i - 16));
  }
  EXPECT_EQ(s.namespaces.back().counters.quota_evictions, 16u);
  tier_->SetEvictionListener(nullptr);
  ExpectInvariants();
}

TEST_F(DramTierEncodingTest, AQuotaBoundsTheSlotsOfMixedSizes) {
  // A quota of 32 pages over blocks of 16, 4, 4 and 8 pages: four blocks, exactly at it.
  const uint64_t quota = 2 * kBlock;
  ASSERT_TRUE(tier_->SetNamespaceLimits(kZ, {.quota_bytes = quota}).ok());
  const auto put = [&](uint64_t id, uint64_t pages) {
    LeaseGrant g = PutEncoded({id}, pages * kPage);
    clock_.Advance(10);
    return g.codes[0];
  };
  const auto present = [&](std::initializer_list<uint64_t> ids) {
    return tier_->Present(kZ, Keys(ids));
  };
  const auto ns = [&] { return tier_->Snapshot().namespaces.back(); };
  ASSERT_EQ(put(1, 16), Code::kOk);
  ASSERT_EQ(put(2, 4), Code::kOk);
  ASSERT_EQ(put(3, 4), Code::kOk);
  ASSERT_EQ(put(4, 8), Code::kOk);
  EXPECT_EQ(ns().blocks, 4u);
  EXPECT_EQ(ns().slot_bytes, quota);
  EXPECT_EQ(ns().counters.quota_evictions, 0u);
  // 12 more pages: the coldest block (16 pages) is enough.
  ASSERT_EQ(put(5, 12), Code::kOk);
  EXPECT_THAT(present({1, 2, 3, 4, 5}), ElementsAre(false, true, true, true, true));
  EXPECT_EQ(ns().slot_bytes, 28 * kPage);
  EXPECT_EQ(ns().counters.quota_evictions, 1u);
  // 10 more pages need 6: the two coldest (4 pages each) go, and no more.
  ASSERT_EQ(put(6, 10), Code::kOk);
  EXPECT_THAT(present({2, 3, 4, 5, 6}), ElementsAre(false, false, true, true, true));
  EXPECT_EQ(ns().slot_bytes, 30 * kPage);
  EXPECT_EQ(ns().counters.quota_evictions, 3u);
  // With 4 and 5 in use (read in that order), a full block would need 14 pages and only 6 (10
  // pages) could go: the put is refused and nothing is evicted.
  std::vector<BlockKey> four = Keys({4});
  std::vector<BlockKey> five = Keys({5});
  LeaseGrant r4 = tier_->AcquireRead(kBob, kZ, four);
  clock_.Advance(10);
  LeaseGrant r5 = tier_->AcquireRead(kBob, kZ, five);
  ASSERT_THAT(r4.codes, ElementsAre(Code::kOk));
  ASSERT_THAT(r5.codes, ElementsAre(Code::kOk));
  EXPECT_EQ(put(7, 16), Code::kResourceExhausted);
  EXPECT_THAT(present({4, 5, 6}), Each(true));
  EXPECT_EQ(ns().counters.quota_evictions, 3u);
  // Released, the coldest go first: 6 (not read since its put), then 4.
  ASSERT_TRUE(tier_->Release(kBob, r4.lease_id).ok());
  ASSERT_TRUE(tier_->Release(kBob, r5.lease_id).ok());
  ASSERT_EQ(put(7, 16), Code::kOk);
  EXPECT_THAT(present({4, 5, 6, 7}), ElementsAre(false, true, false, true));
  EXPECT_EQ(ns().slot_bytes, 28 * kPage);
  EXPECT_EQ(ns().counters.quota_evictions, 5u);
  EXPECT_LE(tier_->Snapshot().used_bytes, quota);
  ExpectInvariants();
}

TEST_F(DramTierEncodingTest, ALoweredQuotaEvictsDownToItsBytes) {
  // Eight blocks of 3 pages, the two oldest in use.
  ASSERT_THAT(PutEncoded({0, 1}, 3 * kPage).codes, Each(Code::kOk));
  std::vector<BlockKey> in_use = Keys({0, 1});
  LeaseGrant r = tier_->AcquireRead(kBob, kZ, in_use);
  ASSERT_THAT(r.codes, Each(Code::kOk));
  for (uint64_t i = 2; i < 8; ++i) {
    clock_.Advance(10);
    ASSERT_THAT(PutEncoded({i}, 3 * kPage).codes, ElementsAre(Code::kOk));
  }
  const auto ns = [&] { return tier_->Snapshot().namespaces.back(); };
  EXPECT_EQ(ns().slot_bytes, 24 * kPage);
  // A quota below one full-size slot counts as one (16 pages): five blocks stay, the two in
  // use among them; the coldest of the others go at once.
  ASSERT_TRUE(tier_->SetNamespaceLimits(kZ, {.quota_bytes = 10 * kPage}).ok());
  EXPECT_EQ(ns().quota_bytes, 10 * kPage);  // as set
  EXPECT_THAT(tier_->Present(kZ, Keys({0, 1, 2, 3, 4, 5, 6, 7})),
              ElementsAre(true, true, false, false, false, true, true, true));
  EXPECT_EQ(ns().slot_bytes, 15 * kPage);
  EXPECT_EQ(ns().counters.quota_evictions, 3u);
  // Once released, they are the coldest: the next put takes one of them.
  ASSERT_TRUE(tier_->Release(kBob, r.lease_id).ok());
  clock_.Advance(10);
  ASSERT_THAT(PutEncoded({8}, 3 * kPage).codes, ElementsAre(Code::kOk));
  EXPECT_THAT(tier_->Present(kZ, Keys({0, 1, 8})), ElementsAre(false, true, true));
  EXPECT_EQ(ns().slot_bytes, 15 * kPage);
  EXPECT_EQ(ns().counters.quota_evictions, 4u);

  // Blocks in use stay past a lowered quota and count against it until released. Lifted, the
  // quota lets two more in (21 pages); all seven are read, and the quota is set again.
  ASSERT_TRUE(tier_->SetNamespaceLimits(kZ, {}).ok());
  ASSERT_THAT(PutEncoded({9, 10}, 3 * kPage).codes, Each(Code::kOk));
  std::vector<BlockKey> all = Keys({1, 5, 6, 7, 8, 9, 10});
  r = tier_->AcquireRead(kBob, kZ, all);
  ASSERT_THAT(r.codes, Each(Code::kOk));
  ASSERT_TRUE(tier_->SetNamespaceLimits(kZ, {.quota_bytes = kBlock}).ok());
  EXPECT_EQ(ns().blocks, 7u);
  EXPECT_EQ(ns().slot_bytes, 21 * kPage);
  EXPECT_EQ(ns().counters.quota_evictions, 4u);
  EXPECT_THAT(PutEncoded({11}, 2 * kPage).codes, ElementsAre(Code::kResourceExhausted));
  EXPECT_EQ(ns().counters.quota_evictions, 4u);
  // Released, the next put brings the namespace back within its quota: 21 + 2 pages less
  // three blocks of 3 is 14.
  ASSERT_TRUE(tier_->Release(kBob, r.lease_id).ok());
  ASSERT_THAT(PutEncoded({11}, 2 * kPage).codes, ElementsAre(Code::kOk));
  EXPECT_EQ(ns().blocks, 5u);
  EXPECT_EQ(ns().slot_bytes, 14 * kPage);
  EXPECT_EQ(ns().counters.quota_evictions, 7u);
  ExpectInvariants();
}

}  // namespace
}  // namespace kvtier::tiers
