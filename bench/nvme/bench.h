// kvtier-nvme-bench: throughput, latency and startup time of the NVMe tier on a real file,
// measured the way fio measures the same file (same block size, same queue depth), so that
// compare_fio.sh can put the two side by side.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvtier/common/block_key.h"
#include "kvtier/tiers/nvme_tier.h"
#include "nlohmann/json.hpp"

namespace kvtier::bench::nvme {

struct Config {
  std::string file;                      // the tier's file; the index goes to file + ".index"
  uint64_t capacity_bytes = 8ull << 30;  // of a new file
  uint64_t region_bytes = 64ull << 20;
  uint32_t reclaim_batch = 0;  // NvmeTierOptions::reclaim_batch_regions (0: the tier's default)
  uint64_t quota_bytes = 0;    // write mode: the namespace's NVMe quota (0: none)
  uint64_t block_bytes = 256ull << 10;
  uint32_t queue_depth = 32;
  uint64_t write_bytes = 4ull << 30;  // write mode: payload bytes to write, timed
  uint64_t fill_bytes = 0;            // write mode: payload bytes written before, untimed
  uint32_t batch_blocks = 32;         // blocks per WriteAsync (write) / ReadBatch (read) call
  uint32_t window = 4;                // write mode: WriteAsync calls in flight
  double seconds = 10;                // read and latency modes
  uint32_t readers = 1;               // read mode: threads, each with qd / readers in flight
  uint64_t blocks = 1'000'000;        // startup mode
  std::string engine = "auto";        // auto, io_uring, thread_pool
  bool verify = true;                 // read modes check the bytes of every read
};

// Block i's key and bytes: deterministic, so a reader can check what a writer wrote. A payload
// is 0xa5 bytes with i stamped at the start of every 4 KiB; StampPayload rewrites only the
// stamps, so the write loop spends no time regenerating data.
BlockKey BenchKey(uint64_t i);
void FillPayload(uint64_t i, std::span<std::byte> out);
void StampPayload(uint64_t i, std::span<std::byte> out);
bool CheckPayload(uint64_t i, std::span<const std::byte> in);

// Memory aligned for direct I/O, freed on destruction.
struct AlignedArena {
  explicit AlignedArena(size_t bytes);
  ~AlignedArena();
  AlignedArena(const AlignedArena&) = delete;
  AlignedArena& operator=(const AlignedArena&) = delete;
  std::byte* data;
  size_t size;
};

// The ids of the blocks the tier holds (write mode writes ids 0, 1, ...; a full tier keeps the
// newest), found with Contains (no I/O). kFailedPrecondition when it holds none.
absl::StatusOr<std::vector<uint64_t>> PresentIds(const tiers::NvmeTier& tier);

absl::StatusOr<std::unique_ptr<tiers::NvmeTier>> OpenBenchTier(const Config& config,
                                                               const Clock* clock);

// Each mode returns one JSON object of results (MB/s in 10^6 bytes per second).
absl::StatusOr<nlohmann::json> RunWrite(const Config& config);
absl::StatusOr<nlohmann::json> RunRead(const Config& config);
absl::StatusOr<nlohmann::json> RunLatency(const Config& config);
absl::StatusOr<nlohmann::json> RunStartup(const Config& config);

}  // namespace kvtier::bench::nvme
