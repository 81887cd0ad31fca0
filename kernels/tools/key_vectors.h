// JSON form of key test cases (kernels/testdata/key_vectors.json, tools/keys_reference.py):
// shared by kernels_block_hash_test and the kvtier-keys tool so that both read descriptors and
// tokens exactly as the Python reference writes them. Not linked into the daemon or client.
//
// A case is {"name", "descriptor": {model_id, dtype, kv_layout (UTF-8 strings), block_tokens,
// tp_rank, tp_size, pp_rank, pp_size, block_bytes (unsigned integers), tenant_salt_hex},
// "tokens": [u32...]} plus, once computed, "canonical_encoding_hex", "seed" and "keys" (hex).
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kvtier/common/namespace_descriptor.h"
#include "nlohmann/json.hpp"

namespace kvtier {

// InvalidArgument naming the field when a field is missing, has the wrong type or is out of
// range (integers beyond u32/u64, odd-length or non-hex salt).
absl::StatusOr<NamespaceDescriptor> DescriptorFromJson(const nlohmann::json& j);

// InvalidArgument unless `j` is an array of integers in [0, 2^32).
absl::StatusOr<std::vector<uint32_t>> TokensFromJson(const nlohmann::json& j);

// Returns a copy of case `c` with canonical_encoding_hex, seed and keys computed by the C++
// implementation (kvtier/kernels/block_hash.h). Errors as for the two parsers above.
absl::StatusOr<nlohmann::json> ComputeKeyCase(const nlohmann::json& c);

}  // namespace kvtier
