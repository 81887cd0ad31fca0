// Shared by the DRAM tier's tests: keys, block patterns and a fixture that makes small tiers on
// a manual clock. Test-only.
#pragma once

#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvtier/common/testing/manual_clock.h"
#include "kvtier/tiers/dram_tier.h"

namespace kvtier::tiers {

using Code = absl::StatusCode;

constexpr uint32_t kPage = 4096;
constexpr int64_t kTimeout = 1'000'000'000;
constexpr NamespaceId kNs = 1;
constexpr OwnerId kAlice = 100;
constexpr OwnerId kBob = 200;

inline BlockKey Key(uint64_t i) {
  BlockKey k;
  std::memcpy(k.bytes.data(), &i, sizeof(i));
  k.bytes[31] = 0xab;
  return k;
}

inline std::vector<BlockKey> Keys(std::initializer_list<uint64_t> ids) {
  std::vector<BlockKey> keys;
  for (uint64_t i : ids) keys.push_back(Key(i));
  return keys;
}

inline std::byte Pattern(uint64_t key, uint64_t i) { return std::byte((key * 131 + i * 7) & 0xff); }

class DramTierTest : public ::testing::Test {
 protected:
  // A tier of `capacity_pages` pages in slabs of `slab_pages` pages, with namespace kNs of
  // one-page blocks, evicting by `policy` (null: the tier's default, LRU).
  // `on_reclaim_copy` as DramTierOptions's.
  void Make(uint64_t capacity_pages, uint64_t slab_pages,
            std::unique_ptr<EvictionPolicy> policy = nullptr,
            std::function<void()> on_reclaim_copy = nullptr) {
    DramTierOptions options;
    options.capacity_bytes = capacity_pages * kPage;
    options.slab_bytes = slab_pages * kPage;
    options.lease_timeout_ns = kTimeout;
    options.preallocate = false;
    options.on_reclaim_copy = std::move(on_reclaim_copy);
    auto tier = DramTier::Create(options, &clock_, std::move(policy));
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
    ASSERT_THAT(g.codes, ::testing::Each(Code::kOk));
    size_t k = 0;
    for (uint64_t id : ids) Write(id, g.slots[k++]);
    auto codes = tier_->CommitPut(kAlice, g.lease_id);
    ASSERT_TRUE(codes.ok()) << codes.status();
    ASSERT_THAT(*codes, ::testing::Each(Code::kOk));
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
    uint64_t slot_bytes = 0;
    for (const NamespaceSnapshot& ns : s.namespaces) {
      blocks += ns.blocks;
      slot_bytes += ns.slot_bytes;
      EXPECT_LE(ns.used_bytes, ns.slot_bytes);  // stored lengths fit their slots
      EXPECT_LE(ns.used_bytes, s.used_bytes);
      EXPECT_LE(ns.counters.lookup_hit_keys, ns.counters.lookup_keys);
    }
    EXPECT_EQ(blocks, s.blocks);
    EXPECT_LE(slot_bytes, s.used_bytes);  // the tier's slots include those being written
  }

  ::kvtier::testing::ManualClock clock_;
  std::unique_ptr<DramTier> tier_;
};

}  // namespace kvtier::tiers
