// Cost per operation of each eviction policy at 1M cached blocks (docs/policy.md):
//   BM_Access/<policy>   OnAccess of a random cached block (a lookup hit)
//   BM_Insert/<policy>   a full cache's insert: PickVictim + OnRemove + OnInsertBlock, the new
//                        blocks forming chains of kChain as requests' tails do (each block's
//                        parent hint is the block inserted before it)
//   .../controlled       the same under ControlledPolicy (no limits set, blocks in a namespace
//                        group), as the DRAM tier runs every policy: the memory controls' cost
// Uniformly random ids: the policy tables do not fit in cache, as in a daemon holding 1M
// blocks, so these are the pessimistic, memory-bound figures.
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kvtier/common/clock.h"
#include "kvtier/tiers/memory_controls.h"
#include "kvtier/tiers/policies.h"

namespace kvtier::tiers {
namespace {

constexpr uint64_t kBlocks = 1 << 20;
constexpr uint32_t kChain = 32;  // blocks per prefix chain while filling

// The policy under test: the base policy, or the base under the memory controls.
struct Subject {
  // Declared first: the wrapped policy reads it until destroyed. Held by pointer so that
  // moving the Subject leaves it where the policy points.
  std::unique_ptr<SteadyClock> clock = std::make_unique<SteadyClock>();
  std::unique_ptr<EvictionPolicy> policy;
  ControlledPolicy* controlled = nullptr;  // set when wrapped

  void Insert(EntryId id, const BlockInfo& info) {
    if (controlled != nullptr) {
      controlled->OnInsertControlled(id, info, BlockControls{.group = 1});
    } else {
      policy->OnInsertBlock(id, info);
    }
  }
};

// A policy filled with kBlocks blocks in chains of kChain, fingerprints distinct.
Subject Filled(std::string_view name, bool controlled) {
  Subject s;
  s.policy = *NewPolicy(name, {.capacity_blocks = kBlocks});
  if (controlled) {
    auto c = *ControlledPolicy::Create(std::move(s.policy), {}, s.clock.get());
    s.controlled = c.get();
    s.policy = std::move(c);
  }
  for (EntryId id = 0; id < kBlocks; ++id) {
    BlockInfo info{.size_class = 0, .fingerprint = id + 1};
    if (id % kChain != 0) info.parent = id - 1;
    s.Insert(id, info);
  }
  return s;
}

void BM_Access(benchmark::State& state, std::string_view name, bool controlled) {
  Subject s = Filled(name, controlled);
  EvictionPolicy* p = s.policy.get();
  std::mt19937_64 rng(1);
  std::vector<EntryId> ids(1 << 16);
  for (EntryId& id : ids) id = rng() % kBlocks;
  size_t i = 0;
  for (auto _ : state) {
    p->OnAccess(ids[i++ & (ids.size() - 1)]);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Insert(benchmark::State& state, std::string_view name, bool controlled) {
  Subject s = Filled(name, controlled);
  EvictionPolicy* p = s.policy.get();
  const auto any = [](EntryId) { return true; };
  uint64_t next_fp = kBlocks + 1;
  std::optional<EntryId> previous;
  for (auto _ : state) {
    const std::optional<EntryId> victim = p->PickVictim(0, any);
    p->OnRemove(*victim);
    BlockInfo info{.size_class = 0, .fingerprint = next_fp};
    if (next_fp % kChain != 0 && previous != victim) info.parent = previous;
    ++next_fp;
    s.Insert(*victim, info);  // the freed entry id is reused, as DramTier does
    previous = *victim;
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace
}  // namespace kvtier::tiers

int main(int argc, char** argv) {
  for (std::string_view name : kvtier::tiers::PolicyNames()) {
    for (bool controlled : {false, true}) {
      const std::string suffix = std::string(name) + (controlled ? "/controlled" : "");
      benchmark::RegisterBenchmark(("BM_Access/" + suffix).c_str(), kvtier::tiers::BM_Access, name,
                                   controlled);
      benchmark::RegisterBenchmark(("BM_Insert/" + suffix).c_str(), kvtier::tiers::BM_Insert, name,
                                   controlled);
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
