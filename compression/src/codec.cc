#include "kvtier/compression/codec.h"

namespace kvtier {

std::string_view CodecName(CodecId id) {
  switch (id) {
    case CodecId::kStored:
      return "stored";
    case CodecId::kKvz:
      return "kvz";
  }
  return "unknown";
}

bool IsKnownCodec(CodecId id) { return CodecName(id) != "unknown"; }

}  // namespace kvtier
