#include "kvtier/tiers/dram_tier.h"

#include <sys/mman.h>

#include <cstring>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvtier/common/testing/manual_clock.h"
#include "kvtier/tiers/policies.h"

namespace kvtier::tiers {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::SizeIs;
using Code = absl::StatusCode;

constexpr uint32_t kPage = 4096;
constexpr int64_t kTimeout = 1'000'000'000;
constexpr NamespaceId kNs = 1;
constexpr OwnerId kAlice = 100;
constexpr OwnerId kBob = 200;

BlockKey Key(uint64_t i) {
  BlockKey k;
  std::memcpy(k.bytes.data(), &i, sizeof(i));
  k.bytes[31] = 0xab;
  return k;
}

std::vector<BlockKey> Keys(std::initializer_list<uint64_t> ids) {
  std::vector<BlockKey> keys;
  for (uint64_t i : ids) keys.push_back(Key(i));
  return keys;
}

std::byte Pattern(uint64_t key, uint64_t i) { return std::byte((key * 131 + i * 7) & 0xff); }

class DramTierTest : public ::testing::Test {
 protected:
  // A tier of `capacity_pages` pages in slabs of `slab_pages` pages, with namespace kNs of
  // one-page blocks.
  void Make(uint64_t capacity_pages, uint64_t slab_pages) {
    DramTierOptions options;
    options.capacity_bytes = capacity_pages * kPage;
    options.slab_bytes = slab_pages * kPage;
    options.lease_timeout_ns = kTimeout;
    options.preallocate = false;
    auto tier = DramTier::Create(options, &clock_, nullptr);
    ASSERT_TRUE(tier.ok()) << tier.status();
    tier_ = std::move(*tier);
    ASSERT_TRUE(tier_->AddNamespace(kNs, kPage).ok());
  }

  // Reserves, writes the key's pattern through arena_base() and commits; expects success.
  void Put(std::initializer_list<uint64_t> ids, NamespaceId ns = kNs, uint64_t length = kPage) {
    std::vector<BlockKey> keys;
    for (uint64_t i : ids) keys.push_back(Key(i));
    std::vector<uint64_t> lengths(keys.size(), length);
    LeaseGrant g = tier_->ReservePut(kAlice, ns, keys, lengths);
    ASSERT_THAT(g.codes, Each(Code::kOk));
    size_t k = 0;
    for (uint64_t id : ids) Write(id, g.slots[k++]);
    auto codes = tier_->CommitPut(kAlice, g.lease_id);
    ASSERT_TRUE(codes.ok()) << codes.status();
    ASSERT_THAT(*codes, Each(Code::kOk));
  }

  void Write(uint64_t key, const SlotRef& slot) {
    std::byte* p = tier_->arena_base() + slot.offset;
    for (uint64_t i = 0; i < slot.length; ++i) p[i] = Pattern(key, i);
  }

  bool Holds(uint64_t key, const SlotRef& slot) {
    const std::byte* p = tier_->arena_base() + slot.offset;
    for (uint64_t i = 0; i < slot.length; ++i) {
      if (p[i] != Pattern(key, i)) return false;
    }
    return true;
  }

  // Whether each key is cached (one LookupPrefix per key, so the answer is per key).
  std::vector<bool> Cached(std::initializer_list<uint64_t> ids, NamespaceId ns = kNs) {
    std::vector<bool> out;
    for (uint64_t i : ids) {
      BlockKey k = Key(i);
      out.push_back(tier_->LookupPrefix(ns, {&k, 1}) == 1);
    }
    return out;
  }

  LeaseGrant Read(std::initializer_list<uint64_t> ids, OwnerId owner = kAlice) {
    std::vector<BlockKey> keys = Keys(ids);
    return tier_->AcquireRead(owner, kNs, keys);
  }

  void ExpectInvariants() {
    TierSnapshot s = tier_->Snapshot();
    EXPECT_LE(s.used_bytes, s.capacity_bytes);
    EXPECT_LE(s.blocks * kPage, s.used_bytes);
    EXPECT_LE(s.counters.lookup_hit_keys, s.counters.lookup_keys);
    uint64_t blocks = 0;
    for (const NamespaceSnapshot& ns : s.namespaces) {
      blocks += ns.blocks;
      EXPECT_LE(ns.used_bytes, s.used_bytes);
      EXPECT_LE(ns.counters.lookup_hit_keys, ns.counters.lookup_keys);
    }
    EXPECT_EQ(blocks, s.blocks);
  }

  testing::ManualClock clock_;
  std::unique_ptr<DramTier> tier_;
};

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

// Records what the tier evicts, with a copy of the bytes taken during the call.
class RecordingListener : public EvictionListener {
 public:
  struct Seen {
    NamespaceId ns;
    BlockKey key;
    std::vector<std::byte> bytes;
    uint32_t hits;
    bool persisted;
  };
  void OnEvict(const EvictedBlock& b) override {
    seen.push_back({b.ns, b.key, {b.bytes.begin(), b.bytes.end()}, b.hits, b.persisted});
  }
  std::vector<Seen> seen;
};

TEST_F(DramTierTest, EvictionListenerSeesEvictedBytesHitsAndPersistedFlag) {
  Make(2, 2);
  RecordingListener listener;
  tier_->SetEvictionListener(&listener);
  Put({0});
  // Block 1 arrives flagged as persisted (a promotion from a lower tier).
  {
    std::vector<BlockKey> keys = Keys({1});
    std::vector<uint64_t> lengths = {kPage};
    LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths, /*persisted=*/true);
    ASSERT_THAT(g.codes, ElementsAre(Code::kOk));
    Write(1, g.slots[0]);
    ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id).ok());
  }
  for (int i = 0; i < 3; ++i) {
    LeaseGrant r = Read({0});
    ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  }
  // LRU: 1 is older than 0 (read since), so 1 goes first, then 0.
  Put({2});
  Put({3});
  ASSERT_THAT(listener.seen, SizeIs(2));
  EXPECT_EQ(listener.seen[0].key, Key(1));
  EXPECT_TRUE(listener.seen[0].persisted);
  EXPECT_EQ(listener.seen[0].hits, 0u);
  EXPECT_EQ(listener.seen[1].key, Key(0));
  EXPECT_FALSE(listener.seen[1].persisted);
  EXPECT_EQ(listener.seen[1].hits, 3u);
  EXPECT_EQ(listener.seen[1].ns, kNs);
  ASSERT_THAT(listener.seen[1].bytes, SizeIs(kPage));
  for (uint64_t i = 0; i < kPage; ++i) ASSERT_EQ(listener.seen[1].bytes[i], Pattern(0, i));
  // Remove is not an eviction.
  EXPECT_THAT(tier_->Remove(kNs, Keys({2})), ElementsAre(Code::kOk));
  EXPECT_THAT(listener.seen, SizeIs(2));
  tier_->SetEvictionListener(nullptr);
}

TEST_F(DramTierTest, CommitPutCanMarkBlocksPersisted) {
  Make(2, 2);
  RecordingListener listener;
  tier_->SetEvictionListener(&listener);
  std::vector<BlockKey> keys = Keys({7});
  std::vector<uint64_t> lengths = {kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  ASSERT_THAT(g.codes, ElementsAre(Code::kOk));
  ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id, {.persisted = true}).ok());
  Put({8});
  Put({9});
  ASSERT_THAT(listener.seen, SizeIs(1));
  EXPECT_TRUE(listener.seen[0].persisted);
  tier_->SetEvictionListener(nullptr);
}

TEST_F(DramTierTest, PutLeaseBlocksPresentAndListBlocks) {
  Make(8, 8);
  std::vector<BlockKey> keys = Keys({1, 2});
  std::vector<uint64_t> lengths = {kPage, 100};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  ASSERT_THAT(g.codes, Each(Code::kOk));
  auto blocks = tier_->GetPutLeaseBlocks(kAlice, g.lease_id);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_EQ(blocks->ns, kNs);
  EXPECT_THAT(blocks->keys, ElementsAre(Key(1), Key(2)));
  ASSERT_THAT(blocks->slots, SizeIs(2));
  EXPECT_EQ(blocks->slots[0].offset, g.slots[0].offset);
  EXPECT_EQ(blocks->slots[1].length, 100u);
  Write(1, blocks->slots[0]);
  Write(2, blocks->slots[1]);
  EXPECT_EQ(tier_->GetPutLeaseBlocks(kBob, g.lease_id).status().code(), Code::kNotFound);
  // Reserved but not committed: not present.
  EXPECT_THAT(tier_->Present(kNs, keys), ElementsAre(false, false));
  ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id).ok());
  EXPECT_EQ(tier_->GetPutLeaseBlocks(kAlice, g.lease_id).status().code(), Code::kNotFound);
  EXPECT_THAT(tier_->Present(kNs, Keys({1, 3, 2})), ElementsAre(true, false, true));
  EXPECT_THAT(tier_->Present(kNs + 7, keys), ElementsAre(false, false));

  clock_.Advance(10);
  Put({3});
  clock_.Advance(10);
  LeaseGrant r = Read({1});
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  // Most recently used first: 1 (read last), 3, 2.
  std::vector<BlockListing> list = tier_->ListBlocks();
  ASSERT_THAT(list, SizeIs(3));
  EXPECT_EQ(list[0].key, Key(1));
  EXPECT_EQ(list[0].hits, 1u);
  EXPECT_EQ(list[1].key, Key(3));
  EXPECT_EQ(list[2].key, Key(2));
  EXPECT_EQ(list[2].length, 100u);
  EXPECT_TRUE(Holds(1, SlotRef{list[0].offset, list[0].length, 0}));
}

TEST_F(DramTierTest, CommitCanShortenTheReservedLengths) {
  Make(4, 4);
  std::vector<BlockKey> keys = Keys({1, 2});
  std::vector<uint64_t> lengths = {kPage, kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  ASSERT_THAT(g.codes, Each(Code::kOk));
  const std::vector<uint64_t> too_long = {kPage, kPage + 1};
  auto bad = tier_->CommitPut(kAlice, g.lease_id, {.lengths = too_long});
  ASSERT_TRUE(bad.ok());
  EXPECT_THAT(*bad, Each(Code::kInvalidArgument));
  const std::vector<uint64_t> zero = {0, 5};
  EXPECT_THAT(*tier_->CommitPut(kAlice, g.lease_id, {.lengths = zero}),
              Each(Code::kInvalidArgument));
  // The lease is still open after a refused commit.
  const std::vector<uint64_t> final_lengths = {10, kPage};
  auto ok = tier_->CommitPut(kAlice, g.lease_id, {.lengths = final_lengths});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_THAT(*ok, Each(Code::kOk));
  LeaseGrant r = Read({1, 2});
  EXPECT_EQ(r.slots[0].length, 10u);
  EXPECT_EQ(r.slots[1].length, kPage);
  EXPECT_EQ(tier_->Snapshot().namespaces[0].used_bytes, 10 + kPage);
}

TEST_F(DramTierTest, ExtendReadTurnsAGetsMissesIntoHitsUnderItsLease) {
  Make(4, 4);
  Put({0});
  LeaseGrant r = Read({0, 1, 2});  // 1 and 2 miss
  ASSERT_NE(r.lease_id, 0u);
  Put({1});
  LeaseGrant more = tier_->ExtendRead(kAlice, r.lease_id, kNs, Keys({1, 2}));
  EXPECT_EQ(more.lease_id, r.lease_id);
  EXPECT_THAT(more.codes, ElementsAre(Code::kOk, Code::kNotFound));
  EXPECT_TRUE(Holds(1, more.slots[0]));
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.counters.hits, 2u);
  EXPECT_EQ(s.counters.misses, 1u);  // hits + misses == keys asked for
  // Both blocks are pinned by the one lease: a full tier cannot evict them.
  Put({2, 3});
  LeaseGrant g = tier_->ReservePut(kBob, kNs, Keys({4, 5}), std::vector<uint64_t>{kPage, kPage});
  EXPECT_THAT(g.codes, ElementsAre(Code::kOk, Code::kOk));
  EXPECT_THAT(Cached({0, 1}), ElementsAre(true, true));
  ASSERT_TRUE(tier_->Release(kBob, g.lease_id).ok());
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  // Another owner's lease, or a lease that is gone: nothing.
  EXPECT_THAT(tier_->ExtendRead(kBob, r.lease_id, kNs, Keys({0})).codes,
              ElementsAre(Code::kNotFound));
  // No lease yet: a new one.
  LeaseGrant fresh = tier_->ExtendRead(kBob, 0, kNs, Keys({0}));
  EXPECT_NE(fresh.lease_id, 0u);
  EXPECT_THAT(fresh.codes, ElementsAre(Code::kOk));
  EXPECT_TRUE(tier_->Release(kBob, fresh.lease_id).ok());
}

TEST_F(DramTierTest, PinnedBlocksAreNeverEvictedUntilUnpinned) {
  Make(3, 3);
  Put({0, 1, 2});
  EXPECT_THAT(tier_->SetPinned(kNs, Keys({0, 1, 9}), true),
              ElementsAre(Code::kOk, Code::kOk, Code::kNotFound));
  EXPECT_THAT(tier_->SetPinned(kNs, Keys({0}), true), ElementsAre(Code::kOk));  // idempotent
  EXPECT_EQ(tier_->Snapshot().namespaces[0].pinned_blocks, 2u);
  // LRU would take 0 first; the pins leave only 2, then each new block, to evict.
  for (uint64_t k = 3; k < 8; ++k) Put({k});
  EXPECT_THAT(Cached({0, 1, 7}), ElementsAre(true, true, true));
  // Everything pinned: a put gets ResourceExhausted instead of taking a pinned block.
  ASSERT_THAT(tier_->SetPinned(kNs, Keys({7}), true), ElementsAre(Code::kOk));
  LeaseGrant full = tier_->ReservePut(kAlice, kNs, Keys({8}), std::vector<uint64_t>{kPage});
  EXPECT_THAT(full.codes, ElementsAre(Code::kResourceExhausted));
  // Unpinned, 0 is evictable again; one unpin undoes any number of pins.
  ASSERT_THAT(tier_->SetPinned(kNs, Keys({0}), false), ElementsAre(Code::kOk));
  Put({8});
  EXPECT_THAT(Cached({0, 1, 7, 8}), ElementsAre(false, true, true, true));
  // Remove takes a pinned block and its pin with it.
  EXPECT_THAT(tier_->Remove(kNs, Keys({1})), ElementsAre(Code::kOk));
  EXPECT_EQ(tier_->Snapshot().namespaces[0].pinned_blocks, 1u);
  ExpectInvariants();
}

TEST_F(DramTierTest, PutLeaseBlocksOfAnExpiredLeaseIsDeadlineExceeded) {
  Make(4, 4);
  std::vector<BlockKey> keys = Keys({1});
  std::vector<uint64_t> lengths = {kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  clock_.Advance(kTimeout);
  EXPECT_EQ(tier_->GetPutLeaseBlocks(kAlice, g.lease_id).status().code(), Code::kDeadlineExceeded);
  LeaseGrant r = tier_->AcquireRead(kAlice, kNs, keys);
  EXPECT_EQ(tier_->GetPutLeaseBlocks(kAlice, r.lease_id).status().code(), Code::kNotFound);
}

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

TEST_F(DramTierTest, RemoveIgnoresPutsInFlightAndUnknownNamespaces) {
  Make(4, 4);
  std::vector<uint64_t> one = {kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, Keys({0}), one);
  EXPECT_THAT(tier_->Remove(kNs, Keys({0})), ElementsAre(Code::kNotFound));
  EXPECT_THAT(tier_->Remove(77, Keys({0})), ElementsAre(Code::kNotFound));
  ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id).ok());
  EXPECT_THAT(tier_->Remove(kNs, Keys({0})), ElementsAre(Code::kOk));
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

TEST_F(DramTierTest, ClassesReclaimSlabsFromEachOther) {
  Make(8, 4);  // two slabs of four pages
  constexpr NamespaceId kBig = 2;
  ASSERT_TRUE(tier_->AddNamespace(kBig, 2 * kPage).ok());
  Put({0, 1, 2, 3, 4, 5, 6, 7});  // both slabs full of one-page blocks
  // Keys 4..7 sit in the second slab; pin one of them so the first slab is the one to go.
  LeaseGrant pin = Read({5});
  Put({100}, kBig, 2 * kPage);
  EXPECT_THAT(Cached({0, 1, 2, 3}), Each(false));
  EXPECT_THAT(Cached({4, 5, 6, 7}), Each(true));
  EXPECT_THAT(Cached({100}, kBig), ElementsAre(true));
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.counters.evictions, 4u);
  EXPECT_EQ(s.used_bytes, 6 * kPage);
  // The big class now has a slab of its own and evicts within it.
  Put({101}, kBig, 2 * kPage);
  Put({102}, kBig, 2 * kPage);
  EXPECT_THAT(Cached({100, 101, 102}, kBig), ElementsAre(false, true, true));
  EXPECT_THAT(Cached({4, 5, 6, 7}), Each(true));
  // A one-page block now evicts within its own class, skipping the pinned key 5.
  Put({8});
  EXPECT_THAT(Cached({4, 5, 6, 7, 8}), ElementsAre(false, true, true, true, true));
  ExpectInvariants();
  ASSERT_TRUE(tier_->Release(kAlice, pin.lease_id).ok());
}

TEST_F(DramTierTest, ReclaimFailsWhenEverySlabHoldsAPin) {
  Make(8, 4);
  constexpr NamespaceId kBig = 2;
  ASSERT_TRUE(tier_->AddNamespace(kBig, 2 * kPage).ok());
  Put({0, 1, 2, 3, 4, 5, 6, 7});
  LeaseGrant pin = Read({0, 7});
  std::vector<uint64_t> sizes = {2 * kPage};
  EXPECT_THAT(tier_->ReservePut(kAlice, kBig, Keys({100}), sizes).codes,
              ElementsAre(Code::kResourceExhausted));
  EXPECT_EQ(tier_->Snapshot().counters.evictions, 0u);  // nothing lost for nothing
  ASSERT_TRUE(tier_->Release(kAlice, pin.lease_id).ok());
  Put({100}, kBig, 2 * kPage);
}

// Slab calcification: a namespace that filled the arena first must not keep its slabs forever.
// 64 pages in slabs of 8: 8 slabs of eight one-page blocks, or of two four-page blocks.
class DramTierGlobalLruTest : public DramTierTest {
 protected:
  static constexpr NamespaceId kBig = 2;
  static constexpr uint64_t kBigBytes = 4 * kPage;

  void SetUp() override {
    Make(64, 8);
    ASSERT_TRUE(tier_->AddNamespace(kBig, kBigBytes).ok());
  }

  // Puts each key on its own, the clock one tick later each time; checks the capacity bound.
  void PutEach(uint64_t first, uint64_t count, NamespaceId ns) {
    for (uint64_t k = first; k < first + count; ++k) {
      clock_.Advance(1);
      Put({k}, ns, ns == kBig ? kBigBytes : kPage);
      ASSERT_LE(tier_->Snapshot().used_bytes, 64 * kPage);
    }
  }

  // Reads and releases each key (a use), one tick apart.
  void Touch(uint64_t first, uint64_t count) {
    for (uint64_t k = first; k < first + count; ++k) {
      clock_.Advance(1);
      LeaseGrant r = Read({k});
      ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
      ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
    }
  }

  NamespaceSnapshot Ns(NamespaceId id) {
    for (const NamespaceSnapshot& ns : tier_->Snapshot().namespaces) {
      if (ns.namespace_id == id) return ns;
    }
    return {};
  }

  size_t CountCached(uint64_t first, uint64_t count, NamespaceId ns) {
    size_t n = 0;
    for (uint64_t k = first; k < first + count; ++k) {
      BlockKey key = Key(k);
      n += tier_->LookupPrefix(ns, {&key, 1});
    }
    return n;
  }
};

TEST_F(DramTierGlobalLruTest, ANewBlockSizeTakesTheSlabsOfAnIdleOne) {
  PutEach(0, 64, kNs);  // the arena is full of one-page blocks, never read again
  PutEach(1000, 40, kBig);
  // Every slab moved to the four-page class: 16 blocks, the 16 most recent.
  EXPECT_EQ(Ns(kBig).blocks, 16u);
  EXPECT_EQ(Ns(kBig).used_bytes, 64 * kPage);
  EXPECT_EQ(Ns(kNs).blocks, 0u);
  std::vector<BlockKey> recent;
  for (uint64_t k = 1024; k < 1040; ++k) recent.push_back(Key(k));
  LeaseGrant r = tier_->AcquireRead(kAlice, kBig, recent);
  EXPECT_THAT(r.codes, Each(Code::kOk));
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  EXPECT_EQ(CountCached(1000, 24, kBig), 0u);
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.namespaces[0].counters.evictions, 64u);  // every small block, counted
  EXPECT_EQ(s.namespaces[1].counters.evictions, 24u);
  EXPECT_EQ(s.counters.evictions, 88u);
  ExpectInvariants();
}

TEST_F(DramTierGlobalLruTest, OnlyBlocksOlderThanTheOtherClassesVictimGo) {
  PutEach(0, 64, kNs);  // slab i holds keys 8i..8i+7, slab by slab in time
  // Slab 0 goes because the class had none, slabs 1 and 2 because their blocks are older than
  // the big class's.
  PutEach(1000, 6, kBig);
  EXPECT_EQ(CountCached(0, 24, kNs), 0u);
  EXPECT_EQ(CountCached(24, 40, kNs), 40u);
  // Keys 56..63 (slab 7) are used again, after every big block so far.
  Touch(56, 8);
  PutEach(1006, 10, kBig);
  // Slabs 3..6 went (older than every big block); then the big class's own oldest block was
  // older than slab 7's oldest one, so the big class evicted within itself.
  EXPECT_EQ(CountCached(0, 56, kNs), 0u);
  EXPECT_EQ(CountCached(56, 8, kNs), 8u);
  EXPECT_EQ(Ns(kBig).blocks, 14u);
  EXPECT_EQ(CountCached(1002, 14, kBig), 14u);
  EXPECT_EQ(CountCached(1000, 2, kBig), 0u);
  EXPECT_EQ(tier_->Snapshot().counters.evictions, 56u + 2);
  ExpectInvariants();
  // The big blocks are unused from here on; new small blocks take their slabs back as they age.
  PutEach(2000, 64, kNs);
  EXPECT_EQ(CountCached(2000, 64, kNs), 64u);
  EXPECT_EQ(Ns(kBig).blocks, 0u);
  ExpectInvariants();
}

TEST_F(DramTierGlobalLruTest, ReclaimNeverTakesAPinnedBlock) {
  PutEach(0, 64, kNs);
  // Pin one block in slab 0 and one in slab 1 (a read also makes them recent).
  LeaseGrant pin = Read({0, 9});
  ASSERT_THAT(pin.codes, Each(Code::kOk));
  PutEach(1000, 30, kBig);
  // Slabs 2..7 went to the big class; slabs 0 and 1 hold pins and stay whole, although their
  // other blocks are older than every big block.
  EXPECT_EQ(Ns(kBig).blocks, 12u);
  EXPECT_EQ(CountCached(0, 16, kNs), 16u);
  EXPECT_EQ(CountCached(16, 48, kNs), 0u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(Holds(i == 0 ? 0 : 9, pin.slots[i]));
    EXPECT_EQ(tier_->SlotGeneration(pin.slots[i].offset), pin.slots[i].generation);
  }
  ExpectInvariants();
  ASSERT_TRUE(tier_->Release(kAlice, pin.lease_id).ok());
  // Unpinned, their slabs age out like the others.
  PutEach(1030, 4, kBig);
  EXPECT_EQ(Ns(kBig).blocks, 16u);
  EXPECT_EQ(Ns(kNs).blocks, 0u);
  ExpectInvariants();
}

TEST_F(DramTierGlobalLruTest, ATiedAgeStaysWithinTheClass) {
  // With the clock standing still, nothing is older than anything: the old per-class rule.
  Put({0, 1, 2, 3, 4, 5, 6, 7});
  for (uint64_t k = 8; k < 64; k += 8) {
    Put({k, k + 1, k + 2, k + 3, k + 4, k + 5, k + 6, k + 7});
  }
  Put({1000}, kBig, kBigBytes);  // no slab: takes one
  Put({1001}, kBig, kBigBytes);
  Put({1002}, kBig, kBigBytes);  // full slab, tie: evicts its own
  EXPECT_EQ(Ns(kBig).blocks, 2u);
  EXPECT_EQ(Ns(kNs).blocks, 56u);
}

TEST_F(DramTierTest, ReclaimWithMixedSlabSizesKeepsPinsAndCapacity) {
  // Slabs of 8 pages: one-page blocks get 8-page slabs, three-page blocks 6-page slabs, five-page
  // blocks 5-page slabs, so a freed slab does not always fit another class's slab and runs of
  // adjacent slabs are needed. Every pinned block must keep its bytes and generation.
  Make(64, 8);
  const std::vector<std::pair<NamespaceId, uint64_t>> spaces = {
      {kNs, kPage}, {2, 3 * kPage}, {3, 5 * kPage}};
  for (auto [ns, bytes] : spaces) ASSERT_TRUE(tier_->AddNamespace(ns, bytes).ok());
  struct Pin {
    LeaseId lease;
    NamespaceId ns;
    uint64_t key;
    SlotRef slot;
  };
  std::vector<Pin> pins;
  std::mt19937_64 rng(11);
  for (int step = 0; step < 4000; ++step) {
    clock_.Advance(1 + rng() % 3);
    // Later namespaces get busier over time, so slabs must move.
    const size_t which = std::min<size_t>(2, (rng() % 4 + step / 1500) % 3);
    const auto [ns, bytes] = spaces[which];
    const uint64_t key = rng() % 64;
    BlockKey k = Key(key);
    if (rng() % 3 == 0) {
      LeaseGrant g = tier_->AcquireRead(kAlice, ns, {&k, 1});
      if (g.lease_id != 0) {
        if (rng() % 4 == 0 && pins.size() < 4) {
          pins.push_back({g.lease_id, ns, key, g.slots[0]});
        } else {
          ASSERT_TRUE(tier_->Release(kAlice, g.lease_id).ok());
        }
      }
    } else {
      const uint64_t length = bytes;
      LeaseGrant g = tier_->ReservePut(kAlice, ns, {&k, 1}, {&length, 1});
      if (g.lease_id != 0) {
        std::byte* p = tier_->arena_base() + g.slots[0].offset;
        for (uint64_t i = 0; i < length; ++i) p[i] = Pattern(key * 7 + ns, i);
        ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id).ok());
      }
    }
    if (!pins.empty() && rng() % 8 == 0) {
      const size_t i = rng() % pins.size();
      ASSERT_TRUE(tier_->Release(kAlice, pins[i].lease).ok());
      pins.erase(pins.begin() + i);
    }
    for (const Pin& pin : pins) {
      const std::byte* p = tier_->arena_base() + pin.slot.offset;
      for (uint64_t i = 0; i < pin.slot.length; ++i) {
        ASSERT_EQ(p[i], Pattern(pin.key * 7 + pin.ns, i)) << "step " << step;
      }
      ASSERT_EQ(tier_->SlotGeneration(pin.slot.offset), pin.slot.generation);
    }
    TierSnapshot s = tier_->Snapshot();
    ASSERT_LE(s.used_bytes, s.capacity_bytes);
    uint64_t stored = 0;
    for (const NamespaceSnapshot& ns : s.namespaces) stored += ns.used_bytes;
    ASSERT_LE(stored, s.used_bytes);
    ExpectInvariants();
  }
  // The busiest namespace at the end holds a good share of the arena.
  TierSnapshot s = tier_->Snapshot();
  EXPECT_GE(s.namespaces[2].used_bytes, 20 * kPage);
  for (const Pin& pin : pins) ASSERT_TRUE(tier_->Release(kAlice, pin.lease).ok());
}

TEST_F(DramTierTest, BlocksLargerThanASlabGetDedicatedSlabs) {
  Make(16, 4);
  constexpr NamespaceId kHuge = 3;
  ASSERT_TRUE(tier_->AddNamespace(kHuge, 5 * kPage + 1).ok());  // 6 pages per slot
  Put({1}, kHuge, 5 * kPage + 1);
  Put({2}, kHuge, 5 * kPage + 1);
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.used_bytes, 12 * kPage);
  Put({3}, kHuge, 5 * kPage + 1);  // 4 pages left: the coldest huge block goes
  EXPECT_THAT(Cached({1, 2, 3}, kHuge), ElementsAre(false, true, true));
  // One-page blocks still fit in the remaining 4 pages.
  Put({10, 11, 12, 13});
  EXPECT_THAT(Cached({2, 3}, kHuge), Each(true));
  LeaseGrant r = tier_->AcquireRead(kAlice, kHuge, Keys({2}));
  ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
  EXPECT_EQ(r.slots[0].length, 5 * kPage + 1);
  EXPECT_TRUE(Holds(2, r.slots[0]));
  ExpectInvariants();
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
