#include "kvtier/tiers/dram_tier.h"

#include <sys/mman.h>

#include <cstring>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvtier/tiers/policies.h"
#include "tiers/src/dram_tier_test_fixture.h"

namespace kvtier::tiers {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::SizeIs;

TEST(DramTierOptionsTest, ValidateNamesTheBadOption) {
  DramTierOptions ok;
  EXPECT_TRUE(ok.Validate().ok());
  auto bad = [](auto mutate) {
    DramTierOptions o;
    mutate(o);
    return o.Validate();
  };
  auto page = bad([](DramTierOptions& o) { o.page_bytes = 6000; });
  EXPECT_TRUE(absl::IsInvalidArgument(page));
  EXPECT_NE(page.message().find("page_bytes"), absl::string_view::npos);
  EXPECT_FALSE(bad([](DramTierOptions& o) { o.page_bytes = 2048; }).ok());
  EXPECT_FALSE(bad([](DramTierOptions& o) { o.slab_bytes = 5000; }).ok());
  EXPECT_FALSE(bad([](DramTierOptions& o) { o.slab_bytes = 0; }).ok());
  auto cap = bad([](DramTierOptions& o) { o.capacity_bytes = 8 << 20; });
  EXPECT_TRUE(absl::IsInvalidArgument(cap));
  EXPECT_NE(cap.message().find("capacity"), absl::string_view::npos);
  EXPECT_FALSE(bad([](DramTierOptions& o) { o.capacity_bytes = (1 << 30) + 1; }).ok());
  EXPECT_FALSE(bad([](DramTierOptions& o) { o.lease_timeout_ns = 0; }).ok());
  EXPECT_FALSE(bad([](DramTierOptions& o) { o.memfd_name.clear(); }).ok());
}

TEST(DramTierCreateTest, RejectsBadOptionsAndMissingClock) {
  testing::ManualClock clock;
  DramTierOptions o;
  o.page_bytes = 1000;
  EXPECT_TRUE(absl::IsInvalidArgument(DramTier::Create(o, &clock, nullptr).status()));
  DramTierOptions good;
  good.capacity_bytes = good.slab_bytes;
  good.preallocate = false;
  EXPECT_TRUE(absl::IsInvalidArgument(DramTier::Create(good, nullptr, nullptr).status()));
}

TEST_F(DramTierTest, ArenaLayout) {
  Make(64, 16);
  EXPECT_EQ(tier_->page_bytes(), kPage);
  EXPECT_EQ(tier_->generation_table_bytes(), kPage);
  EXPECT_EQ(tier_->arena_bytes(), 65 * kPage);
  EXPECT_GE(tier_->arena_fd(), 0);
  EXPECT_NE(tier_->arena_base(), nullptr);
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.capacity_bytes, 64 * kPage);
  EXPECT_EQ(s.used_bytes, 0u);
  ASSERT_THAT(s.namespaces, SizeIs(1));
  EXPECT_EQ(s.namespaces[0].namespace_id, kNs);
  EXPECT_EQ(s.namespaces[0].block_bytes, kPage);
}

TEST_F(DramTierTest, AddNamespace) {
  Make(64, 16);
  EXPECT_TRUE(tier_->AddNamespace(kNs, kPage).ok());  // idempotent
  EXPECT_TRUE(absl::IsAlreadyExists(tier_->AddNamespace(kNs, 2 * kPage)));
  EXPECT_TRUE(absl::IsInvalidArgument(tier_->AddNamespace(2, 0)));
  EXPECT_TRUE(absl::IsInvalidArgument(tier_->AddNamespace(2, 64 * kPage + 1)));
  EXPECT_TRUE(tier_->AddNamespace(2, 64 * kPage).ok());
}

TEST_F(DramTierTest, PutIsVisibleOnlyAfterCommit) {
  Make(64, 16);
  std::vector<BlockKey> keys = Keys({1, 2});
  std::vector<uint64_t> lengths = {kPage, 100};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  ASSERT_THAT(g.codes, ElementsAre(Code::kOk, Code::kOk));
  EXPECT_NE(g.lease_id, 0u);
  EXPECT_EQ(g.slots[0].length, kPage);
  EXPECT_EQ(g.slots[1].length, 100u);
  for (const SlotRef& s : g.slots) {
    EXPECT_EQ(s.offset % kPage, 0u);
    EXPECT_GE(s.offset, tier_->generation_table_bytes());
    EXPECT_LE(s.offset + s.length, tier_->arena_bytes());
  }
  EXPECT_NE(g.slots[0].offset, g.slots[1].offset);
  Write(1, g.slots[0]);
  Write(2, g.slots[1]);

  EXPECT_EQ(tier_->LookupPrefix(kNs, keys), 0u);
  LeaseGrant early = tier_->AcquireRead(kBob, kNs, keys);
  EXPECT_THAT(early.codes, ElementsAre(Code::kNotFound, Code::kNotFound));
  EXPECT_EQ(early.lease_id, 0u);
  EXPECT_EQ(tier_->Snapshot().blocks, 0u);
  EXPECT_EQ(tier_->Snapshot().used_bytes, 2 * kPage);  // reserved slots count as used

  auto codes = tier_->CommitPut(kAlice, g.lease_id);
  ASSERT_TRUE(codes.ok());
  EXPECT_THAT(*codes, ElementsAre(Code::kOk, Code::kOk));
  EXPECT_EQ(tier_->LookupPrefix(kNs, keys), 2u);
  LeaseGrant r = tier_->AcquireRead(kBob, kNs, keys);
  ASSERT_THAT(r.codes, ElementsAre(Code::kOk, Code::kOk));
  EXPECT_EQ(r.slots[0].offset, g.slots[0].offset);
  EXPECT_EQ(r.slots[1].length, 100u);
  EXPECT_TRUE(Holds(1, r.slots[0]));
  EXPECT_TRUE(Holds(2, r.slots[1]));
  EXPECT_EQ(r.slots[0].generation, tier_->SlotGeneration(r.slots[0].offset));

  // The lease is spent.
  EXPECT_TRUE(absl::IsNotFound(tier_->CommitPut(kAlice, g.lease_id).status()));
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.blocks, 2u);
  EXPECT_EQ(s.counters.puts, 2u);
  EXPECT_EQ(s.counters.bytes_in, kPage + 100);
  EXPECT_EQ(s.namespaces[0].used_bytes, kPage + 100);
  EXPECT_EQ(s.leases_active, 1u);
}

TEST_F(DramTierTest, ReservePutCodes) {
  Make(64, 16);
  Put({1});
  std::vector<BlockKey> pending = Keys({2});
  std::vector<uint64_t> one = {kPage};
  LeaseGrant bob = tier_->ReservePut(kBob, kNs, pending, one);
  ASSERT_THAT(bob.codes, ElementsAre(Code::kOk));

  // committed, being written by another lease, duplicate in batch, length 0, too long, new.
  std::vector<BlockKey> keys = Keys({1, 2, 3, 3, 4, 5, 6});
  std::vector<uint64_t> lengths = {kPage, kPage, kPage, kPage, 0, kPage + 1, 1};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  EXPECT_THAT(g.codes, ElementsAre(Code::kAlreadyExists, Code::kAlreadyExists, Code::kOk,
                                   Code::kInvalidArgument, Code::kInvalidArgument,
                                   Code::kInvalidArgument, Code::kOk));
  auto codes = tier_->CommitPut(kAlice, g.lease_id);
  ASSERT_TRUE(codes.ok());
  EXPECT_THAT(*codes, ElementsAre(Code::kOk, Code::kOk));  // keys 3 and 6
  EXPECT_THAT(Cached({3, 4, 5, 6}), ElementsAre(true, false, false, true));

  std::vector<uint64_t> short_lengths = {kPage};
  EXPECT_THAT(tier_->ReservePut(kAlice, kNs, Keys({7, 8}), short_lengths).codes,
              Each(Code::kInvalidArgument));
  LeaseGrant unknown = tier_->ReservePut(kAlice, 99, Keys({7}), one);
  EXPECT_THAT(unknown.codes, ElementsAre(Code::kInvalidArgument));
  EXPECT_EQ(unknown.lease_id, 0u);
}

TEST_F(DramTierTest, CommitPutChecksOwnerAndKind) {
  Make(64, 16);
  std::vector<uint64_t> one = {kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({1}), one);
  EXPECT_TRUE(absl::IsNotFound(tier_->CommitPut(kBob, g.lease_id).status()));
  EXPECT_TRUE(absl::IsNotFound(tier_->CommitPut(kAlice, 12345).status()));
  ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id).ok());
  LeaseGrant r = Read({1});
  EXPECT_TRUE(absl::IsInvalidArgument(tier_->CommitPut(kAlice, r.lease_id).status()));
  EXPECT_TRUE(tier_->Release(kAlice, r.lease_id).ok());  // still a live read lease
}

TEST_F(DramTierTest, LookupPrefixIsTheLongestCachedRun) {
  Make(64, 16);
  Put({0, 1, 3});
  std::vector<BlockKey> keys = Keys({0, 1, 2, 3});
  EXPECT_EQ(tier_->LookupPrefix(kNs, keys), 2u);
  EXPECT_EQ(tier_->LookupPrefix(kNs, std::span(keys).subspan(3)), 1u);
  EXPECT_EQ(tier_->LookupPrefix(kNs, std::span(keys).subspan(2)), 0u);
  EXPECT_EQ(tier_->LookupPrefix(kNs, {}), 0u);
  EXPECT_EQ(tier_->LookupPrefix(42, keys), 0u);
  ASSERT_TRUE(tier_->AddNamespace(2, kPage).ok());
  EXPECT_EQ(tier_->LookupPrefix(2, keys), 0u);  // namespaces never share blocks
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.counters.lookups, 6u);
  EXPECT_EQ(s.counters.lookup_keys, 4u + 1 + 2 + 0 + 4 + 4);
  EXPECT_EQ(s.counters.lookup_hit_keys, 3u);
  EXPECT_EQ(s.namespaces[0].counters.lookups, 4u);
  EXPECT_EQ(s.namespaces[0].counters.lookup_hit_keys, 3u);
}

TEST_F(DramTierTest, EvictionFollowsExactLruOrder) {
  Make(4, 4);  // four one-page slots
  Put({0, 1, 2, 3});
  // Reads are uses; lookups are not.
  for (uint64_t k : {0, 2}) {
    LeaseGrant r = Read({k});
    ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  }
  EXPECT_EQ(tier_->LookupPrefix(kNs, Keys({1, 3})), 2u);
  // Cold to hot: 1, 3, 0, 2.
  Put({4});
  EXPECT_THAT(Cached({0, 1, 2, 3, 4}), ElementsAre(true, false, true, true, true));
  Put({5});
  EXPECT_THAT(Cached({0, 1, 2, 3, 5}), ElementsAre(true, false, true, false, true));
  Put({6});
  EXPECT_THAT(Cached({0, 2, 4, 5, 6}), ElementsAre(false, true, true, true, true));
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.counters.evictions, 3u);
  EXPECT_EQ(s.namespaces[0].counters.evictions, 3u);
  EXPECT_EQ(s.blocks, 4u);
  EXPECT_EQ(s.used_bytes, 4 * kPage);
}

TEST_F(DramTierTest, TouchIsAUseButNotAHitAndPresentIsNeither) {
  Make(4, 4);  // four one-page slots
  Put({0, 1, 2, 3});
  EXPECT_THAT(tier_->Present(kNs, Keys({1, 9})), ElementsAre(true, false));
  // A prefetch hint for 1 and a missing key: 1 becomes the most recently used.
  EXPECT_THAT(tier_->Touch(kNs, Keys({1, 9})), ElementsAre(true, false));
  Put({4});  // evicts 0, the coldest; Present did not save it either
  EXPECT_THAT(Cached({0, 1, 2, 3, 4}), ElementsAre(false, true, true, true, true));
  Put({5, 6});  // 2 and 3 go before the touched 1
  EXPECT_THAT(Cached({1, 2, 3, 4, 5, 6}), ElementsAre(true, false, false, true, true, true));
  const TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.counters.hits, 0u);  // touches and presence checks are not gets
  EXPECT_EQ(s.counters.misses, 0u);
}

// Records what the tier evicts, with a copy of the bytes taken during the call.
TEST_F(DramTierTest, ReadLeasePinsAgainstEviction) {
  Make(4, 4);
  Put({0, 1, 2, 3});
  LeaseGrant r = Read({0});
  ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
  Put({4});  // the coldest, 0, is pinned: 1 goes
  EXPECT_THAT(Cached({0, 1, 4}), ElementsAre(true, false, true));
  EXPECT_TRUE(Holds(0, r.slots[0]));
  EXPECT_EQ(tier_->SlotGeneration(r.slots[0].offset), r.slots[0].generation);
  auto released = tier_->Release(kAlice, r.lease_id);
  ASSERT_TRUE(released.ok());
  EXPECT_FALSE(*released);
}

TEST_F(DramTierTest, EvictionBumpsTheGenerationOfTheSlot) {
  Make(1, 1);
  Put({0});
  LeaseGrant r = Read({0});
  const SlotRef before = r.slots[0];
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  EXPECT_EQ(tier_->SlotGeneration(before.offset), before.generation);
  Put({1});  // reuses the only slot
  EXPECT_EQ(tier_->SlotGeneration(before.offset), before.generation + 1);
  LeaseGrant r1 = Read({1});
  EXPECT_EQ(r1.slots[0].offset, before.offset);
  EXPECT_EQ(r1.slots[0].generation, before.generation + 1);
}

TEST_F(DramTierTest, ResourceExhaustedWhenEverythingIsPinned) {
  Make(4, 4);
  Put({0, 1, 2, 3});
  LeaseGrant r = Read({0, 1, 2, 3});
  std::vector<uint64_t> lengths(3, kPage);
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({4, 5, 0}), lengths);
  EXPECT_THAT(g.codes, ElementsAre(Code::kResourceExhausted, Code::kResourceExhausted,
                                   Code::kAlreadyExists));
  EXPECT_EQ(g.lease_id, 0u);
  EXPECT_THAT(Cached({0, 1, 2, 3}), Each(true));
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  Put({4});
  ExpectInvariants();
}

TEST_F(DramTierTest, SlotsBeingWrittenAreNeverEvicted) {
  Make(4, 4);
  std::vector<uint64_t> lengths(4, kPage);
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({0, 1, 2, 3}), lengths);
  ASSERT_THAT(g.codes, Each(Code::kOk));
  std::vector<uint64_t> one = {kPage};
  EXPECT_THAT(tier_->ReservePut(kBob, kNs, Keys({9}), one).codes,
              ElementsAre(Code::kResourceExhausted));
  // Part of a batch fits, the rest is refused; the granted part commits.
  ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id).ok());
  LeaseGrant pin = Read({0, 1});
  std::vector<uint64_t> three(3, kPage);
  LeaseGrant h = tier_->ReservePut(kBob, kNs, Keys({7, 8, 9}), three);
  EXPECT_THAT(h.codes, ElementsAre(Code::kOk, Code::kOk, Code::kResourceExhausted));
  auto codes = tier_->CommitPut(kBob, h.lease_id);
  ASSERT_TRUE(codes.ok());
  EXPECT_THAT(*codes, ElementsAre(Code::kOk, Code::kOk));
}

TEST_F(DramTierTest, StatsCountHitsMissesAndBytes) {
  Make(64, 16);
  ASSERT_TRUE(tier_->AddNamespace(2, kPage).ok());
  Put({0, 1});
  Put({0}, 2, 10);
  LeaseGrant r = Read({0, 1, 2, 3});
  EXPECT_THAT(r.codes, ElementsAre(Code::kOk, Code::kOk, Code::kNotFound, Code::kNotFound));
  tier_->AcquireRead(kAlice, 2, Keys({0, 1}));
  tier_->AcquireRead(kAlice, 99, Keys({0}));  // unknown namespace: a tier-level miss
  tier_->RecordBytesOut(kNs, 2 * kPage);
  tier_->RecordBytesOut(2, 10);
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.counters.hits, 3u);
  EXPECT_EQ(s.counters.misses, 4u);
  EXPECT_EQ(s.counters.hits + s.counters.misses, 4u + 2 + 1);
  EXPECT_EQ(s.counters.bytes_in, 2 * kPage + 10);
  EXPECT_EQ(s.counters.bytes_out, 2 * kPage + 10);
  EXPECT_EQ(s.counters.puts, 3u);
  ASSERT_THAT(s.namespaces, SizeIs(2));
  EXPECT_EQ(s.namespaces[0].counters.hits, 2u);
  EXPECT_EQ(s.namespaces[0].counters.misses, 2u);
  EXPECT_EQ(s.namespaces[0].counters.bytes_out, 2 * kPage);
  EXPECT_EQ(s.namespaces[1].namespace_id, 2u);
  EXPECT_EQ(s.namespaces[1].counters.hits, 1u);
  EXPECT_EQ(s.namespaces[1].counters.misses, 1u);
  EXPECT_EQ(s.namespaces[1].blocks, 1u);
  EXPECT_EQ(s.namespaces[1].used_bytes, 10u);
  EXPECT_EQ(s.blocks, 3u);
  EXPECT_EQ(s.used_bytes, 3 * kPage);
}

TEST_F(DramTierTest, RandomOperationsKeepTheInvariants) {
  Make(32, 8);
  ASSERT_TRUE(tier_->AddNamespace(2, 3 * kPage).ok());
  std::mt19937_64 rng(7);
  std::vector<std::pair<OwnerId, LeaseId>> reads, puts;
  uint64_t asked = 0;
  for (int step = 0; step < 5000; ++step) {
    const NamespaceId ns = rng() % 2 == 0 ? kNs : 2;
    const uint64_t block = ns == kNs ? kPage : 3 * kPage;
    const OwnerId owner = 1 + rng() % 3;
    std::vector<BlockKey> keys;
    for (uint64_t n = 1 + rng() % 4; n > 0; --n) keys.push_back(Key(rng() % 40));
    switch (rng() % 8) {
      case 0:
      case 1: {
        std::vector<uint64_t> lengths(keys.size(), 1 + rng() % block);
        LeaseGrant g = tier_->ReservePut(owner, ns, keys, lengths);
        if (g.lease_id != 0) puts.emplace_back(owner, g.lease_id);
        break;
      }
      case 2:
        if (!puts.empty()) {
          const size_t i = rng() % puts.size();
          // NotFound once an expired lease's tombstone is gone.
          absl::Status st = tier_->CommitPut(puts[i].first, puts[i].second).status();
          EXPECT_TRUE(st.ok() || absl::IsNotFound(st)) << st;
          puts.erase(puts.begin() + i);
        }
        break;
      case 3: {
        LeaseGrant g = tier_->AcquireRead(owner, ns, keys);
        asked += keys.size();
        if (g.lease_id != 0) reads.emplace_back(owner, g.lease_id);
        break;
      }
      case 4:
        if (!reads.empty()) {
          const size_t i = rng() % reads.size();
          absl::Status st = tier_->Release(reads[i].first, reads[i].second).status();
          EXPECT_TRUE(st.ok() || absl::IsNotFound(st)) << st;
          reads.erase(reads.begin() + i);
        }
        break;
      case 5:
        tier_->Remove(ns, keys);
        break;
      case 6:
        tier_->LookupPrefix(ns, keys);
        break;
      case 7:
        clock_.Advance(kTimeout / 4);
        tier_->ExpireLeases();
        break;
    }
    TierSnapshot s = tier_->Snapshot();
    ASSERT_LE(s.used_bytes, s.capacity_bytes);
    ASSERT_EQ(s.counters.hits + s.counters.misses, asked);
    ExpectInvariants();
  }
  for (auto [owner, id] : reads) tier_->Release(owner, id).IgnoreError();
  for (auto [owner, id] : puts) tier_->Release(owner, id).IgnoreError();
  clock_.Advance(3 * kTimeout);
  tier_->ExpireLeases();
  // Everything still held is committed blocks: removing them empties the arena.
  for (NamespaceId ns : {kNs, NamespaceId{2}}) {
    std::vector<BlockKey> all;
    for (uint64_t k = 0; k < 40; ++k) all.push_back(Key(k));
    tier_->Remove(ns, all);
  }
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.used_bytes, 0u);
  EXPECT_EQ(s.blocks, 0u);
  EXPECT_EQ(s.leases_active, 0u);
}

TEST_F(DramTierTest, ArenaIsVisibleThroughASecondMapping) {
  Make(16, 16);
  Put({5, 6});
  LeaseGrant r = Read({5, 6});
  void* other = mmap(nullptr, tier_->arena_bytes(), PROT_READ, MAP_SHARED, tier_->arena_fd(), 0);
  ASSERT_NE(other, MAP_FAILED);
  const auto* base = static_cast<const std::byte*>(other);
  for (int i = 0; i < 2; ++i) {
    const SlotRef& s = r.slots[i];
    EXPECT_EQ(std::memcmp(base + s.offset, tier_->arena_base() + s.offset, s.length), 0);
    EXPECT_EQ(base[s.offset + 3], Pattern(5 + i, 3));
  }
  // The generation table is where a client expects it: offset / page_bytes.
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  EXPECT_THAT(tier_->Remove(kNs, Keys({5})), ElementsAre(Code::kOk));
  const auto* table = static_cast<const uint64_t*>(other);
  EXPECT_EQ(table[r.slots[0].offset / kPage], r.slots[0].generation + 1);
  EXPECT_EQ(table[r.slots[1].offset / kPage], r.slots[1].generation);
  // Bytes written through the second mapping's writable twin show up in the daemon's.
  void* rw =
      mmap(nullptr, tier_->arena_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, tier_->arena_fd(), 0);
  ASSERT_NE(rw, MAP_FAILED);
  static_cast<std::byte*>(rw)[r.slots[1].offset] = std::byte{0x42};
  EXPECT_EQ(tier_->arena_base()[r.slots[1].offset], std::byte{0x42});
  munmap(rw, tier_->arena_bytes());
  munmap(other, tier_->arena_bytes());
}

TEST_F(DramTierTest, CustomPolicyIsConsulted) {
  // A policy that evicts the most recently inserted block instead: proves the tier asks it.
  class MruPolicy final : public EvictionPolicy {
   public:
    std::string_view Name() const override { return "mru"; }
    void OnInsert(EntryId id, uint32_t) override { order_.push_back(id); }
    void OnAccess(EntryId) override {}
    void OnRemove(EntryId id) override { std::erase(order_, id); }
    std::optional<EntryId> PickVictim(uint32_t, const std::function<bool(EntryId)>& ok) override {
      for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
        if (ok(*it)) return *it;
      }
      return std::nullopt;
    }

   private:
    std::vector<EntryId> order_;
  };
  DramTierOptions options;
  options.capacity_bytes = 2 * kPage;
  options.slab_bytes = 2 * kPage;
  options.preallocate = false;
  auto tier = DramTier::Create(options, &clock_, std::make_unique<MruPolicy>());
  ASSERT_TRUE(tier.ok());
  tier_ = std::move(*tier);
  ASSERT_TRUE(tier_->AddNamespace(kNs, kPage).ok());
  Put({0, 1});
  Put({2});
  EXPECT_THAT(Cached({0, 1, 2}), ElementsAre(true, false, true));
}

TEST_F(DramTierTest, WorksWithThePrefixAwarePolicy) {
  // The tier passes each block's fingerprint and, within a put batch, its parent (the key
  // before it), so prefix-slru evicts the tip of a chain before its root.
  auto policy = NewPolicy("prefix-slru", PolicyOptions{.capacity_blocks = 8});
  ASSERT_TRUE(policy.ok()) << policy.status();
  DramTierOptions options;
  options.capacity_bytes = 8 * kPage;
  options.slab_bytes = 8 * kPage;
  options.preallocate = false;
  auto tier = DramTier::Create(options, &clock_, std::move(*policy));
  ASSERT_TRUE(tier.ok());
  tier_ = std::move(*tier);
  ASSERT_TRUE(tier_->AddNamespace(kNs, kPage).ok());
  Put({0, 1, 2, 3});
  Put({10, 11, 12, 13});
  LeaseGrant r = Read({0, 1, 2, 3});  // reused: protected
  ASSERT_THAT(r.codes, Each(Code::kOk));
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  Put({20, 21});  // the unread chain goes, tip first
  EXPECT_THAT(Cached({0, 1, 2, 3}), Each(true));
  EXPECT_THAT(Cached({10, 11, 12, 13}), ElementsAre(true, true, false, false));
  Put({30});
  EXPECT_THAT(Cached({10, 11, 20, 21, 30}), ElementsAre(true, false, true, true, true));
  EXPECT_EQ(tier_->Snapshot().counters.evictions, 3u);
  ExpectInvariants();
}
}  // namespace
}  // namespace kvtier::tiers
