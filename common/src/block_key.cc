#include "kvtier/common/block_key.h"

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"

namespace kvtier {

absl::StatusOr<BlockKey> BlockKey::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("a block key is 64 hex digits, got ", hex.size(), " characters"));
  }
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat("block key has a non-hex character: '", AbslView(hex), "'"));
    }
  }
  const std::string raw = absl::HexStringToBytes(AbslView(hex));
  return FromBytes(raw.data());
}

std::string BlockKey::ToHex() const {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace kvtier
