// GhostFilter: remembers, approximately, the fingerprints of the last N blocks a policy let go,
// so that a block which comes back soon after its eviction can be told from a new one. It costs
// about 10 bits per remembered block, against 16 or more for an exact set.
//
// Two generations of a blocked Bloom filter (each 64-byte block holds all of a key's bits, so a
// lookup touches one cache line per generation): inserts go to the current generation; when it
// has taken N/2 fingerprints the older one is cleared and becomes the current one. A fingerprint
// is therefore remembered for between N/2 and N later inserts. False positives: about 1 %.
//
// Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace kvtier::tiers::policy {

class GhostFilter {
 public:
  // Remembers at least the last `capacity / 2` and at most the last `capacity` fingerprints.
  explicit GhostFilter(uint64_t capacity);

  void Insert(uint64_t fingerprint);
  bool Contains(uint64_t fingerprint) const;

 private:
  static constexpr int kWordsPerBlock = 8;  // 512 bits: one cache line
  using Block = std::array<uint64_t, kWordsPerBlock>;

  static bool Test(const std::vector<Block>& filter, uint64_t block, uint64_t hash);
  uint64_t BlockOf(uint64_t hash) const;

  uint64_t per_generation_;
  uint64_t inserted_ = 0;  // into current_
  std::vector<Block> current_;
  std::vector<Block> previous_;
};

}  // namespace kvtier::tiers::policy
