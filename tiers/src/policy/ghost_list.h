// GhostList: an exact, bounded FIFO set of fingerprints, for ARC's ghost lists, whose sizes
// steer its adaptation and so must be exact (GhostFilter is the approximate, smaller kind).
// O(1) amortised Push/Erase/Contains/PopOldest; about 40 bytes per remembered fingerprint.
//
// Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

#include "absl/container/flat_hash_map.h"

namespace kvtier::tiers::policy {

class GhostList {
 public:
  size_t size() const { return seq_of_.size(); }
  bool Contains(uint64_t fingerprint) const { return seq_of_.contains(fingerprint); }

  // Remembers `fingerprint` as the newest (moving it there if it was remembered already).
  void Push(uint64_t fingerprint);
  // Forgets `fingerprint`; false when it was not remembered.
  bool Erase(uint64_t fingerprint);
  // Forgets the oldest fingerprint. REQUIRES: size() > 0.
  void PopOldest();

 private:
  struct Slot {
    uint64_t fingerprint;
    uint64_t seq;
  };
  void Compact();

  // The FIFO keeps erased fingerprints until they reach its front (a slot is live when its seq
  // matches seq_of_); Compact drops them once they outnumber the live ones.
  std::deque<Slot> fifo_;
  absl::flat_hash_map<uint64_t, uint64_t> seq_of_;
  uint64_t next_seq_ = 0;
};

}  // namespace kvtier::tiers::policy
