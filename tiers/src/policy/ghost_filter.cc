#include "tiers/src/policy/ghost_filter.h"

#include <algorithm>

#include "tiers/src/policy/hash_mix.h"

namespace kvtier::tiers::policy {
namespace {

// Six bits per key in a 512-bit block, at 10 bits of filter per key: about 1 % false positives.
constexpr int kBitsPerKey = 6;
constexpr uint64_t kFilterBitsPerKey = 10;

// The six bit positions of one key, each 9 bits of a second hash.
template <typename Fn>
void ForEachBit(uint64_t hash, Fn&& fn) {
  const uint64_t bits = Mix64(hash ^ 0x9e3779b97f4a7c15ULL);
  for (int i = 0; i < kBitsPerKey; ++i) {
    const uint32_t bit = static_cast<uint32_t>(bits >> (9 * i)) & 511u;
    fn(bit >> 6, uint64_t{1} << (bit & 63));
  }
}

}  // namespace

GhostFilter::GhostFilter(uint64_t capacity)
    : per_generation_(std::max<uint64_t>(capacity / 2, 1)),
      pairs_(std::max<uint64_t>(per_generation_ * kFilterBitsPerKey / 512, 1)) {}

uint64_t GhostFilter::PairOf(uint64_t hash) const {
  // Multiply-shift maps the hash onto [0, pairs) without a division.
  return static_cast<uint64_t>((static_cast<unsigned __int128>(hash) * pairs_.size()) >> 64);
}

void GhostFilter::Insert(uint64_t fingerprint) {
  if (inserted_ == per_generation_) {
    current_ ^= 1;
    for (Pair& p : pairs_) p[current_] = Block{};
    inserted_ = 0;
  }
  const uint64_t hash = Mix64(fingerprint);
  Block& block = pairs_[PairOf(hash)][current_];
  ForEachBit(hash, [&](uint32_t word, uint64_t mask) { block.words[word] |= mask; });
  ++inserted_;
}

bool GhostFilter::Test(const Block& block, uint64_t hash) {
  bool all = true;
  ForEachBit(hash, [&](uint32_t word, uint64_t mask) { all = all && (block.words[word] & mask); });
  return all;
}

void GhostFilter::Prefetch(uint64_t fingerprint) const {
  const Pair& p = pairs_[PairOf(Mix64(fingerprint))];
  __builtin_prefetch(&p[0], 1);  // written by Insert
  __builtin_prefetch(&p[1], 1);
}

bool GhostFilter::Contains(uint64_t fingerprint) const {
  const uint64_t hash = Mix64(fingerprint);
  const Pair& p = pairs_[PairOf(hash)];
  return Test(p[0], hash) || Test(p[1], hash);
}

}  // namespace kvtier::tiers::policy
