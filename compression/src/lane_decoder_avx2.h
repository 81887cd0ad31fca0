// Internal: a Huffman chunk's 32 lanes decoded eight at a time with AVX2 gathers. The lanes of
// format v1 are independent streams whose k-th symbols are the 32 consecutive elements
// 32k..32k+31, so one step of all lanes yields a whole row of output: a vector of symbols that
// is joined with the raw plane and stored without any shuffling between lanes. This is the CPU
// decoder's fast path on x86-64 CPUs with AVX2; the scalar lane decoder in chunk_decoder.cc is
// the reference and the path everywhere else.
#pragma once

#include <cstdint>

namespace kvtier::kvz {

// Decodes steps [0, steps) of all 32 lanes: step k's symbol of lane l is element 32k + l.
// REQUIRES: CpuHasAvx2() (cpu_features.h); `steps` even and no more than any lane's symbol count.
// - bits[l]: lane l's position in bits from `lanes`; in: its first code, out: after the last
//   code decoded. Reads the 4-byte words (from `lanes`) p / 32 to p / 32 + 2 for a lane at bit
//   p, and a lane advances at most 22 bits per two steps, so a damaged lane reads at most
//   11 bits per step plus 12 bytes past its start, within the scalar reader's bound.
// - table[w]: for every 11-bit window w (first bit lowest), symbol | code length << 8.
// - element_bytes 2: each symbol is joined with raw[i] (Join16) into 2-byte element i of `out`;
//   element_bytes 1: the symbols are the elements (`raw` unused).
void DecodeLanesAvx2(const uint8_t* lanes, uint32_t* bits, uint32_t steps, const uint32_t* table,
                     const uint8_t* raw, int element_bytes, uint8_t* out);

}  // namespace kvtier::kvz
