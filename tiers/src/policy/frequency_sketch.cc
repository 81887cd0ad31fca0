#include "tiers/src/policy/frequency_sketch.h"

#include <algorithm>
#include <bit>

#include "tiers/src/policy/hash_mix.h"

namespace kvtier::tiers::policy {

FrequencySketch::FrequencySketch(uint64_t capacity)
    : width_(std::bit_ceil(std::max<uint64_t>(capacity, 16))),
      table_(kRows * width_ / 16, 0),
      reset_after_(10 * width_) {}

void FrequencySketch::Locate(uint64_t hash, int row, uint64_t* word, int* shift) const {
  // Each row re-mixes the hash with its own offset, so the four rows index independently.
  const uint64_t h = Mix64(hash + static_cast<uint64_t>(row) * 0x9e3779b97f4a7c15ULL);
  const uint64_t index = h & (width_ - 1);
  *word = static_cast<uint64_t>(row) * (width_ / 16) + index / 16;
  *shift = static_cast<int>(index % 16) * 4;
}

void FrequencySketch::Increment(uint64_t fingerprint) {
  const uint64_t hash = Mix64(fingerprint);
  for (int row = 0; row < kRows; ++row) {
    uint64_t word;
    int shift;
    Locate(hash, row, &word, &shift);
    if (((table_[word] >> shift) & 0xf) != 0xf) table_[word] += uint64_t{1} << shift;
  }
  if (++increments_ >= reset_after_) Halve();
}

uint32_t FrequencySketch::Estimate(uint64_t fingerprint) const {
  const uint64_t hash = Mix64(fingerprint);
  uint32_t estimate = 15;
  for (int row = 0; row < kRows; ++row) {
    uint64_t word;
    int shift;
    Locate(hash, row, &word, &shift);
    estimate = std::min(estimate, static_cast<uint32_t>((table_[word] >> shift) & 0xf));
  }
  return estimate;
}

void FrequencySketch::Halve() {
  for (uint64_t& w : table_) w = (w >> 1) & 0x7777777777777777ULL;
  increments_ /= 2;
}

}  // namespace kvtier::tiers::policy
