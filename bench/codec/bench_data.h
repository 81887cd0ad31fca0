// The datasets both codec benchmarks (CPU and GPU) measure, so that their numbers describe the
// same bytes: KV-like tensors from kvtier_compression_testing (docs/compression.md says what
// they model) and random bits as the incompressible case.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier::bench {

struct Dataset {
  std::string name;
  KvDtype dtype;
  std::vector<std::byte> bytes;
};

// The standard datasets, each about `target_bytes` long (whole KV blocks: layers x K/V x
// tokens x 8 heads x 128 dims).
std::vector<Dataset> StandardDatasets(size_t target_bytes);

// A dataset read from a raw file of `dtype_name` elements (as ParseKvDtype spells them), cut to
// at most `max_bytes` (a whole number of elements), named after the file. NotFound if the file
// cannot be read; InvalidArgument for an unknown dtype or an empty file.
absl::StatusOr<Dataset> FileDataset(const std::string& dtype_name, const std::string& path,
                                    size_t max_bytes);

// Order-0 bound on the ratio for the dtype's split (coded byte entropy-coded with a
// per-chunk ideal code, raw bytes kept), i.e. what a perfect entropy coder with per-chunk
// statistics and no overhead would reach.
double Order0Bound(const Dataset& d, int chunk_log2);

}  // namespace kvtier::bench
