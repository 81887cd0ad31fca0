// kvtier-bench replay: the trace replay of docs/policy.md behind kvtier-bench's common flags.
// The replay itself lives in bench/replay (kvtier_replay); this is only its command line.
// The online form (replay --online, against a running kvtierd) is online_replay.cc.
#include <cstdio>
#include <string>

#include "kvtier/replay/replay.h"
#include "kvtier/replay/trace.h"
#include "modes.h"

namespace kvtier::bench {

absl::StatusOr<replay::Trace> LoadReplayTrace(const ReplayModeOptions& options) {
  absl::StatusOr<replay::Trace> trace = replay::LoadMooncakeTrace(options.trace);
  if (trace.ok() && options.max_requests > 0 && trace->requests.size() > options.max_requests) {
    trace->requests.resize(options.max_requests);
  }
  return trace;
}

int RunReplay(const CommonOptions& common, const ReplayModeOptions& options) {
  absl::StatusOr<replay::Trace> trace = LoadReplayTrace(options);
  if (!trace.ok()) {
    std::fprintf(stderr, "kvtier-bench replay: %s\n", trace.status().ToString().c_str());
    return 1;
  }
  replay::ReplayOptions replay_options{.capacity_blocks = options.capacity_blocks,
                                       .hint_lookahead = options.hint_lookahead,
                                       .hint_pins = options.hint_pins};
  if (options.belady) {
    replay_options.policy = std::string(replay::kBeladyName);
  } else if (!options.policy.empty()) {
    replay_options.policy = options.policy;
  }
  absl::StatusOr<replay::ReplayResult> r = replay::Replay(*trace, replay_options);
  if (!r.ok()) {
    std::fprintf(stderr, "kvtier-bench replay: %s\n", r.status().ToString().c_str());
    return absl::IsInvalidArgument(r.status()) ? 2 : 1;
  }
  if (common.json) {
    std::printf("%s\n", replay::ReplayResultJson(*r).c_str());
  } else {
    std::printf("%s at %llu blocks: hit rate %.2f %% (%llu of %llu blocks, %llu requests)\n",
                r->policy.c_str(), static_cast<unsigned long long>(r->capacity_blocks),
                100 * r->hit_rate(), static_cast<unsigned long long>(r->hit_blocks),
                static_cast<unsigned long long>(r->total_blocks),
                static_cast<unsigned long long>(r->requests));
  }
  return 0;
}

}  // namespace kvtier::bench
