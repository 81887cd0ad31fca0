// kvtierd's DRAM maintenance thread (dram.reclaim_ahead): while one block size takes slabs from
// another, the daemon reclaims the next slab before a put needs it; with the switch off it
// never does. Either way every block read back has its exact bytes.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "kvtier/client/client.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/daemon_test.h"
#include "tests/testing/seeded_blocks.h"
#include "tests/testing/stats_lookup.h"

namespace kvtier {
namespace {

using client::NamespaceHandle;

constexpr uint64_t kOldBytes = 64 << 10;  // fills the tier first
constexpr uint64_t kNewBytes = 48 << 10;  // then takes its slabs

class DramMaintenanceTest : public testing::DaemonTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    // Small slabs, so that the new size takes many of them.
    const std::string config = (std::filesystem::temp_directory_path() /
                                ("kvtier-maintenance-" + std::to_string(::getpid()) + ".toml"))
                                   .string();
    std::ofstream(config) << "[dram]\ncapacity = \"32MiB\"\nslab_size = \"1MiB\"\nreclaim_ahead = "
                          << (GetParam() ? "true" : "false") << "\n";
    options_.dram_capacity = "32MiB";
    options_.extra_args = {"--config", config};
    StartDaemon();
    std::filesystem::remove(config);
  }

  NamespaceHandle Open(const std::string& model, uint64_t bytes) {
    auto ns = client_->OpenNamespace(testing::TestDescriptor(model, bytes));
    EXPECT_TRUE(ns.ok()) << ns.status();
    return ns.ok() ? *ns : NamespaceHandle{};
  }

  void PutRange(const NamespaceHandle& ns, uint64_t bytes, uint64_t begin, uint64_t end,
                std::chrono::microseconds gap) {
    for (uint64_t i = begin; i < end; ++i) {
      const std::vector<std::byte> block = testing::SeededBytes(i, bytes);
      const BlockKey key = testing::SeededKey(i);
      std::span<const std::byte> span(block);
      auto r = client_->Put(ns, {&key, 1}, {&span, 1});
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(client::IsStored((*r)[0])) << i << ": " << (*r)[0];
      std::this_thread::sleep_for(gap);
    }
  }

  // How many of [begin, end) read back; fails the test on any wrong byte.
  uint64_t ReadBack(const NamespaceHandle& ns, uint64_t bytes, uint64_t begin, uint64_t end) {
    uint64_t found = 0;
    for (uint64_t i = begin; i < end; ++i) {
      std::vector<std::byte> out(bytes);
      const BlockKey key = testing::SeededKey(i);
      std::span<std::byte> dst(out);
      auto r = client_->Get(ns, {&key, 1}, {&dst, 1});
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok() || !(*r)[0].status.ok()) continue;
      EXPECT_TRUE(out == testing::SeededBytes(i, bytes)) << "block " << i << " has other bytes";
      ++found;
    }
    return found;
  }
};

TEST_P(DramMaintenanceTest, AGrowingBlockSizeGetsSlabsAheadOnlyWhenOn) {
  if (IsSkipped()) return;
  const NamespaceHandle old_ns = Open("old-size", kOldBytes);
  const NamespaceHandle new_ns = Open("new-size", kNewBytes);
  ASSERT_NO_FATAL_FAILURE(PutRange(old_ns, kOldBytes, 0, 640, std::chrono::microseconds(0)));
  // Paced as an engine's puts are, with room for the maintenance thread between them.
  ASSERT_NO_FATAL_FAILURE(
      PutRange(new_ns, kNewBytes, 10'000, 10'400, std::chrono::microseconds(300)));
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const proto::TierStats* dram = testing::FindTierStats(*stats, proto::TIER_DRAM);
  ASSERT_NE(dram, nullptr);
  std::printf("slab reclaims %llu, %llu of them ahead of need\n",
              static_cast<unsigned long long>(dram->slab_reclaims()),
              static_cast<unsigned long long>(dram->slab_reclaims_ahead()));
  EXPECT_GT(dram->slab_reclaims(), 10u);
  if (GetParam()) {
    EXPECT_GT(dram->slab_reclaims_ahead(), 0u);
    EXPECT_LE(dram->slab_reclaims_ahead(), dram->slab_reclaims());
  } else {
    EXPECT_EQ(dram->slab_reclaims_ahead(), 0u);
  }
  EXPECT_LE(dram->used_bytes(), dram->capacity_bytes());
  // The newest blocks of the new size are all there; whatever is left of the old, exact.
  EXPECT_EQ(ReadBack(new_ns, kNewBytes, 10'300, 10'400), 100u);
  ReadBack(old_ns, kOldBytes, 0, 640);
}

INSTANTIATE_TEST_SUITE_P(ReclaimAhead, DramMaintenanceTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "On" : "Off";
                         });

}  // namespace
}  // namespace kvtier
