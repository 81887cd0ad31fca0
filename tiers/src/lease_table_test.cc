#include "tiers/src/lease_table.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvtier::tiers::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr int64_t kTimeout = 100;

LeaseId AddLease(LeaseTable& t, OwnerId owner, LeaseKind kind, int64_t now,
                 std::vector<uint32_t> entries) {
  const LeaseId id = t.NextId();
  t.Add(id, owner, kind, now, std::move(entries));
  return id;
}

TEST(LeaseTableTest, IdsStartAtOneAndGrow) {
  LeaseTable t(kTimeout);
  const LeaseId a = AddLease(t, 1, LeaseKind::kRead, 0, {1});
  const LeaseId b = AddLease(t, 1, LeaseKind::kPut, 0, {2});
  EXPECT_EQ(a, 1u);
  EXPECT_GT(b, a);
  ASSERT_NE(t.Find(b), nullptr);
  EXPECT_EQ(t.Find(b)->kind, LeaseKind::kPut);
  EXPECT_THAT(t.Find(b)->entries, ElementsAre(2));
  EXPECT_EQ(t.Find(b)->deadline_ns, kTimeout);
  EXPECT_EQ(t.live(), 2u);
  EXPECT_EQ(t.Find(999), nullptr);
}

TEST(LeaseTableTest, ExpiresInDeadlineOrderAndKeepsTombstones) {
  LeaseTable t(kTimeout);
  const LeaseId a = AddLease(t, 1, LeaseKind::kRead, 0, {1});
  const LeaseId b = AddLease(t, 1, LeaseKind::kRead, 50, {2});
  std::vector<LeaseId> expired;
  auto record = [&](LeaseId id, Lease&) { expired.push_back(id); };
  EXPECT_EQ(t.ExpireDue(99, record), 0u);
  EXPECT_EQ(t.ExpireDue(100, record), 1u);
  EXPECT_THAT(expired, ElementsAre(a));
  ASSERT_NE(t.Find(a), nullptr);
  EXPECT_TRUE(t.Find(a)->expired);
  EXPECT_EQ(t.Find(a)->deadline_ns, 200);  // tombstone purge time
  EXPECT_EQ(t.live(), 1u);
  EXPECT_EQ(t.tombstones(), 1u);
  EXPECT_EQ(t.ExpireDue(1000, record), 1u);
  EXPECT_THAT(expired, ElementsAre(a, b));
}

TEST(LeaseTableTest, PurgeForgetsTombstonesAfterAnotherTimeout) {
  LeaseTable t(kTimeout);
  const LeaseId a = AddLease(t, 1, LeaseKind::kPut, 0, {1, 2});
  t.ExpireDue(100, [](LeaseId, Lease&) {});
  std::vector<LeaseId> purged;
  t.PurgeDue(199, [&](LeaseId id, Lease&) { purged.push_back(id); });
  EXPECT_TRUE(purged.empty());
  t.PurgeDue(200, [&](LeaseId id, Lease& l) {
    purged.push_back(id);
    EXPECT_THAT(l.entries, ElementsAre(1, 2));
  });
  EXPECT_THAT(purged, ElementsAre(a));
  EXPECT_EQ(t.Find(a), nullptr);
  EXPECT_EQ(t.tombstones(), 0u);
}

TEST(LeaseTableTest, ExpireNowMakesATombstoneOnceAndItsDeadlineIsSkipped) {
  LeaseTable t(kTimeout);
  const LeaseId a = AddLease(t, 1, LeaseKind::kPut, 0, {1});
  int calls = 0;
  EXPECT_TRUE(t.ExpireNow(a, 30, [&](LeaseId, Lease&) { ++calls; }));
  EXPECT_FALSE(t.ExpireNow(a, 40, [&](LeaseId, Lease&) { ++calls; }));  // a tombstone already
  EXPECT_FALSE(t.ExpireNow(999, 40, [&](LeaseId, Lease&) { ++calls; }));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(t.live(), 0u);
  EXPECT_EQ(t.Find(a)->deadline_ns, 130);
  // Its original deadline passes without a second expiry.
  EXPECT_EQ(t.ExpireDue(100, [&](LeaseId, Lease&) { ++calls; }), 0u);
  std::vector<LeaseId> purged;
  t.PurgeDue(129, [&](LeaseId id, Lease&) { purged.push_back(id); });
  EXPECT_TRUE(purged.empty());
  t.PurgeDue(130, [&](LeaseId id, Lease&) { purged.push_back(id); });
  EXPECT_THAT(purged, ElementsAre(a));
}

TEST(LeaseTableTest, ReleasedLeasesNeverExpireOrPurge) {
  LeaseTable t(kTimeout);
  const LeaseId a = AddLease(t, 1, LeaseKind::kRead, 0, {1});
  const LeaseId b = AddLease(t, 1, LeaseKind::kRead, 0, {2});
  t.Erase(a);
  std::vector<LeaseId> seen;
  EXPECT_EQ(t.ExpireDue(100, [&](LeaseId id, Lease&) { seen.push_back(id); }), 1u);
  EXPECT_THAT(seen, ElementsAre(b));
  t.Erase(b);  // released while a tombstone
  t.PurgeDue(1000, [&](LeaseId id, Lease&) { seen.push_back(id); });
  EXPECT_THAT(seen, ElementsAre(b));
  EXPECT_EQ(t.live(), 0u);
  EXPECT_EQ(t.tombstones(), 0u);
}

TEST(LeaseTableTest, LeasesOfOwner) {
  LeaseTable t(kTimeout);
  const LeaseId a = AddLease(t, 7, LeaseKind::kRead, 0, {1});
  AddLease(t, 8, LeaseKind::kRead, 0, {2});
  const LeaseId c = AddLease(t, 7, LeaseKind::kPut, 0, {3});
  t.ExpireDue(100, [](LeaseId, Lease&) {});  // tombstones still belong to their owner
  std::vector<LeaseId> ids;
  t.LeasesOf(7, &ids);
  EXPECT_THAT(ids, UnorderedElementsAre(a, c));
  t.Erase(a);
  ids.clear();
  t.LeasesOf(7, &ids);
  EXPECT_THAT(ids, ElementsAre(c));
  ids.clear();
  t.LeasesOf(9, &ids);
  EXPECT_TRUE(ids.empty());
}

TEST(LeaseTableTest, VectorsAreRecycled) {
  LeaseTable t(kTimeout);
  std::vector<uint32_t> v = t.TakeVector();
  v.assign(100, 1);
  const uint32_t* data = v.data();
  const LeaseId a = t.NextId();
  t.Add(a, 1, LeaseKind::kRead, 0, std::move(v));
  t.Erase(a);
  std::vector<uint32_t> again = t.TakeVector();
  EXPECT_TRUE(again.empty());
  EXPECT_GE(again.capacity(), 100u);
  EXPECT_EQ(again.data(), data);
}

TEST(LeaseTableTest, ManyShortLeasesDoNotAccumulate) {
  LeaseTable t(kTimeout);
  for (int i = 0; i < 100000; ++i) {
    const LeaseId id = AddLease(t, 1, LeaseKind::kRead, 0, {1});
    t.Erase(id);
  }
  EXPECT_EQ(t.live(), 0u);
  // Only stale queue heads remain, and expiry skips them.
  EXPECT_EQ(t.ExpireDue(kTimeout, [](LeaseId, Lease&) { FAIL(); }), 0u);
}

}  // namespace
}  // namespace kvtier::tiers::internal
