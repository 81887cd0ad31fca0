// Internal: the histogram of a chunk's coded plane with AVX-512 (BW and VL, on 256-bit
// registers) where the symbols crowd into 16 adjacent values, as bf16 exponents do (99.6% of a
// KV-like chunk's within one such window). Each of the 16 values has a register of 32 byte
// counters that a compare and a subtract advance per row of 32 symbols; symbols outside the
// window are counted one by one. The scalar count in chunk_encoder.cc (four partial tables,
// about a cycle per symbol: one store each) is the reference and the path for wide alphabets.
#pragma once

#include <cstdint>

namespace kvtier::kvz {

// Sets hist[0..255] to the counts of the n symbols at `sym` and returns true, or returns false
// without a result when the symbols do not crowd into 16 values (judged from the first 128).
// REQUIRES: CpuHasAvx512() (cpu_features.h).
bool CountNarrowAvx512(const uint8_t* sym, uint32_t n, uint32_t* hist);

}  // namespace kvtier::kvz
