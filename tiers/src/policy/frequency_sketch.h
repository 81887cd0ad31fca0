// FrequencySketch: how often each fingerprint was seen lately, approximately, in 4 bits per
// counter: the count-min sketch TinyLFU admits by. Four counters per key, one from each of four
// rows; the estimate is the smallest. Every 10 x width increments all counters are halved, so
// that the sketch follows a workload whose popular blocks change (TinyLFU's reset).
//
// Not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace kvtier::tiers::policy {

class FrequencySketch {
 public:
  // Sized for about `capacity` distinct hot keys (width: next power of two >= capacity).
  explicit FrequencySketch(uint64_t capacity);

  void Increment(uint64_t fingerprint);
  // An over-estimate of the recent count, capped at 15.
  uint32_t Estimate(uint64_t fingerprint) const;

 private:
  static constexpr int kRows = 4;

  // Counter `row` of a key: word index and the shift of its nibble in that word.
  void Locate(uint64_t hash, int row, uint64_t* word, int* shift) const;
  void Halve();

  uint64_t width_;               // counters per row, a power of two
  std::vector<uint64_t> table_;  // kRows rows of width_ 4-bit counters, 16 per word
  uint64_t increments_ = 0;
  uint64_t reset_after_;
};

}  // namespace kvtier::tiers::policy
