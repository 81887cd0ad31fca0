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

GhostFilter::GhostFilter(uint64_t capacity) : per_generation_(std::max<uint64_t>(capacity / 2, 1)) {
  const uint64_t blocks = std::max<uint64_t>(per_generation_ * kFilterBitsPerKey / 512, 1);
  current_.assign(blocks, Block{});
  previous_.assign(blocks, Block{});
}

uint64_t GhostFilter::BlockOf(uint64_t hash) const {
  // Multiply-shift maps the hash onto [0, blocks) without a division.
  return static_cast<uint64_t>((static_cast<unsigned __int128>(hash) * current_.size()) >> 64);
}

void GhostFilter::Insert(uint64_t fingerprint) {
  if (inserted_ == per_generation_) {
    previous_.swap(current_);
    std::fill(current_.begin(), current_.end(), Block{});
    inserted_ = 0;
  }
  const uint64_t hash = Mix64(fingerprint);
  Block& block = current_[BlockOf(hash)];
  ForEachBit(hash, [&](uint32_t word, uint64_t mask) { block[word] |= mask; });
  ++inserted_;
}

bool GhostFilter::Test(const std::vector<Block>& filter, uint64_t block, uint64_t hash) {
  const Block& b = filter[block];
  bool all = true;
  ForEachBit(hash, [&](uint32_t word, uint64_t mask) { all = all && (b[word] & mask) != 0; });
  return all;
}

bool GhostFilter::Contains(uint64_t fingerprint) const {
  const uint64_t hash = Mix64(fingerprint);
  const uint64_t block = BlockOf(hash);
  return Test(current_, block, hash) || Test(previous_, block, hash);
}

}  // namespace kvtier::tiers::policy
