// The bench's modes. Each returns the process exit code: 0 on success, 1 when the target could
// not be used (unreachable, refused), 3 when verification found wrong bytes. Results go to
// stdout (a short report, or one JSON object with --json); progress and errors to stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kvtier/client/client.h"
#include "kvtier/replay/trace.h"

namespace kvtier::bench {

struct CommonOptions {
  std::string uri;         // kvtier: unix path or tcp://host:port; baselines: tcp://host:port
  std::string auth_token;  // kvtier only
  bool json = false;
  bool progress = true;
  int64_t busy_poll_us = -1;  // ClientOptions::busy_poll for kvtier clients (-1: auto)
};

// The kvtier client options every mode connects with: busy polling, name and token from the
// common flags.
inline client::ClientOptions BenchClientOptions(const CommonOptions& common) {
  client::ClientOptions options;
  options.busy_poll = std::chrono::microseconds(common.busy_poll_us);
  options.client_name = "kvtier-bench";
  options.auth_token = common.auth_token;
  return options;
}

struct PutGetOptions {
  uint64_t blocks = 1024;
  uint64_t block_bytes = 64 << 10;
  uint64_t seed = 1;
  uint32_t batch = 64;  // blocks per request
  bool verify = false;
};

struct LookupOptions {
  int clients = 1;
  uint32_t keys = 64;
  double seconds = 5;
  uint64_t block_bytes = 4096;
  uint64_t seed = 1;
  bool no_mailbox = false;  // lookups over the socket even where a mailbox is offered
};

struct ThroughputOptions {
  std::string backend = "kvtier";  // kvtier | redis | memcached
  int clients = 1;
  uint64_t block_bytes = 256 << 10;
  uint32_t blocks_per_batch = 16;
  double seconds = 5;
  std::string op = "both";                    // put | get | both
  uint64_t working_set_bytes = 512ull << 20;  // blocks cycled by the get phase, all clients
  uint64_t seed = 1;
};

struct KeyOpsOptions {
  uint32_t batch = 1024;        // keys per request
  uint32_t batches = 4;         // requests of each call per round
  uint32_t rounds = 50;         // timed rounds (after one warm-up round)
  uint64_t block_bytes = 4096;  // namespace block size (slots are reserved, never written)
  uint64_t resident = 0;        // blocks stored first and kept, to size the index and policy
  uint64_t seed = 1;
  // Put as a GPU client puts compressed blocks: a COMPRESSION_KVZ namespace, each block a kvz
  // frame of frame_min_percent..frame_max_percent of block_bytes (its codec and raw length
  // sent with it).
  bool encoded = false;
  uint32_t frame_min_percent = 65;
  uint32_t frame_max_percent = 80;
};

// Writes blocks 0..n-1 of the seed's chained sequence; with verify, reads them back.
int RunPutGet(const CommonOptions& common, const PutGetOptions& options);
// Reads blocks 0..n-1 of the seed's sequence and compares them with what putget wrote.
// JSON: exactly {"hits", "misses", "mismatches"}. Exit 3 when mismatches > 0.
int RunVerify(const CommonOptions& common, const PutGetOptions& options);
// Latency of Lookup round trips over a cached 64-key prefix, C clients in parallel.
int RunLookup(const CommonOptions& common, const LookupOptions& options);
// Time per key of ReservePut, CommitPut, StartGet, FinishGet and Remove (batches of fresh keys,
// no bytes copied), medians of rounds. JSON: {"ns_per_key": {"reserve_put", ..., "total"}}.
int RunKeyOps(const CommonOptions& common, const KeyOpsOptions& options);
// Put and/or get bandwidth of a backend, and the ratio to a plain memcpy of the same bytes.
int RunThroughput(const CommonOptions& common, const ThroughputOptions& options);

struct ReplayModeOptions {
  std::string trace;          // Mooncake-format JSONL
  uint64_t max_requests = 0;  // replay only the trace's first N requests; 0: all
  // Offline only.
  uint64_t capacity_blocks = 0;  // required offline
  std::string policy;            // empty: the tiers' default policy
  bool belady = false;           // replay the offline optimum instead of a policy
  // Scheduler hints this many requests ahead (replay.h; online: a Prefetch of the request's
  // keys, which the daemon counts as a use of those in DRAM); 0: none.
  uint64_t hint_lookahead = 0;
  bool hint_pins = false;  // offline: hinted blocks pinned until their request runs
  // Online only.
  bool online = false;          // drive the daemon at CommonOptions::uri instead
  double time_scale = 20;       // trace time / this = wall time; 0: no waiting
  uint64_t block_bytes = 4096;  // namespace block size (capacity in blocks: bench/README.md)
  // Empty: blocks of random bytes in a plain namespace. A dtype (bf16, fp16): KV-like blocks
  // (kv_trace_content.h) in a COMPRESSION_KVZ namespace of that dtype, put CPU-encoded and got
  // decoded, so the daemon's DRAM holds them at their compressed size.
  std::string compress;
};

// Loads options.trace, cut to its first options.max_requests requests (when > 0).
absl::StatusOr<replay::Trace> LoadReplayTrace(const ReplayModeOptions& options);

// Replays a trace offline through the daemon's real policy code (docs/policy.md); no daemon
// is involved. JSON: ReplayResultJson, whose `hit_rate` is hit blocks / all blocks.
int RunReplay(const CommonOptions& common, const ReplayModeOptions& options);

// Replays a trace against the running kvtierd, following the trace's timestamps divided by
// time_scale, in a fresh namespace: per request, Lookup the keys, Get the hit prefix and check
// its bytes, Put the rest. The hit rate comes from the daemon's own counters (and, for
// comparison, from what the client saw). Exit 3 when a block came back with wrong bytes.
int RunOnlineReplay(const CommonOptions& common, const ReplayModeOptions& options);

}  // namespace kvtier::bench
