// Request traces in the Mooncake format (../shared/traces/README.md): one JSON object per line,
//   {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, ...]}
// where hash_ids name a request's prompt blocks in order (512 tokens each in the Mooncake
// traces) and equal ids mean the same prefix block, so each id's position fixes its prefix.
//
// Thread-safe: functions only; a Trace is a plain value.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier::replay {

struct TraceRequest {
  int64_t timestamp_ms = 0;        // arrival, from the trace's start
  uint64_t input_length = 0;       // prompt tokens
  uint64_t output_length = 0;      // generated tokens
  std::vector<uint64_t> hash_ids;  // the prompt's blocks, first to last
};

struct Trace {
  std::vector<TraceRequest> requests;

  // Sum of all requests' block counts: the denominator of a hit rate.
  uint64_t TotalBlocks() const;
};

// Parses JSONL text. Blank lines are skipped; hash_ids is required, the other fields default
// to 0. InvalidArgument (with the line number) on malformed JSON, a missing or non-array
// hash_ids, or an id that is not a non-negative integer.
absl::StatusOr<Trace> ParseMooncakeTrace(std::string_view jsonl);

// Reads and parses a file. NotFound when it cannot be opened; otherwise as ParseMooncakeTrace.
absl::StatusOr<Trace> LoadMooncakeTrace(std::string_view path);

}  // namespace kvtier::replay
