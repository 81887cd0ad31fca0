#include "tiers/src/nvme/region_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvtier::tiers::nvme {
namespace {

constexpr uint64_t kRegion = 1 << 20;

TEST(RegionLogTest, NothingAllocatesBeforeARegionIsOpen) {
  RegionLog log(4, kRegion);
  EXPECT_FALSE(log.active().has_value());
  EXPECT_FALSE(log.Allocate(4096).has_value());
}

TEST(RegionLogTest, AppendsUntilFull) {
  RegionLog log(4, kRegion);
  log.Open(0, 1);
  EXPECT_EQ(log.Allocate(8192), 0u);
  EXPECT_EQ(log.Allocate(4096), 8192u);
  EXPECT_EQ(log.Allocate(kRegion - 12288), 12288u);
  EXPECT_FALSE(log.Allocate(4096).has_value());
}

TEST(RegionLogTest, PrefersEmptyRegionsThenOldest) {
  RegionLog log(3, kRegion);
  log.Open(0, 1);
  log.AddLive(0, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 1u);  // empty, never the active one
  log.Open(1, 2);
  log.AddLive(1, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 2u);
  log.Open(2, 3);
  log.AddLive(2, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 0u);  // all full: generation 1 is the oldest
  log.Open(0, 4);                   // region 0 evicted and reopened
  EXPECT_EQ(log.NextToOpen(), 1u);
  log.RemoveLive(2, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 2u);  // emptied by removals: reused before evicting anything
}

TEST(RegionLogTest, SkipsRegionsMostlyPinned) {
  RegionLog log(3, kRegion);
  log.Open(0, 1);
  log.AddLive(0, kRegion / 2 + 4096, true);
  log.Open(1, 2);
  log.AddLive(1, kRegion, false);
  log.Open(2, 3);
  log.AddLive(2, kRegion, false);
  EXPECT_EQ(log.NextToOpen(), 1u);  // region 0 is older but mostly pinned
  log.RemoveLive(0, 8192, true);
  log.AddLive(0, 8192, false);
  EXPECT_EQ(log.NextToOpen(), 0u);  // unpinned enough to be worth reclaiming
  RegionLog pins(2, kRegion);
  pins.Open(0, 1);
  pins.AddLive(0, kRegion, true);
  pins.Open(1, 2);
  pins.AddLive(1, kRegion, true);
  EXPECT_FALSE(pins.NextToOpen().has_value());
}

TEST(RegionLogTest, PendingRecordsKeepARegionFromLookingEmpty) {
  RegionLog log(4, kRegion);
  log.Open(0, 1);
  log.AddPending(0);  // placed, not committed yet: live bytes still 0
  log.AddPending(0);
  EXPECT_FALSE(log.Quiet(0));
  EXPECT_EQ(log.NextToOpen(), 1u);
  log.Open(1, 2);
  EXPECT_EQ(log.NextToOpen(), 2u);  // region 0 is the newest but one, not a free region
  EXPECT_TRUE(log.Quiet(2));
  log.AddLive(0, 4096, false);  // one record committed, the other failed
  log.RemovePending(0);
  log.RemovePending(0);
  EXPECT_EQ(log.pending_records(0), 0u);
  EXPECT_FALSE(log.Quiet(0));
  log.RemoveLive(0, 4096, false);
  EXPECT_TRUE(log.Quiet(0));
  EXPECT_EQ(log.NextToOpen(), 0u);
}

TEST(RegionLogTest, CountsLiveBytes) {
  RegionLog log(3, kRegion);
  log.Restore(1, 9);
  log.AddLive(1, 8192, false);
  log.AddLive(2, 4096, false);
  EXPECT_EQ(log.live_bytes(), 12288u);
  EXPECT_EQ(log.regions_in_use(), 2u);
  EXPECT_EQ(log.generation(1), 9u);
  log.RemoveLive(1, 8192, false);
  EXPECT_EQ(log.live_bytes(1), 0u);
  EXPECT_EQ(log.regions_in_use(), 1u);
  EXPECT_EQ(log.NextToOpen(), 0u);
}

TEST(RegionLogTest, EqualGenerationsGoByRegionNumber) {
  RegionLog log(4, kRegion);
  // Live records in regions of generation 0, as while startup fills the table before Restore.
  for (uint32_t r : {3u, 1u, 2u}) log.AddLive(r, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 0u);  // still empty
  EXPECT_EQ(log.OldestRegions(2), (std::vector<uint32_t>{1, 2}));
  log.AddLive(0, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 0u);
  log.Restore(0, 5);
  EXPECT_EQ(log.NextToOpen(), 1u);
  EXPECT_EQ(log.OldestRegions(4), (std::vector<uint32_t>{1, 2, 3, 0}));
  EXPECT_EQ(log.quiet_regions(), 0u);
  EXPECT_EQ(log.regions_in_use(), 4u);
  EXPECT_TRUE(log.CheckCounters().ok());
}

// The reference for the randomized test below: RegionLog's rules written as plain scans over
// every region, as RegionLog answered them before it kept sets and counters (the same code but
// for equal generations, whose order partial_sort left open).
class ScanModel {
 public:
  ScanModel(uint32_t count, uint64_t region_bytes) : region_bytes_(region_bytes), r_(count) {}

  void Restore(uint32_t r, uint64_t g) { r_[r].generation = g; }
  std::optional<uint32_t> Allocate(uint64_t bytes) {
    if (!active_ || bytes > region_bytes_ - offset_) return std::nullopt;
    const uint64_t at = offset_;
    offset_ += bytes;
    return static_cast<uint32_t>(at);
  }
  void Open(uint32_t r, uint64_t g) {
    r_[r].generation = g;
    r_[r].clean = false;
    active_ = r;
    offset_ = 0;
  }
  void Reclaim(uint32_t r, uint64_t g) {
    r_[r].generation = g;
    r_[r].clean = Quiet(r);
    r_[r].reclaiming = false;
  }
  void MarkReclaiming(uint32_t r) { r_[r].reclaiming = true; }
  void AbortReclaim(uint32_t r) { r_[r].reclaiming = false; }
  void AddLive(uint32_t r, uint64_t bytes, bool pinned) {
    r_[r].live += bytes;
    if (pinned) r_[r].pinned += bytes;
  }
  void RemoveLive(uint32_t r, uint64_t bytes, bool pinned) {
    r_[r].live -= bytes;
    if (pinned) r_[r].pinned -= bytes;
  }
  void AddPending(uint32_t r) { ++r_[r].pending; }
  void RemovePending(uint32_t r) { --r_[r].pending; }

  bool Quiet(uint32_t r) const { return r_[r].live == 0 && r_[r].pending == 0; }
  bool Clean(uint32_t r) const { return r_[r].generation == 0 || r_[r].clean; }
  bool Openable(uint32_t r) const { return active_ != r && !r_[r].reclaiming && Quiet(r); }
  bool Evictable(uint32_t r) const {
    return active_ != r && !r_[r].reclaiming && r_[r].pending == 0 &&
           r_[r].pinned * 2 <= region_bytes_;
  }
  std::optional<uint32_t> NextToOpen() const {
    for (uint32_t r = 0; r < r_.size(); ++r) {
      if (Openable(r)) return r;
    }
    const std::vector<uint32_t> oldest = OldestRegions(1);
    if (oldest.empty()) return std::nullopt;
    return oldest.front();
  }
  // Oldest first; equal generations by region number.
  std::vector<uint32_t> OldestRegions(size_t n) const {
    std::vector<uint32_t> found;
    for (uint32_t r = 0; r < r_.size(); ++r) {
      if (Evictable(r) && !Quiet(r)) found.push_back(r);
    }
    std::stable_sort(found.begin(), found.end(),
                     [&](uint32_t a, uint32_t b) { return r_[a].generation < r_[b].generation; });
    found.resize(std::min(n, found.size()));
    return found;
  }
  uint32_t quiet_regions() const {
    uint32_t n = 0;
    for (uint32_t r = 0; r < r_.size(); ++r) n += Openable(r) ? 1 : 0;
    return n;
  }
  uint32_t pending_regions() const {
    uint32_t n = 0;
    for (const R& r : r_) n += r.pending > 0 ? 1 : 0;
    return n;
  }
  uint32_t regions_in_use() const {
    uint32_t n = 0;
    for (uint32_t r = 0; r < r_.size(); ++r) n += r_[r].live > 0 || active_ == r ? 1 : 0;
    return n;
  }
  uint64_t live_bytes() const {
    uint64_t n = 0;
    for (const R& r : r_) n += r.live;
    return n;
  }

  struct R {
    uint64_t generation = 0, live = 0, pinned = 0;
    uint32_t pending = 0;
    bool clean = false, reclaiming = false;
  };
  const uint64_t region_bytes_;
  std::vector<R> r_;
  std::optional<uint32_t> active_;
  uint64_t offset_ = 0;
};

// Every answer of `log` against the model's; the failures name `step`.
void ExpectSame(const RegionLog& log, const ScanModel& m, const std::string& step) {
  SCOPED_TRACE(step);
  const absl::Status counters = log.CheckCounters();
  EXPECT_TRUE(counters.ok()) << counters;
  const uint32_t n = static_cast<uint32_t>(m.r_.size());
  ASSERT_EQ(log.active(), m.active_);
  EXPECT_EQ(log.NextToOpen(), m.NextToOpen());
  for (size_t k : {size_t{0}, size_t{1}, size_t{3}, size_t{n}}) {
    EXPECT_EQ(log.OldestRegions(k), m.OldestRegions(k)) << "OldestRegions(" << k << ")";
  }
  EXPECT_EQ(log.quiet_regions(), m.quiet_regions());
  EXPECT_EQ(log.pending_regions(), m.pending_regions());
  EXPECT_EQ(log.regions_in_use(), m.regions_in_use());
  EXPECT_EQ(log.live_bytes(), m.live_bytes());
  // One comparison per region, then gtest's only for a region that differs: the many-region
  // test stays quick in sanitizer builds.
  for (uint32_t r = 0; r < n; ++r) {
    const ScanModel::R& s = m.r_[r];
    if (log.Quiet(r) == m.Quiet(r) && log.Clean(r) == m.Clean(r) &&
        log.generation(r) == s.generation && log.live_bytes(r) == s.live &&
        log.pending_records(r) == s.pending) {
      continue;
    }
    EXPECT_EQ(log.Quiet(r), m.Quiet(r)) << "region " << r;
    EXPECT_EQ(log.Clean(r), m.Clean(r)) << "region " << r;
    EXPECT_EQ(log.generation(r), s.generation) << "region " << r;
    EXPECT_EQ(log.live_bytes(r), s.live) << "region " << r;
    EXPECT_EQ(log.pending_records(r), s.pending) << "region " << r;
    return;
  }
}

// Random sequences of every transition, each applied to a RegionLog and to the model, every
// answer compared after each step, and CheckCounters' own full scan run. Generations are unique, as
// the tier hands them out, except 0: regions never opened, which take live bytes here too (as in
// CountsLiveBytes), so that equal generations are compared as well. Sizes are in 64 KiB units of a
// 1 MiB region, so that pinned bytes cross the half-region mark often.
void RunRandomTransitions(uint32_t regions, uint64_t seed, int steps) {
  constexpr uint64_t kUnit = kRegion / 16;
  std::mt19937_64 rng(seed);
  auto below = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  RegionLog log(regions, kRegion);
  ScanModel m(regions, kRegion);
  uint64_t next_generation = 1;
  for (int i = 0; i < steps; ++i) {
    const uint32_t r = static_cast<uint32_t>(below(regions));
    std::string step = absl::StrCat("seed ", seed, " step ", i, ": ");
    switch (below(13)) {
      case 0: {  // the writer opens what NextToOpen picks
        const std::optional<uint32_t> t = m.NextToOpen();
        if (!t) break;
        absl::StrAppend(&step, "Open(NextToOpen = ", *t, ")");
        log.Open(*t, next_generation);
        m.Open(*t, next_generation++);
        break;
      }
      case 1:
        absl::StrAppend(&step, "Open(", r, ")");
        log.Open(r, next_generation);
        m.Open(r, next_generation++);
        break;
      case 2: {  // a reclaim job: the oldest regions marked, then reclaimed or given up
        const std::vector<uint32_t> batch = m.OldestRegions(1 + below(4));
        absl::StrAppend(&step, "MarkReclaiming x", batch.size());
        for (uint32_t b : batch) {
          log.MarkReclaiming(b);
          m.MarkReclaiming(b);
        }
        break;
      }
      case 3:
        if (m.active_ == r) break;
        absl::StrAppend(&step, "Reclaim(", r, ")");
        log.Reclaim(r, next_generation);
        m.Reclaim(r, next_generation++);
        break;
      case 4:
        if (below(2) == 0) {
          absl::StrAppend(&step, "MarkReclaiming(", r, ")");
          log.MarkReclaiming(r);
          m.MarkReclaiming(r);
        } else {
          absl::StrAppend(&step, "AbortReclaim(", r, ")");
          log.AbortReclaim(r);
          m.AbortReclaim(r);
        }
        break;
      case 5:
      case 6: {
        const uint64_t bytes = kUnit * (1 + below(8));
        const bool pinned = below(3) == 0;
        absl::StrAppend(&step, "AddLive(", r, ", ", bytes, ", ", pinned, ")");
        log.AddLive(r, bytes, pinned);
        m.AddLive(r, bytes, pinned);
        break;
      }
      case 7:
      case 8: {
        const ScanModel::R& s = m.r_[r];
        const bool pinned = s.pinned > 0 && (s.live == s.pinned || below(2) == 0);
        const uint64_t most = pinned ? s.pinned : s.live - s.pinned;
        if (most == 0) break;
        const uint64_t bytes = below(2) ? most : kUnit * (1 + below(most / kUnit));
        absl::StrAppend(&step, "RemoveLive(", r, ", ", bytes, ", ", pinned, ")");
        log.RemoveLive(r, bytes, pinned);
        m.RemoveLive(r, bytes, pinned);
        break;
      }
      case 9:
        // Records are placed in the active region only, but the log does not care.
        absl::StrAppend(&step, "AddPending(", r, ")");
        log.AddPending(r);
        m.AddPending(r);
        break;
      case 10:
        if (m.r_[r].pending == 0) break;
        absl::StrAppend(&step, "RemovePending(", r, ")");
        log.RemovePending(r);
        m.RemovePending(r);
        break;
      case 11:
        absl::StrAppend(&step, "Restore(", r, ")");
        log.Restore(r, next_generation);
        m.Restore(r, next_generation++);
        break;
      case 12: {
        const uint64_t bytes = kUnit * (1 + below(6));
        absl::StrAppend(&step, "Allocate(", bytes, ")");
        ASSERT_EQ(log.Allocate(bytes), m.Allocate(bytes)) << step;
        break;
      }
    }
    ExpectSame(log, m, step);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(RegionLogTest, RandomTransitionsMatchAFullScan) {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    RunRandomTransitions(1 + static_cast<uint32_t>(seed % 12), seed, 400);
    if (HasFailure()) return;
  }
}

TEST(RegionLogTest, RandomTransitionsMatchAFullScanWithManyRegions) {
  for (uint64_t seed = 1000; seed < 1004; ++seed) {
    RunRandomTransitions(300, seed, 3000);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace kvtier::tiers::nvme
