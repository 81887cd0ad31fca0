// The replay's semantics on hand-made traces: prefix-only hits, the touch order that makes LRU
// match the published figures, Belady's choice of victim, and the API's errors.
#include "kvtier/replay/replay.h"

#include "gtest/gtest.h"

namespace kvtier::replay {
namespace {

Trace Make(std::vector<std::vector<uint64_t>> requests) {
  Trace t;
  for (auto& ids : requests) t.requests.push_back({.hash_ids = std::move(ids)});
  return t;
}

ReplayResult ReplayChecked(const Trace& t, uint64_t capacity, std::string policy) {
  absl::StatusOr<ReplayResult> r =
      Replay(t, {.capacity_blocks = capacity, .policy = std::move(policy)});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : ReplayResult{};
}

TEST(ReplayTest, HitsAreTheLeadingCachedRun) {
  const Trace t = Make({{1, 2, 3}, {1, 2, 3}, {9, 2, 3}, {1, 2, 7}});
  for (const std::string& policy : ReplayPolicyNames()) {
    const ReplayResult r = ReplayChecked(t, 100, policy);
    // 3 (full repeat) + 0 (2 and 3 are cached but the run starts with a miss) + 2.
    EXPECT_EQ(r.hit_blocks, 5u) << policy;
    EXPECT_EQ(r.total_blocks, 12u) << policy;
    EXPECT_EQ(r.requests, 4u) << policy;
    EXPECT_EQ(r.policy, policy);
    EXPECT_DOUBLE_EQ(r.hit_rate(), 5.0 / 12);
  }
}

TEST(ReplayTest, HitPrefixesAreTouchedDeepestFirst) {
  // After [1, 2] is hit, LRU must hold 2 colder than 1 (the root is touched last): inserting
  // 5 then 6 into a cache of 3 evicts 2, and [1, 2] then hits 1 block. Touching root first
  // would evict 1 and hit nothing.
  const Trace t = Make({{1, 2}, {1, 2}, {5}, {6}, {1, 2}});
  const ReplayResult r = ReplayChecked(t, 3, "lru");
  EXPECT_EQ(r.hit_blocks, 2u + 1u);
  EXPECT_EQ(r.evictions, 2u);  // 2 for 6, then 5 for 2's return
  EXPECT_EQ(r.inserts, 2u + 1u + 1u + 1u);
}

TEST(ReplayTest, BeladyDropsTheBlockUsedFurthestAway) {
  // Cache of 2 holding 1 and 2 when 3 arrives: 3 is never used again, so MIN drops 3 itself
  // and both later requests hit; LRU drops 1 and then 2 and hits nothing.
  const Trace t = Make({{1}, {2}, {3}, {1}, {2}});
  EXPECT_EQ(ReplayChecked(t, 2, "belady").hit_blocks, 2u);
  EXPECT_EQ(ReplayChecked(t, 2, "lru").hit_blocks, 0u);
}

TEST(ReplayTest, AScheduledRequestsHintKeepsItsPrefix) {
  // LRU, 3 blocks: [1] is evicted by 5 and 6 before it returns, unless the scheduler, which
  // queues requests two ahead, hints the last request before 5 runs: 1 is then used again,
  // and 2 and 3 go instead.
  const Trace t = Make({{1}, {2}, {3}, {5}, {6}, {1}});
  EXPECT_EQ(ReplayChecked(t, 3, "lru").hit_blocks, 0u);
  absl::StatusOr<ReplayResult> hinted =
      Replay(t, {.capacity_blocks = 3, .policy = "lru", .hint_lookahead = 2});
  ASSERT_TRUE(hinted.ok());
  EXPECT_EQ(hinted->hit_blocks, 1u);
  EXPECT_EQ(hinted->hinted_blocks, 1u);  // hints of absent blocks use nothing
  EXPECT_EQ(hinted->inserts, 5u);        // and insert nothing
  EXPECT_NE(ReplayResultJson(*hinted).find("\"hint_lookahead\":2"), std::string::npos);
  // Hinted too late (one ahead: after 5 has evicted 1) it changes nothing.
  absl::StatusOr<ReplayResult> late =
      Replay(t, {.capacity_blocks = 3, .policy = "lru", .hint_lookahead = 1});
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->hit_blocks, 0u);
}

TEST(ReplayTest, APinnedHintHoldsWhereAUseDoesNot) {
  // LRU, 2 blocks, hints two ahead: before [2] runs, the hint for the last request finds 1
  // cached. Used (touched), 1 is still older than 2 and goes when 3 arrives; pinned until the
  // last request runs, it stays and 2 goes.
  const Trace t = Make({{1}, {2}, {3}, {1}});
  absl::StatusOr<ReplayResult> touched =
      Replay(t, {.capacity_blocks = 2, .policy = "lru", .hint_lookahead = 2});
  absl::StatusOr<ReplayResult> pinned =
      Replay(t, {.capacity_blocks = 2, .policy = "lru", .hint_lookahead = 2, .hint_pins = true});
  ASSERT_TRUE(touched.ok() && pinned.ok());
  EXPECT_EQ(touched->hit_blocks, 0u);
  EXPECT_EQ(pinned->hit_blocks, 1u);
  // Everything pinned: what does not fit is not cached, and nothing fails.
  const Trace full = Make({{1, 2}, {9}, {3}, {1, 2}});
  absl::StatusOr<ReplayResult> r =
      Replay(full, {.capacity_blocks = 2, .policy = "lru", .hint_lookahead = 2, .hint_pins = true});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->hit_blocks, 2u);
  EXPECT_EQ(r->inserts, 2u);  // 9 and 3 found every slot pinned
}

TEST(ReplayTest, AnUnboundedCacheHitsEveryRepeat) {
  const Trace t = Make({{1, 2, 3}, {1, 2, 4}, {1, 2, 4, 5}, {6}});
  for (const std::string& policy : ReplayPolicyNames()) {
    EXPECT_EQ(ReplayChecked(t, 1000, policy).hit_blocks, 2u + 3u) << policy;
  }
}

TEST(ReplayTest, RejectsBadOptions) {
  const Trace t = Make({{1}});
  EXPECT_EQ(Replay(t, {.capacity_blocks = 0}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Replay(t, {.capacity_blocks = 4, .policy = "fifo"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReplayBelady(t, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ReplayTest, NamesAndJson) {
  const std::vector<std::string> names = ReplayPolicyNames();
  EXPECT_EQ(names.front(), tiers::kDefaultPolicyName);
  EXPECT_EQ(names.back(), kBeladyName);
  EXPECT_EQ(ReplayOptions{}.policy, tiers::kDefaultPolicyName);
  const ReplayResult r = ReplayChecked(Make({{1, 2}, {1, 2}}), 10, "lru");
  const std::string json = ReplayResultJson(r);
  EXPECT_NE(json.find("\"hit_rate\":0.5"), std::string::npos) << json;
  EXPECT_NE(json.find("\"policy\":\"lru\""), std::string::npos) << json;
}

}  // namespace
}  // namespace kvtier::replay
