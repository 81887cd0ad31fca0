// kvtier-replay: replays a Mooncake-format trace through the eviction policies offline and
// prints hit rates (docs/policy.md). kvtier-bench replay is the user-facing entry point; this
// is the library's own driver, for policy work.
//
//   kvtier-replay --trace FILE --capacity-blocks N[,N...] [--policy NAME[,NAME...]|all]
//                 [--belady] [--hint-lookahead Q[,Q...]] [--json]
//
// Text output: one line per run. --json: one JSON object per line (ReplayResultJson).
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "kvtier/replay/replay.h"
#include "kvtier/replay/trace.h"
#include "kvtier/tiers/policies.h"

int main(int argc, char** argv) {
  using kvtier::replay::ReplayOptions;
  using kvtier::replay::ReplayResult;

  CLI::App app{"Replay a Mooncake-format trace through kvtier's eviction policies"};
  std::string trace_path;
  std::vector<uint64_t> capacities;
  std::vector<std::string> policies = {std::string(kvtier::tiers::kDefaultPolicyName)};
  bool belady = false;
  bool json = false;
  app.add_option("--trace", trace_path, "JSONL trace (Mooncake format)")->required();
  app.add_option("--capacity-blocks", capacities, "cache size(s) in blocks")
      ->required()
      ->delimiter(',');
  app.add_option("--policy", policies, "policy name(s), or \"all\"")->delimiter(',');
  app.add_flag("--belady", belady, "also replay Belady's MIN (the offline optimum)");
  app.add_flag("--json", json, "one JSON object per line");
  std::vector<uint64_t> lookaheads = {0};
  bool hint_pins = false;
  app.add_flag("--hint-pins", hint_pins, "a hinted block is pinned until its request runs");
  app.add_option("--hint-lookahead", lookaheads,
                 "scheduler hints: each request's keys are hinted this many requests before it "
                 "runs (list; 0: none)")
      ->delimiter(',');
  CLI11_PARSE(app, argc, argv);

  if (policies.size() == 1 && policies[0] == "all") {
    policies.clear();
    for (std::string_view n : kvtier::tiers::PolicyNames()) policies.emplace_back(n);
  }
  if (belady) policies.emplace_back(kvtier::replay::kBeladyName);

  absl::StatusOr<kvtier::replay::Trace> trace = kvtier::replay::LoadMooncakeTrace(trace_path);
  if (!trace.ok()) {
    std::fprintf(stderr, "kvtier-replay: %s\n", trace.status().ToString().c_str());
    return 1;
  }
  for (uint64_t capacity : capacities) {
    for (const std::string& policy : policies) {
      for (uint64_t lookahead : lookaheads) {
        absl::StatusOr<ReplayResult> r =
            kvtier::replay::Replay(*trace, ReplayOptions{.capacity_blocks = capacity,
                                                         .policy = policy,
                                                         .hint_lookahead = lookahead,
                                                         .hint_pins = hint_pins});
        if (!r.ok()) {
          std::fprintf(stderr, "kvtier-replay: %s\n", r.status().ToString().c_str());
          return 1;
        }
        if (json) {
          std::printf("%s\n", kvtier::replay::ReplayResultJson(*r).c_str());
        } else {
          std::printf(
              "%-12s capacity %8llu  hints %5llu ahead  hit_rate %6.2f %%  (%llu of %llu blocks, "
              "%.2f s)\n",
              r->policy.c_str(), static_cast<unsigned long long>(capacity),
              static_cast<unsigned long long>(lookahead), 100 * r->hit_rate(),
              static_cast<unsigned long long>(r->hit_blocks),
              static_cast<unsigned long long>(r->total_blocks), r->seconds);
        }
      }
    }
  }
  return 0;
}
