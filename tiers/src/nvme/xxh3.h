// XXH3-64, the checksum of the NVMe tier's records, dispatched at run time to an AVX2 build
// where the CPU has AVX2. kvtier is compiled for baseline x86-64, whose SSE2 XXH3 hashes a
// block fresh from DRAM at about half the speed of the AVX2 code (measured 3.0 against 7 GB/s
// on the development VM), and every block is hashed once on write and once on read. Both give
// identical results: XXH3's output does not depend on the instructions used.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvtier::tiers::nvme {

uint64_t Xxh3(const void* data, size_t length, uint64_t seed = 0);

// The portable build, for tests that compare it with the dispatched one.
uint64_t Xxh3Baseline(const void* data, size_t length, uint64_t seed);

}  // namespace kvtier::tiers::nvme
