// Startup mode: fills the tier with `blocks` blocks (once), then measures how long reopening
// takes and how much DRAM the open tier holds per block.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench.h"
#include "kvtier/common/status_macros.h"

namespace kvtier::bench::nvme {
namespace {

uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

absl::StatusOr<nlohmann::json> RunStartup(const Config& c) {
  tiers::UnixClock clock;
  double fill_seconds = 0;
  {
    KVTIER_ASSIGN_OR_RETURN(auto tier, OpenBenchTier(c, &clock));
    const uint64_t have = tier->Snapshot().tier.blocks;
    constexpr uint64_t kBatch = 512;
    std::vector<std::vector<std::byte>> payloads(kBatch, std::vector<std::byte>(c.block_bytes));
    std::vector<std::span<const std::byte>> blocks(payloads.begin(), payloads.end());
    std::vector<BlockKey> keys(kBatch);
    tiers::NvmeWriteOptions options;
    options.source = tiers::NvmeWriteOptions::Source::kWriteThrough;
    const auto start = std::chrono::steady_clock::now();
    for (uint64_t next = have; next < c.blocks;) {
      const uint64_t n = std::min(kBatch, c.blocks - next);
      for (uint64_t q = 0; q < n; ++q) {
        keys[q] = BenchKey(next + q);
        FillPayload(next + q, payloads[q]);
      }
      for (const absl::Status& s : tier->Write(1, {keys.data(), n}, {blocks.data(), n}, options)) {
        if (!s.ok()) return absl::Status(s.code(), absl::StrCat("fill: ", s.message()));
      }
      next += n;
    }
    fill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  nlohmann::json opens = nlohmann::json::array();
  std::vector<double> ms;
  for (int i = 0; i < 3; ++i) {
    const uint64_t rss_before = ResidentBytes();
    const auto start = std::chrono::steady_clock::now();
    KVTIER_ASSIGN_OR_RETURN(auto tier, OpenBenchTier(c, &clock));
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
    const uint64_t rss_after = ResidentBytes();
    const tiers::NvmeTierSnapshot s = tier->Snapshot();
    const double blocks = static_cast<double>(std::max<uint64_t>(1, s.tier.blocks));
    opens.push_back(
        {{"startup_ms", ms.back()},
         {"blocks", s.tier.blocks},
         {"dram_index_bytes", s.dram_index_bytes},
         {"dram_index_bytes_per_block", s.dram_index_bytes / blocks},
         {"rocksdb_memory_bytes", s.rocksdb_memory_bytes},
         {"rss_growth_bytes", rss_after - std::min(rss_after, rss_before)},
         {"rss_growth_per_block", (rss_after - std::min(rss_after, rss_before)) / blocks}});
  }
  std::sort(ms.begin(), ms.end());
  return nlohmann::json{{"mode", "startup"},
                        {"block_bytes", c.block_bytes},
                        {"fill_seconds", fill_seconds},
                        {"startup_ms_median", ms[1]},
                        {"opens", opens}};
}

}  // namespace kvtier::bench::nvme
