// Leases: expiry, release, owners, tombstones, removes under a lease.
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvtier/tiers/dram_tier.h"
#include "tiers/src/dram_tier_test_fixture.h"

namespace kvtier::tiers {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;

TEST_F(DramTierTest, ReleaseChecksOwnerAndLease) {
  Make(64, 16);
  Put({0});
  LeaseGrant r = Read({0}, kBob);
  EXPECT_TRUE(absl::IsNotFound(tier_->Release(kAlice, r.lease_id).status()));
  EXPECT_TRUE(absl::IsNotFound(tier_->Release(kBob, 999).status()));
  EXPECT_TRUE(tier_->Release(kBob, r.lease_id).ok());
  EXPECT_TRUE(absl::IsNotFound(tier_->Release(kBob, r.lease_id).status()));
  EXPECT_EQ(tier_->Snapshot().leases_active, 0u);
}

TEST_F(DramTierTest, ExpiredReadLeaseStopsPinningAndReportsExpired) {
  Make(1, 1);
  Put({0});
  LeaseGrant r = Read({0});
  const SlotRef slot = r.slots[0];
  clock_.Advance(kTimeout - 1);
  EXPECT_EQ(tier_->ExpireLeases(), 0u);
  clock_.Advance(1);
  EXPECT_EQ(tier_->ExpireLeases(), 1u);
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.leases_active, 0u);
  EXPECT_EQ(s.leases_expired, 1u);
  // The block is still cached and, until it is evicted, the copy would still check out.
  EXPECT_THAT(Cached({0}), ElementsAre(true));
  EXPECT_EQ(tier_->SlotGeneration(slot.offset), slot.generation);
  // No longer pinned: a new put evicts it and the reader's generation check fails.
  Put({1});
  EXPECT_THAT(Cached({0, 1}), ElementsAre(false, true));
  EXPECT_NE(tier_->SlotGeneration(slot.offset), slot.generation);
  auto released = tier_->Release(kAlice, r.lease_id);
  ASSERT_TRUE(released.ok());
  EXPECT_TRUE(*released);
}

TEST_F(DramTierTest, ReleaseAfterTheDeadlineIsExpiredWithoutExpireLeases) {
  Make(4, 4);
  Put({0});
  LeaseGrant r = Read({0});
  clock_.Advance(kTimeout);
  auto released = tier_->Release(kAlice, r.lease_id);
  ASSERT_TRUE(released.ok());
  EXPECT_TRUE(*released);
  EXPECT_EQ(tier_->Snapshot().leases_expired, 1u);
}

TEST_F(DramTierTest, ExpiredTombstonesAreForgottenAfterAnotherTimeout) {
  Make(4, 4);
  Put({0});
  LeaseGrant r = Read({0});
  clock_.Advance(kTimeout);
  EXPECT_EQ(tier_->ExpireLeases(), 1u);
  clock_.Advance(kTimeout);
  EXPECT_EQ(tier_->ExpireLeases(), 0u);
  EXPECT_TRUE(absl::IsNotFound(tier_->Release(kAlice, r.lease_id).status()));
}

TEST_F(DramTierTest, CommitAfterPutLeaseExpiryIsDeadlineExceeded) {
  Make(4, 4);
  std::vector<uint64_t> lengths(2, kPage);
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({0, 1}), lengths);
  ASSERT_THAT(g.codes, Each(Code::kOk));
  clock_.Advance(kTimeout);
  EXPECT_EQ(tier_->ExpireLeases(), 1u);
  // Gone from the index at once: another client may put the same keys...
  EXPECT_THAT(Cached({0, 1}), Each(false));
  std::vector<uint64_t> one = {kPage};
  LeaseGrant other = tier_->ReservePut(kBob, kNs, Keys({0}), one);
  ASSERT_THAT(other.codes, ElementsAre(Code::kOk));
  // ...but not into the late writer's slots, which stay held until it answers.
  EXPECT_NE(other.slots[0].offset, g.slots[0].offset);
  EXPECT_NE(other.slots[0].offset, g.slots[1].offset);
  EXPECT_EQ(tier_->Snapshot().used_bytes, 3 * kPage);
  EXPECT_EQ(tier_->SlotGeneration(g.slots[0].offset), g.slots[0].generation);

  auto codes = tier_->CommitPut(kAlice, g.lease_id);
  ASSERT_TRUE(codes.ok());
  EXPECT_THAT(*codes, ElementsAre(Code::kDeadlineExceeded, Code::kDeadlineExceeded));
  // The slots are reclaimed, with their generations bumped.
  EXPECT_EQ(tier_->Snapshot().used_bytes, kPage);
  EXPECT_EQ(tier_->SlotGeneration(g.slots[0].offset), g.slots[0].generation + 1);
  EXPECT_EQ(tier_->SlotGeneration(g.slots[1].offset), g.slots[1].generation + 1);
  EXPECT_TRUE(absl::IsNotFound(tier_->Release(kAlice, g.lease_id).status()));
  EXPECT_TRUE(tier_->CommitPut(kBob, other.lease_id).ok());
  EXPECT_THAT(Cached({0, 1}), ElementsAre(true, false));
  EXPECT_EQ(tier_->Snapshot().counters.puts, 1u);
}

TEST_F(DramTierTest, CommitAfterTheDeadlineIsRefusedWithoutExpireLeases) {
  Make(4, 4);
  std::vector<uint64_t> one = {kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({0}), one);
  clock_.Advance(kTimeout);
  auto codes = tier_->CommitPut(kAlice, g.lease_id);
  ASSERT_TRUE(codes.ok());
  EXPECT_THAT(*codes, ElementsAre(Code::kDeadlineExceeded));
  EXPECT_THAT(Cached({0}), ElementsAre(false));
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.used_bytes, 0u);
  EXPECT_EQ(s.leases_expired, 1u);
}

TEST_F(DramTierTest, ExpiredPutSlotsReturnWhenTheTombstoneIsPurged) {
  Make(4, 4);
  std::vector<uint64_t> lengths(4, kPage);
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({0, 1, 2, 3}), lengths);
  ASSERT_THAT(g.codes, Each(Code::kOk));
  clock_.Advance(kTimeout);
  EXPECT_EQ(tier_->ExpireLeases(), 1u);
  std::vector<uint64_t> one = {kPage};
  EXPECT_THAT(tier_->ReservePut(kBob, kNs, Keys({9}), one).codes,
              ElementsAre(Code::kResourceExhausted));
  clock_.Advance(kTimeout);
  // ReservePut expires and purges on its own before looking for space.
  LeaseGrant h = tier_->ReservePut(kBob, kNs, Keys({9}), one);
  EXPECT_THAT(h.codes, ElementsAre(Code::kOk));
  EXPECT_EQ(tier_->Snapshot().used_bytes, kPage);
  auto late = tier_->CommitPut(kAlice, g.lease_id);
  EXPECT_TRUE(absl::IsNotFound(late.status()));
}

TEST_F(DramTierTest, ReservePutExpiresDueReadLeasesBeforeGivingUp) {
  Make(2, 2);
  Put({0, 1});
  LeaseGrant r = Read({0, 1}, kBob);
  clock_.Advance(kTimeout);
  Put({2});  // the crashed reader's pins are gone
  EXPECT_EQ(tier_->Snapshot().leases_expired, 1u);
}

TEST_F(DramTierTest, ReleaseWithoutCommitAbandonsThePut) {
  Make(4, 4);
  std::vector<uint64_t> one = {kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({0}), one);
  auto released = tier_->Release(kAlice, g.lease_id);
  ASSERT_TRUE(released.ok());
  EXPECT_FALSE(*released);
  EXPECT_EQ(tier_->SlotGeneration(g.slots[0].offset), g.slots[0].generation + 1);
  EXPECT_EQ(tier_->Snapshot().used_bytes, 0u);
  EXPECT_THAT(tier_->ReservePut(kBob, kNs, Keys({0}), one).codes, ElementsAre(Code::kOk));
}

TEST_F(DramTierTest, ReleaseOwnerDropsOnlyThatOwnersLeases) {
  Make(8, 8);
  Put({0, 1});
  LeaseGrant alice_read = Read({0}, kAlice);
  LeaseGrant bob_read = Read({1}, kBob);
  std::vector<uint64_t> one = {kPage};
  LeaseGrant alice_put = tier_->ReservePut(kAlice, kNs, Keys({2}), one);
  ASSERT_THAT(alice_put.codes, ElementsAre(Code::kOk));
  LeaseGrant alice_second = tier_->ReservePut(kAlice, kNs, Keys({3}), one);
  EXPECT_EQ(tier_->Snapshot().leases_active, 4u);

  tier_->ReleaseOwner(kAlice);
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.leases_active, 1u);
  // Alice's unfinished puts leave the index, but their slots stay out of use for one more
  // lease_timeout: her process may still be copying into them.
  EXPECT_EQ(s.used_bytes, 4 * kPage);
  EXPECT_THAT(Cached({0, 1, 2, 3}), ElementsAre(true, true, false, false));
  EXPECT_EQ(tier_->SlotGeneration(alice_put.slots[0].offset), alice_put.slots[0].generation);
  EXPECT_TRUE(absl::IsNotFound(tier_->Release(kAlice, alice_read.lease_id).status()));
  EXPECT_TRUE(tier_->Release(kBob, bob_read.lease_id).ok());
  // The keys can be put again at once, into other slots.
  LeaseGrant again = tier_->ReservePut(kBob, kNs, Keys({2}), one);
  ASSERT_THAT(again.codes, ElementsAre(Code::kOk));
  EXPECT_NE(again.slots[0].offset, alice_put.slots[0].offset);
  ASSERT_TRUE(tier_->Release(kBob, again.lease_id).ok());
  tier_->ReleaseOwner(kAlice);  // nothing new: harmless
  tier_->ReleaseOwner(12345);

  clock_.Advance(kTimeout);
  tier_->ExpireLeases();
  EXPECT_EQ(tier_->Snapshot().used_bytes, 2 * kPage);
  EXPECT_EQ(tier_->SlotGeneration(alice_put.slots[0].offset), alice_put.slots[0].generation + 1);
  EXPECT_EQ(tier_->SlotGeneration(alice_second.slots[0].offset),
            alice_second.slots[0].generation + 1);
}

TEST_F(DramTierTest, ReleaseOwnerKeepsAnExpiredPutsSlotsUntilItsTombstoneGoes) {
  Make(4, 4);
  std::vector<uint64_t> one = {kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({0}), one);
  clock_.Advance(kTimeout);
  EXPECT_EQ(tier_->ExpireLeases(), 1u);
  EXPECT_EQ(tier_->Snapshot().used_bytes, kPage);
  tier_->ReleaseOwner(kAlice);
  EXPECT_EQ(tier_->Snapshot().used_bytes, kPage);
  EXPECT_EQ(tier_->SlotGeneration(g.slots[0].offset), g.slots[0].generation);
  clock_.Advance(kTimeout);
  tier_->ExpireLeases();
  EXPECT_EQ(tier_->Snapshot().used_bytes, 0u);
  EXPECT_EQ(tier_->SlotGeneration(g.slots[0].offset), g.slots[0].generation + 1);
}

TEST_F(DramTierTest, RemoveOfAPinnedBlockFreesTheSlotAtTheLastRelease) {
  Make(4, 4);
  Put({0, 1});
  LeaseGrant r1 = Read({0}, kAlice);
  LeaseGrant r2 = Read({0}, kBob);
  const SlotRef slot = r1.slots[0];
  EXPECT_THAT(tier_->Remove(kNs, Keys({0, 7})), ElementsAre(Code::kOk, Code::kNotFound));
  // Gone from the index at once...
  EXPECT_THAT(Cached({0, 1}), ElementsAre(false, true));
  EXPECT_THAT(Read({0}).codes, ElementsAre(Code::kNotFound));
  EXPECT_THAT(tier_->Remove(kNs, Keys({0})), ElementsAre(Code::kNotFound));
  // ...but the readers' copies stay good until they let go.
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.blocks, 1u);
  EXPECT_EQ(s.used_bytes, 2 * kPage);
  EXPECT_EQ(s.counters.removes, 1u);
  EXPECT_TRUE(Holds(0, slot));
  EXPECT_EQ(tier_->SlotGeneration(slot.offset), slot.generation);
  ASSERT_TRUE(tier_->Release(kAlice, r1.lease_id).ok());
  EXPECT_EQ(tier_->SlotGeneration(slot.offset), slot.generation);
  EXPECT_EQ(tier_->Snapshot().used_bytes, 2 * kPage);
  ASSERT_TRUE(tier_->Release(kBob, r2.lease_id).ok());
  EXPECT_EQ(tier_->SlotGeneration(slot.offset), slot.generation + 1);
  EXPECT_EQ(tier_->Snapshot().used_bytes, kPage);
  // The key can be put again.
  Put({0});
  EXPECT_THAT(Cached({0}), ElementsAre(true));
}

// A block removed while it is being written (a put, or a promotion from NVMe) never appears:
// its commit says ABORTED and frees the slot, and the key can be put again meanwhile. Before,
// such a commit went through, and a block whose remove had returned came back (a promotion
// racing a remove did exactly that).
TEST_F(DramTierTest, RemoveDropsPutsInFlightAndIgnoresUnknownNamespaces) {
  Make(4, 4);
  std::vector<uint64_t> one = {kPage}, two = {kPage, kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({0, 1}), two);
  EXPECT_THAT(tier_->Remove(kNs, Keys({0})), ElementsAre(Code::kNotFound));  // nothing cached
  EXPECT_THAT(tier_->Remove(77, Keys({0})), ElementsAre(Code::kNotFound));
  // The removed key is free for another put while the first is still open.
  LeaseGrant again = tier_->ReservePut(kBob, kNs, Keys({0}), one);
  ASSERT_THAT(again.codes, ElementsAre(Code::kOk));
  absl::StatusOr<std::vector<Code>> codes = tier_->CommitPut(kAlice, g.lease_id);
  ASSERT_TRUE(codes.ok()) << codes.status();
  EXPECT_THAT(*codes, ElementsAre(Code::kAborted, Code::kOk));
  EXPECT_THAT(Cached({0, 1}), ElementsAre(false, true));
  EXPECT_EQ(tier_->Snapshot().used_bytes, 2 * kPage);  // key 1, and Bob's reservation
  ASSERT_TRUE(tier_->CommitPut(kBob, again.lease_id).ok());
  EXPECT_THAT(Cached({0, 1}), ElementsAre(true, true));
  EXPECT_THAT(tier_->Remove(kNs, Keys({0, 1})), ElementsAre(Code::kOk, Code::kOk));
  EXPECT_EQ(tier_->Snapshot().used_bytes, 0u);
  // Released instead of committed, a removed put frees its slot too.
  LeaseGrant dropped = tier_->ReservePut(kAlice, kNs, Keys({2}), one);
  EXPECT_THAT(tier_->Remove(kNs, Keys({2})), ElementsAre(Code::kNotFound));
  ASSERT_TRUE(tier_->Release(kAlice, dropped.lease_id).ok());
  EXPECT_EQ(tier_->Snapshot().used_bytes, 0u);
}

TEST_F(DramTierTest, ExpiredReadLeaseOfARemovedBlockFreesItsSlot) {
  Make(4, 4);
  Put({0});
  LeaseGrant r = Read({0});
  EXPECT_THAT(tier_->Remove(kNs, Keys({0})), ElementsAre(Code::kOk));
  clock_.Advance(kTimeout);
  EXPECT_EQ(tier_->ExpireLeases(), 1u);
  EXPECT_EQ(tier_->Snapshot().used_bytes, 0u);
  EXPECT_EQ(tier_->SlotGeneration(r.slots[0].offset), r.slots[0].generation + 1);
}

TEST_F(DramTierTest, DuplicateKeysInAReadPinTwice) {
  Make(1, 1);
  Put({0});
  LeaseGrant r = Read({0, 0});
  EXPECT_THAT(r.codes, ElementsAre(Code::kOk, Code::kOk));
  EXPECT_EQ(tier_->Snapshot().counters.hits, 2u);
  std::vector<uint64_t> one = {kPage};
  EXPECT_THAT(tier_->ReservePut(kBob, kNs, Keys({1}), one).codes,
              ElementsAre(Code::kResourceExhausted));
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  Put({1});
}

}  // namespace
}  // namespace kvtier::tiers
