// Several threads put, get, release and remove at random against one small tier, copying real
// bytes through arena_base() the way clients copy through their own mapping. The property
// under test is the tier's promise: a copy whose generation check passes holds exactly the
// bytes that were put under that key -- whatever evictions, removals and lease expiries
// happened meanwhile. One thread also moves the clock so that leases expire mid-copy.
//
// Writers keep the protocol's rule (docs/protocol.md 7.2): no writes into a granted slot more
// than lease_timeout after the grant. With a manual clock that jumps while a writer is
// descheduled, the test enforces the rule with a gate: the clock does not move between a
// reservation and the end of its writes. Readers are not gated, so their leases do expire
// mid-copy. Meanwhile a maintenance thread reclaims slabs ahead of need, as kvtierd's does.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kvtier/common/testing/manual_clock.h"
#include "kvtier/tiers/dram_tier.h"

namespace kvtier::tiers {
namespace {

constexpr uint32_t kPage = 4096;
constexpr int64_t kTimeout = 1'000'000;
constexpr uint64_t kKeySpace = 120;

BlockKey Key(uint64_t i) {
  BlockKey k;
  std::memcpy(k.bytes.data(), &i, sizeof(i));
  return k;
}

// The content of key `k` depends only on the key, so every put of it writes the same bytes
// whatever its length.
std::byte Pattern(uint64_t k, uint64_t i) { return std::byte((k * 2654435761u + i) >> 3); }

struct Namespace {
  NamespaceId id;
  uint64_t block_bytes;
};

struct ThreadResult {
  uint64_t asked = 0;     // keys passed to AcquireRead
  uint64_t verified = 0;  // copies whose generation matched (and whose bytes were checked)
  uint64_t voided = 0;    // copies whose generation moved
  uint64_t mismatches = 0;
};

void Worker(DramTier* tier, testing::ManualClock* clock, std::shared_mutex* clock_gate,
            const std::vector<Namespace>& spaces, uint64_t seed, bool moves_clock, int ops,
            ThreadResult* out) {
  std::mt19937_64 rng(seed);
  const OwnerId owner = seed;
  std::vector<BlockKey> keys;
  std::vector<uint64_t> ids, lengths;
  std::vector<std::byte> copy;
  for (int op = 0; op < ops; ++op) {
    const Namespace& ns = spaces[rng() % spaces.size()];
    keys.clear();
    ids.clear();
    for (uint64_t n = 1 + rng() % 8; n > 0; --n) {
      ids.push_back(rng() % kKeySpace);
      keys.push_back(Key(ids.back()));
    }
    const uint64_t dice = rng() % 100;
    if (dice < 40) {
      lengths.clear();
      for (size_t i = 0; i < keys.size(); ++i) lengths.push_back(1 + rng() % ns.block_bytes);
      LeaseGrant g;
      {
        std::shared_lock writing(*clock_gate);
        g = tier->ReservePut(owner, ns.id, keys, lengths);
        for (size_t i = 0; i < keys.size(); ++i) {
          if (g.codes[i] != absl::StatusCode::kOk) continue;
          std::byte* p = tier->arena_base() + g.slots[i].offset;
          for (uint64_t b = 0; b < g.slots[i].length; ++b) p[b] = Pattern(ids[i], b);
        }
      }
      if (g.lease_id == 0) continue;
      if (rng() % 10 == 0) {
        tier->Release(owner, g.lease_id).IgnoreError();  // abandoned put
      } else {
        auto codes = tier->CommitPut(owner, g.lease_id);
        EXPECT_TRUE(codes.ok() || absl::IsNotFound(codes.status())) << codes.status();
      }
    } else if (dice < 85) {
      LeaseGrant g = tier->AcquireRead(owner, ns.id, keys);
      out->asked += keys.size();
      for (size_t i = 0; i < keys.size(); ++i) {
        if (g.codes[i] != absl::StatusCode::kOk) continue;
        const SlotRef& s = g.slots[i];
        copy.resize(s.length);
        std::memcpy(copy.data(), tier->arena_base() + s.offset, s.length);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (tier->SlotGeneration(s.offset) != s.generation) {
          ++out->voided;
          continue;
        }
        ++out->verified;
        for (uint64_t b = 0; b < s.length; ++b) {
          if (copy[b] != Pattern(ids[i], b)) {
            ++out->mismatches;
            break;
          }
        }
      }
      if (g.lease_id != 0) tier->Release(owner, g.lease_id).IgnoreError();
    } else if (dice < 95) {
      tier->Remove(ns.id, keys);
    } else if (moves_clock) {
      {
        std::unique_lock moving(*clock_gate);
        clock->Advance(kTimeout / 2);
      }
      tier->ExpireLeases();
    } else {
      tier->LookupPrefix(ns.id, keys);
    }
  }
  tier->ReleaseOwner(owner);
}

TEST(DramTierStressTest, GenerationCheckedCopiesAreExact) {
  testing::ManualClock clock;
  DramTierOptions options;
  options.capacity_bytes = 96 * kPage;
  options.slab_bytes = 16 * kPage;
  options.lease_timeout_ns = kTimeout;
  options.preallocate = false;
  auto tier = DramTier::Create(options, &clock, nullptr);
  ASSERT_TRUE(tier.ok()) << tier.status();
  // Three size classes competing for six slabs, one of them bigger than a slab.
  const std::vector<Namespace> spaces = {{1, kPage}, {2, 3 * kPage - 7}, {3, 17 * kPage}};
  for (const Namespace& ns : spaces) ASSERT_TRUE((*tier)->AddNamespace(ns.id, ns.block_bytes).ok());

  constexpr int kThreads = 4;
  constexpr int kOps = 20000;
  std::vector<ThreadResult> results(kThreads);
  std::vector<std::thread> threads;
  std::shared_mutex clock_gate;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back(Worker, tier->get(), &clock, &clock_gate, std::cref(spaces), 1000 + t,
                         t == 0, kOps, &results[t]);
  }
  std::atomic<int> done{0};
  std::thread maintenance([&] {
    while (done.load() < kThreads) {
      if ((*tier)->ReclaimAhead() != DramTier::AheadResult::kReclaimed) std::this_thread::yield();
    }
  });
  for (std::thread& t : threads) {
    t.join();
    done.fetch_add(1);
  }
  maintenance.join();

  ThreadResult total;
  for (const ThreadResult& r : results) {
    total.asked += r.asked;
    total.verified += r.verified;
    total.voided += r.voided;
    total.mismatches += r.mismatches;
  }
  EXPECT_EQ(total.mismatches, 0u);
  EXPECT_GT(total.verified, 1000u);
  TierSnapshot s = (*tier)->Snapshot();
  EXPECT_EQ(s.counters.hits + s.counters.misses, total.asked);
  EXPECT_LE(s.used_bytes, s.capacity_bytes);
  EXPECT_EQ(s.leases_active, 0u);
  EXPECT_GT(s.counters.evictions, 0u);
  // Slabs changed classes under load, and blocks moved out of them while readers copied.
  EXPECT_GT(s.slab_reclaims, 0u);
  EXPECT_GT(s.blocks_moved, 0u);
  EXPECT_GT(s.slab_reclaims_ahead, 0u);
  uint64_t blocks = 0;
  for (const NamespaceSnapshot& ns : s.namespaces) blocks += ns.blocks;
  EXPECT_EQ(blocks, s.blocks);
  // Every owner is gone: only committed blocks hold slots, and removing them empties the tier.
  std::vector<BlockKey> all;
  for (uint64_t k = 0; k < kKeySpace; ++k) all.push_back(Key(k));
  for (const Namespace& ns : spaces) (*tier)->Remove(ns.id, all);
  EXPECT_EQ((*tier)->Snapshot().used_bytes, 0u);
  std::printf(
      "verified %llu copies, %llu voided by a generation change, %llu evictions, %llu slab "
      "reclaims (%llu ahead of need), %llu blocks moved\n",
      static_cast<unsigned long long>(total.verified),
      static_cast<unsigned long long>(total.voided),
      static_cast<unsigned long long>(s.counters.evictions),
      static_cast<unsigned long long>(s.slab_reclaims),
      static_cast<unsigned long long>(s.slab_reclaims_ahead),
      static_cast<unsigned long long>(s.blocks_moved));
}

}  // namespace
}  // namespace kvtier::tiers
