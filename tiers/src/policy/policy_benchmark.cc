// Cost per operation of each eviction policy at 1M cached blocks (docs/policy.md):
//   BM_Access/<policy>   OnAccess of a random cached block (a lookup hit)
//   BM_Insert/<policy>   a full cache's insert: PickVictim + OnRemove + OnInsertBlock, the new
//                        blocks forming chains of kChain as requests' tails do (each block's
//                        parent hint is the block inserted before it)
// Uniformly random ids: the policy tables do not fit in cache, as in a daemon holding 1M
// blocks, so these are the pessimistic, memory-bound figures.
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kvtier/tiers/policies.h"

namespace kvtier::tiers {
namespace {

constexpr uint64_t kBlocks = 1 << 20;
constexpr uint32_t kChain = 32;  // blocks per prefix chain while filling

// A policy filled with kBlocks blocks in chains of kChain, fingerprints distinct.
std::unique_ptr<EvictionPolicy> Filled(std::string_view name) {
  auto p = *NewPolicy(name, {.capacity_blocks = kBlocks});
  for (EntryId id = 0; id < kBlocks; ++id) {
    BlockInfo info{.size_class = 0, .fingerprint = id + 1};
    if (id % kChain != 0) info.parent = id - 1;
    p->OnInsertBlock(id, info);
  }
  return p;
}

void BM_Access(benchmark::State& state, std::string_view name) {
  auto p = Filled(name);
  std::mt19937_64 rng(1);
  std::vector<EntryId> ids(1 << 16);
  for (EntryId& id : ids) id = rng() % kBlocks;
  size_t i = 0;
  for (auto _ : state) {
    p->OnAccess(ids[i++ & (ids.size() - 1)]);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Insert(benchmark::State& state, std::string_view name) {
  auto p = Filled(name);
  const auto any = [](EntryId) { return true; };
  uint64_t next_fp = kBlocks + 1;
  std::optional<EntryId> previous;
  for (auto _ : state) {
    const std::optional<EntryId> victim = p->PickVictim(0, any);
    p->OnRemove(*victim);
    BlockInfo info{.size_class = 0, .fingerprint = next_fp};
    if (next_fp % kChain != 0 && previous != victim) info.parent = previous;
    ++next_fp;
    p->OnInsertBlock(*victim, info);  // the freed entry id is reused, as DramTier does
    previous = *victim;
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace
}  // namespace kvtier::tiers

int main(int argc, char** argv) {
  for (std::string_view name : kvtier::tiers::PolicyNames()) {
    benchmark::RegisterBenchmark(("BM_Access/" + std::string(name)).c_str(),
                                 kvtier::tiers::BM_Access, name);
    benchmark::RegisterBenchmark(("BM_Insert/" + std::string(name)).c_str(),
                                 kvtier::tiers::BM_Insert, name);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
