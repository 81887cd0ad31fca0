// Policies by name (kvtier/tiers/policies.h).
#include <array>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/tiers/policies.h"

namespace kvtier::tiers {
namespace {

constexpr std::array<std::string_view, 6> kNames = {
    kDefaultPolicyName, "lru", "s3fifo", "sieve", "arc", "tinylfu"};

}  // namespace

absl::Status PolicyOptions::Validate() const {
  if (capacity_blocks == 0) {
    return absl::InvalidArgumentError("policy capacity_blocks must be at least 1");
  }
  return absl::OkStatus();
}

std::span<const std::string_view> PolicyNames() { return kNames; }

absl::StatusOr<std::unique_ptr<EvictionPolicy>> NewPolicy(std::string_view name,
                                                          const PolicyOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (name == "prefix-slru") return NewPrefixSlruPolicy(options);
  if (name == "lru") return NewLruPolicy();
  if (name == "s3fifo") return NewS3FifoPolicy(options);
  if (name == "sieve") return NewSievePolicy();
  if (name == "arc") return NewArcPolicy();
  if (name == "tinylfu") return NewTinyLfuPolicy(options);
  std::string known;
  for (std::string_view n : kNames) absl::StrAppend(&known, known.empty() ? "" : ", ", AbslView(n));
  return absl::InvalidArgumentError(
      absl::StrCat("unknown eviction policy \"", AbslView(name), "\" (known: ", known, ")"));
}

}  // namespace kvtier::tiers
