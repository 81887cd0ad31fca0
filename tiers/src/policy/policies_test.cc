// The EvictionPolicy contract, checked for every policy by name: victims come from the asked
// class, are evictable and cached; PickVictim does not remove; removed and pinned blocks are
// never victims; ids can be reused. Plus a randomised run against a model of the cached set.
#include "kvtier/tiers/policies.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace kvtier::tiers {
namespace {

auto Any() {
  return [](EntryId) { return true; };
}

std::unique_ptr<EvictionPolicy> Make(std::string_view name) {
  absl::StatusOr<std::unique_ptr<EvictionPolicy>> p = NewPolicy(name, {.capacity_blocks = 64});
  EXPECT_TRUE(p.ok()) << p.status();
  return *std::move(p);
}

class PolicyContractTest : public ::testing::TestWithParam<std::string_view> {};

TEST_P(PolicyContractTest, NameMatches) { EXPECT_EQ(Make(GetParam())->Name(), GetParam()); }

TEST_P(PolicyContractTest, EmptyClassHasNoVictim) {
  auto p = Make(GetParam());
  EXPECT_FALSE(p->PickVictim(0, Any()));
  p->OnInsert(0, 0);
  EXPECT_FALSE(p->PickVictim(1, Any()));
  p->OnRemove(0);
  EXPECT_FALSE(p->PickVictim(0, Any()));
}

TEST_P(PolicyContractTest, PickVictimDoesNotRemove) {
  auto p = Make(GetParam());
  for (EntryId id = 0; id < 8; ++id) p->OnInsert(id, 0);
  const std::optional<EntryId> v = p->PickVictim(0, Any());
  ASSERT_TRUE(v);
  EXPECT_EQ(p->PickVictim(0, Any()), v);
  p->OnRemove(*v);
  const std::optional<EntryId> w = p->PickVictim(0, Any());
  ASSERT_TRUE(w);
  EXPECT_NE(*w, *v);
}

TEST_P(PolicyContractTest, NeverPicksUnevictableBlocks) {
  auto p = Make(GetParam());
  for (EntryId id = 0; id < 10; ++id) p->OnInsert(id, 0);
  for (EntryId id = 0; id < 10; id += 2) p->OnAccess(id);
  std::set<EntryId> pinned = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  auto unpinned = [&](EntryId id) { return !pinned.contains(id); };
  EXPECT_EQ(p->PickVictim(0, unpinned), 9u);
  pinned.insert(9);
  EXPECT_FALSE(p->PickVictim(0, unpinned));
  // Refusals leave every block in place: with the pins gone all ten are still there.
  pinned.clear();
  std::set<EntryId> drained;
  while (std::optional<EntryId> v = p->PickVictim(0, Any())) {
    EXPECT_TRUE(drained.insert(*v).second);
    p->OnRemove(*v);
  }
  EXPECT_EQ(drained.size(), 10u);
}

TEST_P(PolicyContractTest, SizeClassesAreSeparate) {
  auto p = Make(GetParam());
  for (EntryId id = 0; id < 6; ++id) p->OnInsert(id, static_cast<uint32_t>(id % 2));
  for (int round = 0; round < 3; ++round) {
    std::optional<EntryId> odd = p->PickVictim(1, Any());
    ASSERT_TRUE(odd);
    EXPECT_EQ(*odd % 2, 1u);
    p->OnRemove(*odd);
  }
  EXPECT_FALSE(p->PickVictim(1, Any()));
  EXPECT_TRUE(p->PickVictim(0, Any()));
}

TEST_P(PolicyContractTest, IdsCanBeReused) {
  auto p = Make(GetParam());
  p->OnInsert(0, 0);
  p->OnInsert(1, 0);
  p->OnRemove(0);
  p->OnInsert(0, 1);  // same id, another class
  EXPECT_EQ(p->PickVictim(1, Any()), 0u);
  EXPECT_EQ(p->PickVictim(0, Any()), 1u);
}

TEST_P(PolicyContractTest, RemovingUnknownIdsIsHarmless) {
  auto p = Make(GetParam());
  p->OnRemove(42);
  p->OnAccess(42);
  p->OnInsert(1, 0);
  p->OnRemove(1);
  p->OnRemove(1);
  EXPECT_FALSE(p->PickVictim(0, Any()));
}

// A random mix of inserts (with fingerprints and parents, some of another size class, as a
// compressed namespace's chains have), uses, evictions and removals, checked against a model of
// the cached blocks and their parents after every step. A class's victim is of that class.
// prefix-slru must also keep its leaf-first promise: its victim never has a cached child of
// its own class (one of another class cannot make room in this one).
TEST_P(PolicyContractTest, RandomOperationsKeepTheContract) {
  auto p = Make(GetParam());
  const bool leaf_first = GetParam() == "prefix-slru";
  std::mt19937_64 rng(7);
  std::set<EntryId> cached[2];
  std::map<EntryId, EntryId> parent_of;  // cached child -> cached parent
  std::map<EntryId, uint32_t> class_of;
  const auto has_child = [&](EntryId id) {
    return std::any_of(parent_of.begin(), parent_of.end(), [&](const auto& kv) {
      return kv.second == id && class_of[kv.first] == class_of[id];
    });
  };
  const auto forget = [&](EntryId id) {
    parent_of.erase(id);
    std::erase_if(parent_of, [&](const auto& kv) { return kv.second == id; });
  };
  std::vector<EntryId> free_ids;
  EntryId next_id = 0;
  uint64_t next_fp = 1;
  for (int step = 0; step < 20000; ++step) {
    const uint32_t cls = rng() % 2;
    const int op = static_cast<int>(rng() % 10);
    if (op < 4 || cached[cls].size() < 4) {
      EntryId id;
      if (!free_ids.empty()) {
        id = free_ids.back();
        free_ids.pop_back();
      } else {
        id = next_id++;
      }
      BlockInfo info{
          .size_class = cls,
          .fingerprint = (rng() % 3 == 0 && next_fp > 50) ? next_fp - rng() % 50 : next_fp++};
      const uint32_t parent_cls = rng() % 4 == 0 ? 1 - cls : cls;
      if (!cached[parent_cls].empty() && rng() % 2 == 0) {
        info.parent = *cached[parent_cls].rbegin();
        parent_of[id] = *info.parent;
      }
      class_of[id] = cls;
      p->OnInsertBlock(id, info);
      cached[cls].insert(id);
    } else if (op < 7) {
      auto it = cached[cls].begin();
      std::advance(it, rng() % cached[cls].size());
      p->OnAccess(*it);
    } else if (op < 9) {
      const EntryId banned = rng() % (next_id + 1);
      std::optional<EntryId> v = p->PickVictim(cls, [&](EntryId id) { return id != banned; });
      const bool any_candidate =
          std::any_of(cached[cls].begin(), cached[cls].end(),
                      [&](EntryId id) { return id != banned && (!leaf_first || !has_child(id)); });
      ASSERT_EQ(v.has_value(), any_candidate) << "step " << step;
      if (!v) continue;
      ASSERT_TRUE(cached[cls].contains(*v)) << "step " << step;
      ASSERT_NE(*v, banned);
      if (leaf_first) {
        ASSERT_FALSE(has_child(*v)) << "step " << step;
      }
      p->OnRemove(*v);
      cached[cls].erase(*v);
      forget(*v);
      free_ids.push_back(*v);
    } else {
      auto it = cached[cls].begin();
      std::advance(it, rng() % cached[cls].size());
      const EntryId id = *it;
      p->OnRemove(id);
      cached[cls].erase(id);
      forget(id);
      free_ids.push_back(id);
    }
  }
  for (uint32_t cls : {0u, 1u}) {
    while (std::optional<EntryId> v = p->PickVictim(cls, Any())) {
      ASSERT_TRUE(cached[cls].erase(*v));
      if (leaf_first) {
        ASSERT_FALSE(has_child(*v));
      }
      p->OnRemove(*v);
      forget(*v);
    }
    EXPECT_TRUE(cached[cls].empty());
  }
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, PolicyContractTest,
                         ::testing::ValuesIn(PolicyNames().begin(), PolicyNames().end()),
                         [](const ::testing::TestParamInfo<std::string_view>& info) {
                           std::string name(info.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(NewPolicyTest, DefaultComesFirst) { EXPECT_EQ(PolicyNames().front(), kDefaultPolicyName); }

TEST(NewPolicyTest, RejectsUnknownNamesListingTheKnownOnes) {
  absl::StatusOr<std::unique_ptr<EvictionPolicy>> p = NewPolicy("mru");
  ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("prefix-slru"), absl::string_view::npos);
}

TEST(NewPolicyTest, RejectsZeroCapacity) {
  EXPECT_EQ(NewPolicy("s3fifo", {.capacity_blocks = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvtier::tiers
