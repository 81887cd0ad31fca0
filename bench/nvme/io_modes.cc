// Write, read and latency modes. Each mirrors one fio job on the same file:
//   write   ~ fio --rw=write --bs=BLOCK --iodepth=QD   (the tier appends: log-structured)
//   read    ~ fio --rw=randread --bs=BLOCK --iodepth=QD (ReadBatch calls of --batch blocks)
//   latency ~ fio --rw=randread --bs=BLOCK --iodepth=1 (completion latency percentiles)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench.h"
#include "kvtier/common/status_macros.h"

namespace kvtier::bench::nvme {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

uint64_t RoundUp(uint64_t n) { return (n + 4095) / 4096 * 4096; }

}  // namespace

absl::StatusOr<nlohmann::json> RunWrite(const Config& c) {
  tiers::UnixClock clock;
  KVTIER_ASSIGN_OR_RETURN(auto tier, OpenBenchTier(c, &clock));
  // `window` batches in flight through WriteAsync: while one batch's payloads are written, the
  // earlier ones are checksummed, synced and indexed (together, as one commit group). Each batch
  // owns its buffers until its done callback.
  const uint32_t kWindow = std::max<uint32_t>(1, c.window);
  const uint64_t stride = RoundUp(c.block_bytes);
  const uint32_t batch = std::max<uint32_t>(1, c.batch_blocks);
  AlignedArena arena(stride * batch * kWindow);
  // Best effort: the kernel may refuse (RLIMIT_MEMLOCK), and the tier logs it once.
  (void)tier->RegisterMemory({arena.data, arena.size});
  std::vector<std::span<const std::byte>> blocks;
  for (uint64_t q = 0; q < uint64_t{batch} * kWindow; ++q) {
    FillPayload(0, {arena.data + q * stride, c.block_bytes});
    blocks.emplace_back(arena.data + q * stride, c.block_bytes);
  }
  struct Slot {
    absl::Mutex mu;
    bool busy = false;
    absl::Status status;
  };
  std::vector<Slot> slots(kWindow);
  const uint64_t filled = c.fill_bytes / c.block_bytes;
  const uint64_t total = filled + c.write_bytes / c.block_bytes;
  std::vector<BlockKey> keys(batch);
  tiers::NvmeWriteOptions options;
  options.source = tiers::NvmeWriteOptions::Source::kWriteThrough;
  auto start = Clock::now();
  uint64_t written = 0;
  tiers::NvmeCounters before;  // at the end of the fill
  uint64_t w = 0;
  for (uint64_t next = 0; next < total; w = (w + 1) % kWindow) {
    if (next == filled && filled > 0) {
      // The fill is done (its last calls may still be committing, which the timed part
      // then waits for, as a full tier's writer does): the clock starts now.
      start = Clock::now();
      written = 0;
      before = tier->Snapshot().nvme;
    }
    Slot& slot = slots[w];
    {
      absl::MutexLock lock(&slot.mu);
      slot.mu.Await(absl::Condition(
          +[](Slot* s) { return !s->busy; }, &slot));
      if (!slot.status.ok()) return slot.status;
      slot.busy = true;
    }
    const uint64_t n = std::min<uint64_t>(batch, (next < filled ? filled : total) - next);
    std::byte* base = arena.data + w * batch * stride;
    for (uint64_t q = 0; q < n; ++q) {
      keys[q] = BenchKey(next + q);
      StampPayload(next + q, {base + q * stride, c.block_bytes});
    }
    tier->WriteAsync(1, {keys.data(), n}, {blocks.data() + w * batch, n}, options,
                     [&slot](std::vector<absl::Status> statuses) {
                       absl::MutexLock lock(&slot.mu);
                       for (const absl::Status& s : statuses) {
                         if (!s.ok() && slot.status.ok()) slot.status = s;
                       }
                       slot.busy = false;
                     });
    next += n;
    written += n * c.block_bytes;
  }
  for (Slot& slot : slots) {
    absl::MutexLock lock(&slot.mu);
    slot.mu.Await(absl::Condition(
        +[](Slot* s) { return !s->busy; }, &slot));
    if (!slot.status.ok()) return slot.status;
  }
  const double secs = Seconds(start);
  const tiers::NvmeTierSnapshot s = tier->Snapshot();
  return nlohmann::json{
      {"mode", "write"},
      {"engine", s.engine},
      {"block_bytes", c.block_bytes},
      {"queue_depth", c.queue_depth},
      {"batch_blocks", batch},
      {"window", kWindow},
      {"fill_bytes", filled * c.block_bytes},
      {"bytes", written},
      {"seconds", secs},
      {"mb_s", written / secs / 1e6},
      {"flash_bytes_written", s.nvme.flash_bytes_written},
      {"write_batches", s.nvme.write_batches},
      {"quota_drops", s.nvme.quota_drops - before.quota_drops},
      {"region_evictions", s.nvme.region_evictions - before.region_evictions},
      {"reclaimed_ahead", s.nvme.reclaimed_ahead - before.reclaimed_ahead},
      // Writer time spent reclaiming (the device idle), in ms.
      {"reclaim_wait_ms", (s.nvme.reclaim_wait_nanos - before.reclaim_wait_nanos) / 1e6},
      {"reclaim_list_ms", (s.nvme.reclaim_list_nanos - before.reclaim_list_nanos) / 1e6},
      {"reclaim_commit_ms", (s.nvme.reclaim_commit_nanos - before.reclaim_commit_nanos) / 1e6}};
}

absl::StatusOr<nlohmann::json> RunRead(const Config& c) {
  tiers::UnixClock clock;
  KVTIER_ASSIGN_OR_RETURN(auto tier, OpenBenchTier(c, &clock));
  KVTIER_ASSIGN_OR_RETURN(const std::vector<uint64_t> present, PresentIds(*tier));
  // Each reader asks for `batch` blocks per ReadBatch; the device keeps up to --qd of them in
  // flight (its queue depth), verifying each block as it arrives.
  const uint32_t readers = std::max<uint32_t>(1, c.readers);
  const uint32_t per_reader = std::max<uint32_t>(1, c.batch_blocks);
  const uint64_t stride = RoundUp(c.block_bytes);
  AlignedArena arena(stride * per_reader * readers);
  (void)tier->RegisterMemory({arena.data, arena.size});
  std::atomic<uint64_t> bytes{0}, misses{0}, bad{0};
  std::atomic<bool> stop{false};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < readers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::vector<BlockKey> keys(per_reader);
      std::vector<uint64_t> ids(per_reader);
      std::vector<std::span<std::byte>> dsts;
      for (uint32_t q = 0; q < per_reader; ++q) {
        dsts.emplace_back(arena.data + (t * per_reader + q) * stride, stride);
      }
      while (!stop.load(std::memory_order_relaxed)) {
        for (uint32_t q = 0; q < per_reader; ++q) {
          ids[q] = present[rng() % present.size()];
          keys[q] = BenchKey(ids[q]);
        }
        const auto results = tier->ReadBatch(1, keys, dsts);
        for (uint32_t q = 0; q < per_reader; ++q) {
          if (!results[q].ok()) {
            misses.fetch_add(1);
            continue;
          }
          bytes.fetch_add(results[q]->length, std::memory_order_relaxed);
          if (c.verify && !CheckPayload(ids[q], dsts[q].first(results[q]->length))) {
            bad.fetch_add(1);
          }
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double secs = Seconds(start);
  if (bad > 0) return absl::DataLossError(absl::StrCat(bad.load(), " reads returned wrong bytes"));
  return nlohmann::json{{"mode", "read"},
                        {"engine", tier->Snapshot().engine},
                        {"block_bytes", c.block_bytes},
                        {"queue_depth", c.queue_depth},
                        {"batch_blocks", per_reader},
                        {"readers", readers},
                        {"bytes", bytes.load()},
                        {"seconds", secs},
                        {"misses", misses.load()},
                        {"mb_s", bytes.load() / secs / 1e6}};
}

absl::StatusOr<nlohmann::json> RunLatency(const Config& c) {
  tiers::UnixClock clock;
  KVTIER_ASSIGN_OR_RETURN(auto tier, OpenBenchTier(c, &clock));
  KVTIER_ASSIGN_OR_RETURN(const std::vector<uint64_t> present, PresentIds(*tier));
  AlignedArena arena(RoundUp(c.block_bytes));
  (void)tier->RegisterMemory({arena.data, arena.size});
  std::mt19937_64 rng(99);
  std::vector<double> us;
  const tiers::NvmeCounters before = tier->Snapshot().nvme;
  const auto start = Clock::now();
  while (Seconds(start) < c.seconds) {
    const uint64_t id = present[rng() % present.size()];
    const auto t0 = Clock::now();
    absl::StatusOr<tiers::NvmeReadResult> r =
        tier->Read(1, BenchKey(id), {arena.data, RoundUp(c.block_bytes)});
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (!r.ok())
      return absl::Status(r.status().code(), absl::StrCat("read: ", r.status().message()));
    if (c.verify && !CheckPayload(id, {arena.data, r->length})) {
      return absl::DataLossError("a read returned wrong bytes");
    }
  }
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) {
    return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))];
  };
  const tiers::NvmeTierSnapshot s = tier->Snapshot();
  // Where a read's time goes, on average (the tier's own timers): the lookup in the table and
  // the index, the device, and the checksum.
  auto mean_us = [&](uint64_t after, uint64_t earlier) {
    return static_cast<double>(after - earlier) / 1e3 / static_cast<double>(us.size());
  };
  return nlohmann::json{
      {"mode", "latency"},
      {"engine", s.engine},
      {"block_bytes", c.block_bytes},
      {"reads", us.size()},
      {"p50_us", pct(0.50)},
      {"p99_us", pct(0.99)},
      {"p999_us", pct(0.999)},
      {"mean_us", std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size())},
      {"mean_lookup_us", mean_us(s.nvme.read_lookup_nanos, before.read_lookup_nanos)},
      {"mean_device_us", mean_us(s.nvme.read_device_nanos, before.read_device_nanos)},
      {"mean_verify_us", mean_us(s.nvme.read_verify_nanos, before.read_verify_nanos)}};
}

}  // namespace kvtier::bench::nvme
