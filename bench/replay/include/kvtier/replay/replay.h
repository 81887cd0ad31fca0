// Offline replay of a request trace through the tiers' eviction policies: how many prompt
// blocks a cache of a given size would have served, with no daemon, no I/O and no clock.
//
// The model (the semantics of ../shared/traces/README.md, and of issue 5):
//   for each request, in trace order:
//     1. it hits the longest run of its leading blocks that is cached (h blocks);
//     2. those h blocks are used, deepest first (so the root of the prefix is the most
//        recently used of them);
//     3. its remaining blocks are offered in order: a cached one is used, a missing one is
//        inserted, after the policy has given up a victim if the cache is full.
//   hit rate = sum of h / sum of request lengths.
// With LRU this reproduces the README's figures exactly (2,000 / 5,859 / 10,000 / 20,000
// blocks: 14.4 / 30.9 / 42.4 / 57.2 %); other touch orders do not (docs/policy.md).
//
// Blocks are one size class; a trace id becomes the fingerprint id + 1 and the block before it
// in the request its parent (BlockInfo), so history- and prefix-aware policies see what a tier
// would tell them.
//
// Hints (hint_lookahead = Q > 0) model a scheduler that queues requests Q ahead of running
// them and sends each one's keys as a prefetch hint when it queues it: before request t runs,
// the cached blocks of request t + Q are used (OnAccess, in key order), which is what kvtierd
// does with a prefetch hint for blocks in DRAM (DramTier::Touch). Hints are not hits and
// insert nothing. Q = 0: no hints, the model above.
//
// Belady's MIN is the bound: on each insert beyond capacity it drops the cached block (the new
// one included) whose next use is the furthest request away.
//
// Thread-safe: functions only; each call owns its cache.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/replay/trace.h"
#include "kvtier/tiers/policies.h"

namespace kvtier::replay {

inline constexpr std::string_view kBeladyName = "belady";

struct ReplayOptions {
  // Blocks the cache holds. Required: at least 1.
  uint64_t capacity_blocks = 0;
  // A name from ReplayPolicyNames(): a tier policy (kvtier/tiers/policies.h) or "belady".
  // Default: the tiers' default policy.
  std::string policy = std::string(tiers::kDefaultPolicyName);
  // Requests a scheduler queues ahead and hints (see above); 0: none. Belady ignores it.
  uint64_t hint_lookahead = 0;
  // With hints: a hinted block is also pinned (never a victim) until its request has run, as an
  // engine using Client::Pin would keep it.
  bool hint_pins = false;

  absl::Status Validate() const;
};

struct ReplayResult {
  std::string policy;
  uint64_t capacity_blocks = 0;
  uint64_t hint_lookahead = 0;
  uint64_t hinted_blocks = 0;  // cached blocks the hints used
  uint64_t requests = 0;
  uint64_t total_blocks = 0;  // sum of request lengths
  uint64_t hit_blocks = 0;    // sum of hit prefix lengths
  uint64_t inserts = 0;
  uint64_t evictions = 0;
  double seconds = 0;  // wall time of the replay itself (the trace already parsed)

  double hit_rate() const {
    return total_blocks == 0 ? 0.0 : static_cast<double>(hit_blocks) / total_blocks;
  }
};

// The tier policies' names, then "belady".
std::vector<std::string> ReplayPolicyNames();

// Replays `trace` through a fresh instance of options.policy. InvalidArgument for bad options
// or an unknown policy; Internal if the policy finds no victim in a full cache (every policy
// must, since the replay pins nothing).
absl::StatusOr<ReplayResult> Replay(const Trace& trace, const ReplayOptions& options);

// Belady's MIN at `capacity_blocks` (>= 1, else InvalidArgument).
absl::StatusOr<ReplayResult> ReplayBelady(const Trace& trace, uint64_t capacity_blocks);

// One JSON object: policy, capacity_blocks, requests, total_blocks, hit_blocks, hit_rate,
// inserts, evictions, seconds; and hint_lookahead, hinted_blocks when hints were on.
std::string ReplayResultJson(const ReplayResult& result);

}  // namespace kvtier::replay
