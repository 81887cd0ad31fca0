// The 32-byte frame header as bytes (docs/format.md, "Header"), for the CPU (frame_header.cc)
// and the GPU encoder alike. The loads of the header check are a template parameter, as in
// xxh64.h.
#pragma once

#include <cstdint>

#include "format.h"
#include "xxh64.h"

namespace kvtier::kvz {

template <typename Loads>
KVTIER_HD void WriteHeaderBytes(uint8_t dtype, int chunk_log2, uint64_t element_count,
                                uint64_t frame_bytes, uint8_t* out) {
  // kMagic, spelled out: device code cannot index a host constexpr array.
  out[0] = 0x89;
  out[1] = 'K';
  out[2] = 'V';
  out[3] = 'Z';
  out[4] = kVersion;
  out[5] = dtype;
  out[6] = static_cast<uint8_t>(chunk_log2);
  out[7] = kLanesLog2;
  StoreLe64(out + 8, element_count);
  StoreLe64(out + 16, frame_bytes);
  StoreLe32(out + 24, 0);
  StoreLe32(out + 28, static_cast<uint32_t>(Xxh64With<Loads>(out, 28, 0)));
}

}  // namespace kvtier::kvz
