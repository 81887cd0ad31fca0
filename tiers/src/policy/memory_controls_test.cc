// Memory controls over a base policy: pins never evicted, TTL expiry, quotas enforced,
// priorities respected, usage counted. Run over LRU and over the prefix-aware default.
#include "kvtier/tiers/memory_controls.h"

#include <set>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kvtier/common/testing/manual_clock.h"
#include "kvtier/tiers/policies.h"

namespace kvtier::tiers {
namespace {

constexpr int64_t kSecond = 1'000'000'000;

auto Any() {
  return [](EntryId) { return true; };
}

class MemoryControlsTest : public ::testing::TestWithParam<std::string_view> {
 protected:
  std::unique_ptr<ControlledPolicy> Make(MemoryControlOptions options = {}) {
    auto base = NewPolicy(GetParam(), {.capacity_blocks = 64});
    EXPECT_TRUE(base.ok());
    auto p = ControlledPolicy::Create(*std::move(base), std::move(options), &clock_);
    EXPECT_TRUE(p.ok()) << p.status();
    return *std::move(p);
  }
  testing::ManualClock clock_;
};

TEST_P(MemoryControlsTest, PinnedBlocksAreNeverVictims) {
  auto p = Make();
  EXPECT_EQ(p->Name(), GetParam());
  p->OnInsertControlled(0, {}, {.pinned = true});
  for (EntryId id = 1; id < 5; ++id) p->OnInsert(id, 0);
  p->Pin(3);
  p->Pin(3);
  std::set<EntryId> evicted;
  while (auto v = p->PickVictim(0, Any())) {
    evicted.insert(*v);
    p->OnRemove(*v);
  }
  EXPECT_EQ(evicted, (std::set<EntryId>{1, 2, 4}));
  EXPECT_EQ(p->Usage(0).pinned_blocks, 2u);
  p->Unpin(3);
  EXPECT_FALSE(p->PickVictim(0, Any()));  // still pinned once
  p->Unpin(3);
  EXPECT_EQ(p->PickVictim(0, Any()), 3u);
  EXPECT_TRUE(p->IsPinned(0));
}

TEST_P(MemoryControlsTest, ExpiredBlocksGoFirstAndAreListed) {
  auto p = Make();
  const int64_t now = clock_.NowNanos();
  for (EntryId id = 0; id < 4; ++id) p->OnInsert(id, 0);
  p->OnInsertControlled(10, {}, {.expires_at_nanos = now + 2 * kSecond});
  p->OnInsertControlled(11, {}, {.expires_at_nanos = now + 1 * kSecond});
  p->OnInsertControlled(12, {}, {.expires_at_nanos = now + 1 * kSecond, .pinned = true});
  EXPECT_TRUE(p->ExpiredBlocks(10).empty());
  const std::optional<EntryId> before = p->PickVictim(0, Any());
  ASSERT_TRUE(before);
  EXPECT_LT(*before, 10u);  // nothing expired yet: the base policy's choice
  clock_.Advance(3 * kSecond);
  // Soonest expired first; the pinned one does not expire while pinned.
  EXPECT_EQ(p->ExpiredBlocks(10), (std::vector<EntryId>{11, 10}));
  EXPECT_EQ(p->ExpiredBlocks(1), (std::vector<EntryId>{11}));
  EXPECT_EQ(p->PickVictim(0, Any()), 11u);
  p->OnRemove(11);
  EXPECT_EQ(p->PickVictim(0, Any()), 10u);
  p->SetExpiry(10, 0);  // cleared: back to the base policy's order
  EXPECT_TRUE(p->ExpiredBlocks(10).empty());
  p->Unpin(12);
  EXPECT_EQ(p->ExpiredBlocks(10), (std::vector<EntryId>{12}));
}

TEST_P(MemoryControlsTest, QuotasAreEnforced) {
  constexpr uint64_t kSlot = 4096;
  MemoryControlOptions options;
  options.groups[7] = {.max_bytes = 3 * kSlot};
  auto p = Make(options);
  for (EntryId id = 0; id < 5; ++id) p->OnInsert(id, 0);  // group 0: no quota
  EntryId next = 100;
  for (int i = 0; i < 10; ++i) {
    p->OnInsertControlled(next++, {}, {.group = 7, .bytes = kSlot});
    // The tier enforces the quota after each insert.
    while (auto v = p->QuotaVictim(Any())) {
      EXPECT_GE(*v, 100u);
      p->OnRemove(*v);
    }
    EXPECT_LE(p->Usage(7).blocks, 3u);
    EXPECT_LE(p->Usage(7).bytes, 3 * kSlot);
  }
  EXPECT_EQ(p->Usage(7).blocks, 3u);
  EXPECT_EQ(p->Usage(7).bytes, 3 * kSlot);
  EXPECT_EQ(p->Usage(0).blocks, 5u);
  // Over quota under pressure too: a group past its quota pays first.
  p->OnInsertControlled(next++, {}, {.group = 7, .bytes = kSlot});
  const std::optional<EntryId> v = p->PickVictim(0, Any());
  ASSERT_TRUE(v);
  EXPECT_GE(*v, 100u);
}

TEST_P(MemoryControlsTest, QuotasBoundTheBytesOfBlocksOfMixedSizes) {
  // Blocks of 1 to 4 units in a group of 10: what counts is their sum, not their number.
  MemoryControlOptions options;
  options.groups[7] = {.max_bytes = 10};
  auto p = Make(options);
  const auto enforce = [&] {
    std::vector<EntryId> victims;
    while (auto v = p->QuotaVictim(Any())) {
      victims.push_back(*v);
      p->OnRemove(*v);
    }
    return victims;
  };
  const std::vector<std::pair<EntryId, uint64_t>> sized = {
      {100, 4}, {101, 1}, {102, 1}, {103, 1}, {104, 3}};
  for (const auto& [id, bytes] : sized) {
    p->OnInsertControlled(id, {}, {.group = 7, .bytes = bytes});
    EXPECT_TRUE(enforce().empty()) << id;  // exactly 10 at the end: within the quota
  }
  EXPECT_EQ(p->Usage(7).blocks, 5u);  // more than 10 / 4 blocks of the largest size
  EXPECT_EQ(p->Usage(7).bytes, 10u);
  // Four more units: the coldest block, of 4, is the one victim needed.
  p->OnInsertControlled(105, {}, {.group = 7, .bytes = 4});
  std::vector<EntryId> victims = enforce();
  EXPECT_EQ(victims, std::vector<EntryId>{100});
  EXPECT_EQ(p->Usage(7).bytes, 10u);
  EXPECT_EQ(p->Usage(7).blocks, 5u);
  // A group without a quota is not bounded by anyone's bytes.
  for (EntryId id = 0; id < 20; ++id) p->OnInsertControlled(id, {}, {.bytes = 100});
  EXPECT_TRUE(enforce().empty());
  EXPECT_EQ(p->Usage(0).bytes, 2000u);
  // A lowered quota puts the group over it at once; victims bring its bytes down to it.
  ASSERT_TRUE(p->SetLimits(7, {.max_bytes = 5}).ok());
  victims = enforce();
  EXPECT_FALSE(victims.empty());
  EXPECT_LE(p->Usage(7).bytes, 5u);
  EXPECT_GT(p->Usage(7).bytes + 4, 5u);  // no more victims than needed (none is over 4)
  for (EntryId v : victims) EXPECT_GE(v, 100u);
}

TEST_P(MemoryControlsTest, LowerPriorityGroupsGoFirst) {
  MemoryControlOptions options;
  options.groups[1] = {.priority = 10};
  options.groups[2] = {.priority = -5};
  auto p = Make(options);
  p->OnInsertControlled(0, {}, {.group = 1});
  p->OnInsertControlled(1, {}, {.group = 0});
  p->OnInsertControlled(2, {}, {.group = 2});
  p->OnInsertControlled(3, {}, {.group = 2});
  std::vector<EntryId> order;
  while (auto v = p->PickVictim(0, Any())) {
    order.push_back(*v);
    p->OnRemove(*v);
  }
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(std::set<EntryId>(order.begin(), order.begin() + 2), (std::set<EntryId>{2, 3}));
  EXPECT_EQ(order[2], 1u);
  EXPECT_EQ(order[3], 0u);
}

TEST_P(MemoryControlsTest, UsageFollowsInsertsAndRemovals) {
  auto p = Make();
  p->OnInsertControlled(0, {}, {.group = 4, .bytes = 300, .pinned = true});
  p->OnInsertControlled(1, {}, {.group = 4, .bytes = 20});
  EXPECT_EQ(p->Usage(4).blocks, 2u);
  EXPECT_EQ(p->Usage(4).bytes, 320u);
  EXPECT_EQ(p->Usage(4).pinned_blocks, 1u);
  p->OnRemove(0);  // the tier may drop a pinned block itself (e.g. deletion)
  EXPECT_EQ(p->Usage(4).blocks, 1u);
  EXPECT_EQ(p->Usage(4).bytes, 20u);
  EXPECT_EQ(p->Usage(4).pinned_blocks, 0u);
  p->OnInsertControlled(1, {}, {.group = 5, .bytes = 7});  // re-insert moves it
  EXPECT_EQ(p->Usage(4).blocks, 0u);
  EXPECT_EQ(p->Usage(4).bytes, 0u);
  EXPECT_EQ(p->Usage(5).blocks, 1u);
  EXPECT_EQ(p->Usage(5).bytes, 7u);
  EXPECT_EQ(p->Usage(99).blocks, 0u);
}

INSTANTIATE_TEST_SUITE_P(OverBasePolicies, MemoryControlsTest,
                         ::testing::Values("lru", "prefix-slru"),
                         [](const ::testing::TestParamInfo<std::string_view>& info) {
                           return info.param == "lru" ? std::string("lru")
                                                      : std::string("prefix_slru");
                         });

TEST(MemoryControlOptionsTest, RejectsTooManyPriorities) {
  MemoryControlOptions options;
  for (GroupId g = 1; g <= kMaxPriorityLevels; ++g) {
    options.groups[g] = {.priority = static_cast<int32_t>(g)};
  }
  EXPECT_EQ(options.Validate().code(), absl::StatusCode::kInvalidArgument);
  options.groups.erase(1);
  EXPECT_TRUE(options.Validate().ok());
}

TEST(ControlledPolicyTest, NeedsABaseAndAClock) {
  testing::ManualClock clock;
  EXPECT_EQ(ControlledPolicy::Create(nullptr, {}, &clock).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ControlledPolicy::Create(NewLruPolicy(), {}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvtier::tiers
