#include "key_vectors.h"

#include <limits>
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "kvtier/kernels/block_hash.h"

namespace kvtier {
namespace {

using nlohmann::json;

absl::StatusOr<std::string> StringField(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("descriptor.", name, " must be a string"));
  }
  return it->get<std::string>();
}

absl::StatusOr<uint64_t> UnsignedField(const json& j, const char* name, uint64_t max) {
  const auto it = j.find(name);
  // nlohmann parses non-negative integers as number_unsigned; negatives and floats are rejected
  // here instead of being silently converted.
  if (it == j.end() || !it->is_number_unsigned() || it->get<uint64_t>() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("descriptor.", name, " must be an integer in [0, ", max, "]"));
  }
  return it->get<uint64_t>();
}

absl::StatusOr<uint32_t> U32Field(const json& j, const char* name) {
  KVTIER_ASSIGN_OR_RETURN(uint64_t v, UnsignedField(j, name, std::numeric_limits<uint32_t>::max()));
  return static_cast<uint32_t>(v);
}

absl::StatusOr<std::string> HexField(const json& j, const char* name) {
  KVTIER_ASSIGN_OR_RETURN(std::string hex, StringField(j, name));
  if (hex.size() % 2 != 0 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("descriptor.", name, " must be an even number of hex digits"));
  }
  return absl::HexStringToBytes(AbslView(hex));
}

}  // namespace

absl::StatusOr<NamespaceDescriptor> DescriptorFromJson(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("descriptor must be an object");
  NamespaceDescriptor d;
  KVTIER_ASSIGN_OR_RETURN(d.model_id, StringField(j, "model_id"));
  KVTIER_ASSIGN_OR_RETURN(d.dtype, StringField(j, "dtype"));
  KVTIER_ASSIGN_OR_RETURN(d.kv_layout, StringField(j, "kv_layout"));
  KVTIER_ASSIGN_OR_RETURN(d.block_tokens, U32Field(j, "block_tokens"));
  KVTIER_ASSIGN_OR_RETURN(d.tp_rank, U32Field(j, "tp_rank"));
  KVTIER_ASSIGN_OR_RETURN(d.tp_size, U32Field(j, "tp_size"));
  KVTIER_ASSIGN_OR_RETURN(d.pp_rank, U32Field(j, "pp_rank"));
  KVTIER_ASSIGN_OR_RETURN(d.pp_size, U32Field(j, "pp_size"));
  KVTIER_ASSIGN_OR_RETURN(d.tenant_salt, HexField(j, "tenant_salt_hex"));
  KVTIER_ASSIGN_OR_RETURN(d.block_bytes,
                          UnsignedField(j, "block_bytes", std::numeric_limits<uint64_t>::max()));
  return d;
}

absl::StatusOr<std::vector<uint32_t>> TokensFromJson(const json& j) {
  if (!j.is_array()) return absl::InvalidArgumentError("tokens must be an array");
  std::vector<uint32_t> tokens;
  tokens.reserve(j.size());
  for (const json& t : j) {
    if (!t.is_number_unsigned() || t.get<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens[", tokens.size(), "] must be an integer in [0, 2^32)"));
    }
    tokens.push_back(static_cast<uint32_t>(t.get<uint64_t>()));
  }
  return tokens;
}

absl::StatusOr<json> ComputeKeyCase(const json& c) {
  if (!c.is_object() || !c.contains("descriptor") || !c.contains("tokens")) {
    return absl::InvalidArgumentError("a case must be an object with descriptor and tokens");
  }
  KVTIER_ASSIGN_OR_RETURN(NamespaceDescriptor d, DescriptorFromJson(c["descriptor"]));
  KVTIER_ASSIGN_OR_RETURN(std::vector<uint32_t> tokens, TokensFromJson(c["tokens"]));
  json out = c;
  out["canonical_encoding_hex"] = absl::BytesToHexString(AbslView(CanonicalNamespaceEncoding(d)));
  const BlockKey seed = NamespaceSeed(d);
  out["seed"] = seed.ToHex();
  json keys = json::array();
  for (const BlockKey& k : HashPrefix(seed, tokens, d.block_tokens)) keys.push_back(k.ToHex());
  out["keys"] = std::move(keys);
  return out;
}

}  // namespace kvtier
