// Internal: the 32 slice digests of a full chunk's check (docs/format.md, "Checksums") with
// AVX-512's 64-bit multiply (vpmullq) on 256-bit registers. XXH64 runs four 64-bit accumulators
// over each 32-byte stripe, so a register holds one slice's four without any shuffling, and 16
// slices at a time are 16 independent chains that hide the multiply's latency. 512-bit
// registers were faster alone (41 against 29 GB/s on the build machine) but slower inside the
// decoder (3.27 against 3.53 GB/s of bf16): they lower the core's clock for the code around
// them. The scalar Xxh64 (xxh64.h) is the reference and the path for partial chunks and
// other CPUs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvtier::kvz {

// digests[l] = XXH64(data + l * slice_bytes, slice_bytes, seed 0) for l = 0..31.
// REQUIRES: CpuHasAvx512() (cpu_features.h); slice_bytes a positive multiple of 32.
void SliceDigestsAvx512(const uint8_t* data, size_t slice_bytes, uint64_t* digests);

}  // namespace kvtier::kvz
