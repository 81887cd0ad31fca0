// The published figures for ../shared/traces/synthetic_trace.jsonl (its README): LRU exactly,
// Belady within half a point, and the default policy ahead of LRU. Exits 77 (ctest: skipped)
// when the trace is not beside the repository.
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "gtest/gtest.h"
#include "kvtier/replay/replay.h"
#include "kvtier/replay/trace.h"

namespace kvtier::replay {
namespace {

const Trace& MooncakeTrace() {
  static const Trace* trace = [] {
    absl::StatusOr<Trace> t = LoadMooncakeTrace(KVTIER_MOONCAKE_TRACE);
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      return new Trace;
    }
    return new Trace(*std::move(t));
  }();
  return *trace;
}

struct Published {
  uint64_t capacity;
  double lru_percent;
  double belady_percent;
};
constexpr Published kReadme[] = {
    {2000, 14.4, 36.6}, {5859, 30.9, 54.6}, {10000, 42.4, 61.6}, {20000, 57.2, 64.0}};

double Percent(const ReplayResult& r) { return 100 * r.hit_rate(); }
double OneDecimal(double percent) { return std::round(percent * 10) / 10; }

TEST(MooncakeTraceTest, ShapeMatchesTheReadme) {
  EXPECT_EQ(MooncakeTrace().requests.size(), 3993u);
  EXPECT_EQ(MooncakeTrace().TotalBlocks(), 121877u);
}

TEST(MooncakeTraceTest, LruReproducesTheReadmeExactly) {
  for (const Published& p : kReadme) {
    absl::StatusOr<ReplayResult> r =
        Replay(MooncakeTrace(), {.capacity_blocks = p.capacity, .policy = "lru"});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_DOUBLE_EQ(OneDecimal(Percent(*r)), p.lru_percent) << p.capacity;
  }
}

TEST(MooncakeTraceTest, BeladyWithinHalfAPoint) {
  for (const Published& p : kReadme) {
    absl::StatusOr<ReplayResult> r = ReplayBelady(MooncakeTrace(), p.capacity);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_NEAR(Percent(*r), p.belady_percent, 0.5) << p.capacity;
  }
}

TEST(MooncakeTraceTest, DefaultPolicyBeatsLru) {
  for (const Published& p : kReadme) {
    absl::StatusOr<ReplayResult> r = Replay(MooncakeTrace(), {.capacity_blocks = p.capacity});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT(Percent(*r), p.lru_percent) << p.capacity;
  }
}

}  // namespace
}  // namespace kvtier::replay

int main(int argc, char** argv) {
  if (!std::filesystem::exists(KVTIER_MOONCAKE_TRACE)) {
    std::printf("skipped: %s not found (shared/ is expected beside the repository)\n",
                KVTIER_MOONCAKE_TRACE);
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
