#include <array>
#include <string>

#include "absl/strings/str_cat.h"
#include "format.h"
#include "kvtier/common/strings.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier {
namespace {

constexpr std::array<std::string_view, kvz::kNumDtypes> kNames = {"raw", "bf16", "fp16", "fp8e4m3",
                                                                  "fp8e5m2"};

}  // namespace

std::string_view KvDtypeName(KvDtype dtype) {
  const auto v = static_cast<size_t>(dtype);
  return v < kNames.size() ? kNames[v] : "unknown";
}

absl::StatusOr<KvDtype> ParseKvDtype(std::string_view name) {
  for (size_t v = 0; v < kNames.size(); ++v) {
    if (kNames[v] == name) return static_cast<KvDtype>(v);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype \"", AbslView(name), "\"; use one of raw, bf16, fp16, fp8e4m3, fp8e5m2"));
}

size_t KvDtypeBytes(KvDtype dtype) {
  return static_cast<size_t>(kvz::ElementBytes(static_cast<uint8_t>(dtype)));
}

}  // namespace kvtier
