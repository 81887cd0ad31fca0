// Codec identifiers: the vocabulary that tiers, on-flash records and the wire protocol use to
// say how a block's bytes are encoded.
//
// A CodecId is stored in records and frames next to the encoded bytes, so its numeric values
// are part of kvtier's persistent format: a value, once assigned, never changes meaning and is
// never reused. docs/format.md specifies the bytes of each encoding; kv_codec.h (CPU) and
// gpu_codec.h (CUDA) read and write them.
//
// Thread safety: everything here is a constant or a pure function.
#pragma once

#include <cstdint>
#include <string_view>

namespace kvtier {

enum class CodecId : uint8_t {
  // The block's bytes as the engine wrote them, unencoded. Every reader understands it, and
  // every encoder falls back to it where compression does not pay.
  kStored = 0,
  // A kvz frame (docs/format.md): lossless, dtype-aware (exponent bytes Huffman-coded per
  // chunk, sign and mantissa raw). The frame carries its own version, dtype and layout.
  kKvz = 1,
};

// A stable lowercase name for logs, metrics labels and config ("stored", "kvz"). Returns "unknown"
// for a value this build does not know (e.g. a record written by a newer kvtier), so callers can
// log it before rejecting the block.
std::string_view CodecName(CodecId id);

// True if `id` names a codec this build can decode. Readers check this before trusting a
// CodecId read from disk or the wire, which may hold any byte value.
bool IsKnownCodec(CodecId id);

}  // namespace kvtier
