// What the NVMe tier's region bookkeeping (RegionLog) costs the writer, at 1K and 64K regions
// (16 MiB regions: 16 GiB and 1 TiB of flash):
//   BM_OpenRegion   one region opened in a full tier whose commit thread reclaims ahead, as
//                   tier_write_stage.cc and tier_reclaim.cc ask: NextToOpen and Quiet
//                   (OpenQuietRegion), Open, the previous region's records committed, then
//                   ReclaimAhead's test (pending_regions, quiet_regions) and, every few opens,
//                   its batch of the oldest regions, marked, emptied and reclaimed
//   BM_Commit       one record placed and committed (PlaceBlocks, CommitGroup, CommitLoop):
//                   AddPending, RemovePending, AddLive into the active region, and RemoveLive
//                   of the copy it replaces in an older region (given back after, so that the
//                   tier stays as it is; no region changes state)
// build/bin/bench_region_log; figures in docs/benchmarks.md, "Region bookkeeping per open".
#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "benchmark/benchmark.h"
#include "tiers/src/nvme/region_log.h"

namespace kvtier::tiers::nvme {
namespace {

constexpr uint64_t kRegionBytes = 16ull << 20;
constexpr uint64_t kRecordBytes = 256ull << 10;
constexpr uint32_t kBatch = 16;  // the tier's default: 256 MiB of 16 MiB regions

// A full tier: every region holds a region's worth of live records but the active one, whose
// records are still pending, and the last batch reclaimed ahead (clean, quiet).
struct FullTier {
  explicit FullTier(uint32_t regions) : log(regions, kRegionBytes) {
    for (uint32_t r = 0; r < regions; ++r) {
      log.Open(r, next_generation++);
      if (r + 1 < regions) log.AddLive(r, kRegionBytes, false);
    }
    log.AddPending(regions - 1);
    ReclaimBatch();
  }

  // ReclaimAhead's batch and the commit thread's job, one after the other.
  void ReclaimBatch() {
    const std::vector<uint32_t> batch = log.OldestRegions(kBatch);
    for (uint32_t r : batch) log.MarkReclaiming(r);
    for (uint32_t r : batch) {
      log.RemoveLive(r, log.live_bytes(r), false);
      log.Reclaim(r, next_generation++);
    }
  }

  RegionLog log;
  uint64_t next_generation = 1;
};

void BM_OpenRegion(benchmark::State& state) {
  FullTier tier(static_cast<uint32_t>(state.range(0)));
  RegionLog& log = tier.log;
  for (auto _ : state) {
    const std::optional<uint32_t> target = log.NextToOpen();
    if (!target || !log.Quiet(*target)) {
      state.SkipWithError("no quiet region to open");
      break;
    }
    const uint32_t previous = *log.active();
    log.Open(*target, tier.next_generation++);
    log.AddPending(*target);
    log.RemovePending(previous);
    log.AddLive(previous, kRegionBytes, false);
    const uint32_t runway = std::min(kBatch, kBatch / 2 + log.pending_regions());
    if (log.quiet_regions() <= runway) tier.ReclaimBatch();
  }
}
BENCHMARK(BM_OpenRegion)->Arg(1 << 10)->Arg(1 << 16)->Unit(benchmark::kMicrosecond);

void BM_Commit(benchmark::State& state) {
  const uint32_t regions = static_cast<uint32_t>(state.range(0));
  FullTier tier(regions);
  RegionLog& log = tier.log;
  const uint32_t active = *log.active();
  uint32_t replaced = 0;
  for (auto _ : state) {
    log.AddPending(active);
    log.RemovePending(active);
    log.AddLive(active, kRecordBytes, false);
    replaced = replaced + 1 == regions ? 0 : replaced + 1;
    if (log.live_bytes(replaced) >= kRecordBytes) {
      log.RemoveLive(replaced, kRecordBytes, false);
      log.AddLive(replaced, kRecordBytes, false);
    }
    log.RemoveLive(active, kRecordBytes, false);
  }
}
BENCHMARK(BM_Commit)->Arg(1 << 10)->Arg(1 << 16);

}  // namespace
}  // namespace kvtier::tiers::nvme

BENCHMARK_MAIN();
