// bench_dram_reclaim: what a slab reclaim costs the DRAM tier's other users. A reclaim hands a
// slab from one size class to another and first moves the slab's blocks elsewhere in their
// class, copying them under the tier's lock (dram_tier_impl.h). This fills the tier with
// blocks of one size, then puts blocks of another size, so that every slab's worth of those
// puts reclaims a slab of the first; a second thread reads blocks of the first size all the
// while. It reports the puts' latency (split by whether the put reclaimed), the reads' latency
// and, as the limit of the copy, a memcpy of one slab in the same process. With --ahead, a
// third thread calls DramTier::ReclaimAhead as kvtierd's maintenance thread does (dram.
// reclaim_ahead), so that puts find the next slab taken already; --put-gap-us paces the puts
// (a put stream as fast as memset is faster than any engine's).
//
//   bench_dram_reclaim [--capacity-mib 1024] [--slab-mib 16] [--from-kib 256] [--to-kib 192]
//                      [--puts 2048] [--hot 256] [--ahead] [--put-gap-us 0]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "kvtier/common/clock.h"
#include "kvtier/tiers/dram_tier.h"

namespace kvtier::tiers {
namespace {

constexpr NamespaceId kFrom = 1;  // the size the tier is filled with
constexpr NamespaceId kTo = 2;    // the size whose puts reclaim slabs
constexpr OwnerId kWriter = 1;
constexpr OwnerId kReader = 2;

BlockKey KeyOf(NamespaceId ns, uint64_t i) {
  BlockKey k;
  std::memcpy(k.bytes.data(), &i, sizeof(i));
  k.bytes[31] = static_cast<uint8_t>(ns);
  return k;
}

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Puts block i of `ns` (its bytes written) and returns ReservePut's time in ns, or -1.
int64_t PutOne(DramTier& tier, NamespaceId ns, uint64_t i, uint64_t bytes) {
  const BlockKey key = KeyOf(ns, i);
  const uint64_t length = bytes;
  const int64_t t0 = Now();
  LeaseGrant g = tier.ReservePut(kWriter, ns, {&key, 1}, {&length, 1});
  const int64_t t1 = Now();
  if (g.codes.empty() || g.codes[0] != absl::StatusCode::kOk) return -1;
  std::memset(tier.arena_base() + g.slots[0].offset, static_cast<int>(i & 0xFF), length);
  if (!tier.CommitPut(kWriter, g.lease_id).ok()) return -1;
  return t1 - t0;
}

double Percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]);
}

void Report(const char* what, const std::vector<int64_t>& ns) {
  std::printf(
      "| %s | %zu | %.1f | %.1f | %.1f | %.1f |\n", what, ns.size(), Percentile(ns, 0.5) / 1e3,
      Percentile(ns, 0.99) / 1e3, Percentile(ns, 0.999) / 1e3,
      ns.empty() ? 0.0 : static_cast<double>(*std::max_element(ns.begin(), ns.end())) / 1e3);
}

int Main(int argc, char** argv) {
  CLI::App app{"Cost of DRAM slab reclaims to puts and concurrent reads"};
  uint64_t capacity_mib = 1024;
  uint64_t slab_mib = 16;
  uint64_t from_kib = 256;
  uint64_t to_kib = 192;
  uint64_t puts = 2048;
  uint64_t hot = 256;
  bool ahead = false;
  uint64_t put_gap_us = 0;
  app.add_option("--capacity-mib", capacity_mib, "DRAM tier capacity");
  app.add_option("--slab-mib", slab_mib, "slab size");
  app.add_option("--from-kib", from_kib, "block size the tier is filled with");
  app.add_option("--to-kib", to_kib, "block size of the puts that reclaim");
  app.add_option("--puts", puts, "puts of the second size");
  app.add_option("--hot", hot, "blocks of the first size the reader keeps reading");
  app.add_flag("--ahead", ahead, "a maintenance thread reclaims slabs ahead of the puts");
  app.add_option("--put-gap-us", put_gap_us, "pause between puts of the second size");
  CLI11_PARSE(app, argc, argv);

  SteadyClock clock;
  DramTierOptions options;
  options.capacity_bytes = capacity_mib << 20;
  options.slab_bytes = slab_mib << 20;
  auto made = DramTier::Create(options, &clock, nullptr);
  if (!made.ok()) {
    std::fprintf(stderr, "bench_dram_reclaim: %s\n", made.status().ToString().c_str());
    return 1;
  }
  DramTier& tier = **made;
  const uint64_t from_bytes = from_kib << 10;
  const uint64_t to_bytes = to_kib << 10;
  if (!tier.AddNamespace(kFrom, from_bytes).ok() || !tier.AddNamespace(kTo, to_bytes).ok()) {
    std::fprintf(stderr, "bench_dram_reclaim: bad block sizes\n");
    return 1;
  }
  const uint64_t filled = options.capacity_bytes / from_bytes;
  hot = std::clamp<uint64_t>(hot, 1, filled);
  for (uint64_t i = 0; i < filled; ++i) PutOne(tier, kFrom, i, from_bytes);
  // Churn, so that slabs hold blocks of every age as in a tier that has run a while: as many
  // puts again, each reading a block put earlier (some of them evicted already), so that
  // eviction takes slots in no particular order.
  uint64_t mix = 1;
  for (uint64_t i = filled; i < 2 * filled; ++i) {
    PutOne(tier, kFrom, i, from_bytes);
    mix = mix * 6364136223846793005ull + 1442695040888963407ull;
    const BlockKey key = KeyOf(kFrom, i - (mix >> 33) % filled);
    LeaseGrant g = tier.AcquireRead(kReader, kFrom, {&key, 1});
    if (g.lease_id != 0) (void)tier.Release(kReader, g.lease_id);
  }

  // The reader: one block of the first size at a time, pinned and released, as a get does,
  // among `hot` of them spread over the slabs (reads make blocks recent: reading all of them
  // would keep the first size newer than the second, which would evict its own instead).
  std::atomic<bool> stop{false};
  std::vector<int64_t> reads;
  reads.reserve(1 << 22);
  std::thread reader([&] {
    uint64_t i = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const BlockKey key = KeyOf(kFrom, 2 * filled - 1 - ((i++ % hot) * 7919) % filled);
      const int64_t t0 = Now();
      LeaseGrant g = tier.AcquireRead(kReader, kFrom, {&key, 1});
      const int64_t t1 = Now();
      if (g.lease_id != 0) (void)tier.Release(kReader, g.lease_id);
      reads.push_back(t1 - t0);
    }
  });

  // The maintenance thread, as kvtierd runs it (cache_server/src/server.cc, DramMaintenance).
  std::thread maintenance;
  if (ahead) {
    maintenance = std::thread([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        std::this_thread::sleep_for(DramTier::AheadPause(tier.ReclaimAhead()));
      }
    });
  }

  std::vector<int64_t> plain;
  std::vector<int64_t> reclaiming;
  // Reclaims a put paid for (those of the maintenance thread are counted apart).
  auto put_reclaims = [&tier] {
    const TierSnapshot s = tier.Snapshot();
    return s.slab_reclaims - s.slab_reclaims_ahead;
  };
  uint64_t reclaims = put_reclaims();
  const uint64_t moved_before = tier.Snapshot().blocks_moved;
  const int64_t started = Now();
  for (uint64_t i = 0; i < puts; ++i) {
    if (put_gap_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(put_gap_us));
    const int64_t ns = PutOne(tier, kTo, i, to_bytes);
    if (ns < 0) continue;
    const uint64_t now_reclaims = put_reclaims();
    (now_reclaims != reclaims ? reclaiming : plain).push_back(ns);
    reclaims = now_reclaims;
  }
  const double put_seconds = static_cast<double>(Now() - started) / 1e9;
  stop = true;
  reader.join();
  if (maintenance.joinable()) maintenance.join();
  const TierSnapshot s = tier.Snapshot();

  // The copy's limit: one slab's bytes by memcpy, in the same process (median of 9).
  std::vector<std::byte> a(options.slab_bytes, std::byte{1});
  std::vector<std::byte> b(options.slab_bytes, std::byte{2});
  std::vector<int64_t> copies;
  for (int r = 0; r < 9; ++r) {
    const int64_t t0 = Now();
    std::memcpy(b.data(), a.data(), a.size());
    copies.push_back(Now() - t0);
    std::swap(a, b);
  }

  std::printf(
      "bench_dram_reclaim: %llu MiB tier, %llu MiB slabs, filled (twice) with %llu KiB "
      "blocks, then %llu puts of %llu KiB (%.0f MB/s%s); %llu reclaims (%llu ahead of need) "
      "moved %llu blocks\n\n",
      static_cast<unsigned long long>(capacity_mib), static_cast<unsigned long long>(slab_mib),
      static_cast<unsigned long long>(from_kib), static_cast<unsigned long long>(puts),
      static_cast<unsigned long long>(to_kib),
      static_cast<double>(puts * to_bytes) / 1e6 / put_seconds,
      ahead ? ", maintenance thread reclaiming ahead" : "",
      static_cast<unsigned long long>(s.slab_reclaims),
      static_cast<unsigned long long>(s.slab_reclaims_ahead),
      static_cast<unsigned long long>(s.blocks_moved - moved_before));
  std::printf(
      "| operation | count | p50 us | p99 us | p99.9 us | max us |\n|---|---|---|---|---|---|\n");
  Report("ReservePut, no reclaim", plain);
  Report("ReservePut that reclaimed a slab", reclaiming);
  std::vector<int64_t> all = plain;
  all.insert(all.end(), reclaiming.begin(), reclaiming.end());
  Report("ReservePut, all", all);
  Report("AcquireRead of another block, meanwhile", reads);
  Report("memcpy of one slab (the copy's limit)", copies);
  std::printf("\nputs that took over 1 ms: %zu of %zu\n",
              static_cast<size_t>(
                  std::count_if(all.begin(), all.end(), [](int64_t ns) { return ns > 1'000'000; })),
              all.size());
  return 0;
}

}  // namespace
}  // namespace kvtier::tiers

int main(int argc, char** argv) { return kvtier::tiers::Main(argc, argv); }
