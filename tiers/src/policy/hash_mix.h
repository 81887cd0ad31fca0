// Mix64: spreads the bits of a fingerprint before it indexes a filter or a sketch. Keys that
// are already hashes need no help, but a tier may pass small sequential numbers (trace replays
// do), and those must not land in neighbouring buckets.
#pragma once

#include <cstdint>

namespace kvtier::tiers::policy {

// The SplitMix64 finaliser: a bijection on 64 bits with full avalanche.
inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace kvtier::tiers::policy
