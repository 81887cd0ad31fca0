// GhostFilter: remembers, approximately, the fingerprints of the last N blocks a policy let go,
// so that a block which comes back soon after its eviction can be told from a new one. It costs
// about 10 bits per remembered block, against 16 or more for an exact set.
//
// Two generations of a blocked Bloom filter: each 64-byte block holds all of a key's bits, and
// a key's blocks in the two generations sit side by side, so a lookup reads two adjacent cache
// lines. Inserts go to the current generation; when it has taken N/2 fingerprints the older
// one is cleared and becomes the current one. A fingerprint is therefore remembered for between
// N/2 and N later inserts. False positives: about 2 % (1 % per generation).
//
// Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "kvtier/common/huge_page_allocator.h"

namespace kvtier::tiers::policy {

class GhostFilter {
 public:
  // Remembers at least the last `capacity / 2` and at most the last `capacity` fingerprints.
  explicit GhostFilter(uint64_t capacity);

  void Insert(uint64_t fingerprint);
  bool Contains(uint64_t fingerprint) const;
  // Starts loading the two cache lines that Insert or Contains of `fingerprint` will touch.
  void Prefetch(uint64_t fingerprint) const;

 private:
  static constexpr int kWordsPerBlock = 8;  // 512 bits: one cache line
  struct alignas(64) Block {
    std::array<uint64_t, kWordsPerBlock> words;
  };
  using Pair = std::array<Block, 2>;  // one block per generation

  static bool Test(const Block& block, uint64_t hash);
  uint64_t PairOf(uint64_t hash) const;

  uint64_t per_generation_;
  uint64_t inserted_ = 0;  // into generation current_
  int current_ = 0;
  // Huge pages: every Insert and Contains touches a random page of it.
  std::vector<Pair, HugePageAllocator<Pair>> pairs_;
};

}  // namespace kvtier::tiers::policy
