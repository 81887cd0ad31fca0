// NvmeIndex over a real RocksDB directory: put/get/delete, listing a region, reopen, damage.
#include "tiers/src/nvme/index.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "tiers/src/nvme/test_util.h"

namespace kvtier::tiers::nvme {
namespace {

using testing::TempDir;
using testing::TestKey;

BlockLocation Loc(uint32_t region, uint32_t offset, uint64_t gen) {
  return BlockLocation{region, offset, 65536 + offset, gen, 0x1234 + offset, 77, 2, 1};
}

std::unique_ptr<NvmeIndex> OpenIndex(const std::string& path,
                                     NvmeIndex::OpenReport* report = nullptr) {
  NvmeIndex::OpenReport local;
  auto index = NvmeIndex::Open(path, 8 << 20, report != nullptr ? report : &local);
  EXPECT_TRUE(index.ok()) << index.status();
  return index.ok() ? std::move(*index) : nullptr;
}

TEST(NvmeIndexTest, PutGetDelete) {
  TempDir dir;
  auto index = OpenIndex(dir / "idx");
  ASSERT_NE(index, nullptr);
  EXPECT_TRUE(absl::IsNotFound(index->GetBlock(1, TestKey(1)).status()));
  NvmeIndex::Batch batch;
  batch.PutBlock(1, TestKey(1), Loc(3, 8192, 5));
  batch.PutBlock(2, TestKey(1), Loc(4, 0, 6));  // same key, other namespace: a different block
  ASSERT_TRUE(index->Commit(batch, true).ok());
  absl::StatusOr<BlockLocation> got = index->GetBlock(1, TestKey(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, Loc(3, 8192, 5));
  EXPECT_EQ(*index->GetBlock(2, TestKey(1)), Loc(4, 0, 6));

  NvmeIndex::Batch del;
  del.DeleteBlock(1, TestKey(1), Loc(3, 8192, 5));
  ASSERT_TRUE(index->Commit(del, true).ok());
  EXPECT_TRUE(absl::IsNotFound(index->GetBlock(1, TestKey(1)).status()));
  size_t listed = 0;
  ASSERT_TRUE(
      index->ForEachInRegion(3, [&](uint32_t, uint32_t, const BlockKey&) { ++listed; }).ok());
  EXPECT_EQ(listed, 0u);
}

TEST(NvmeIndexTest, ListsARegionInOffsetOrder) {
  TempDir dir;
  auto index = OpenIndex(dir / "idx");
  NvmeIndex::Batch batch;
  for (uint32_t i = 0; i < 300; ++i) batch.PutBlock(1, TestKey(i), Loc(i % 3, i * 4096, 1));
  ASSERT_TRUE(index->Commit(batch, false).ok());
  std::vector<uint32_t> offsets;
  ASSERT_TRUE(index
                  ->ForEachInRegion(1,
                                    [&](uint32_t offset, uint32_t ns, const BlockKey& key) {
                                      EXPECT_EQ(ns, 1u);
                                      EXPECT_EQ(key, TestKey(offset / 4096));
                                      offsets.push_back(offset);
                                    })
                  .ok());
  ASSERT_EQ(offsets.size(), 100u);
  EXPECT_TRUE(std::is_sorted(offsets.begin(), offsets.end()));
  // Region 1's neighbours (0 and 2, and 256 = 0x100 whose big-endian prefix differs) stay out.
  batch.Clear();
  batch.PutBlock(1, TestKey(9999), Loc(256, 0, 1));
  ASSERT_TRUE(index->Commit(batch, false).ok());
  size_t in_one = 0;
  ASSERT_TRUE(
      index->ForEachInRegion(1, [&](uint32_t, uint32_t, const BlockKey&) { ++in_one; }).ok());
  EXPECT_EQ(in_one, 100u);
}

TEST(NvmeIndexTest, SurvivesReopen) {
  TempDir dir;
  const IndexIdentity id{42, 1, 1 << 30, 16 << 20, 4096};
  {
    auto index = OpenIndex(dir / "idx");
    NvmeIndex::Batch batch;
    for (uint32_t i = 0; i < 1000; ++i) batch.PutBlock(i % 4, TestKey(i), Loc(i % 7, i * 4096, 9));
    batch.PutRegion(5, 9);
    batch.PutNamespace(3, 262144);
    batch.PutNextGeneration(10);
    batch.PutIdentity(id);
    ASSERT_TRUE(index->Commit(batch, true).ok());
  }  // no Flush: the reopen replays the log
  NvmeIndex::OpenReport report;
  auto index = OpenIndex(dir / "idx", &report);
  EXPECT_FALSE(report.recreated);
  size_t blocks = 0;
  ASSERT_TRUE(index
                  ->ForEachBlock([&](uint32_t ns, const BlockKey& key, const BlockLocation& loc) {
                    ++blocks;
                    EXPECT_EQ(loc.generation, 9u);
                  })
                  .ok());
  EXPECT_EQ(blocks, 1000u);
  std::map<uint32_t, uint64_t> regions;
  ASSERT_TRUE(index->ForEachRegion([&](uint32_t r, uint64_t g) { regions[r] = g; }).ok());
  EXPECT_EQ(regions, (std::map<uint32_t, uint64_t>{{5, 9}}));
  std::map<uint32_t, uint64_t> spaces;
  ASSERT_TRUE(index->ForEachNamespace([&](uint32_t n, uint64_t b) { spaces[n] = b; }).ok());
  EXPECT_EQ(spaces, (std::map<uint32_t, uint64_t>{{3, 262144}}));
  EXPECT_EQ(*index->GetNextGeneration(), 10u);
  EXPECT_EQ(index->GetIdentity()->value(), id);

  ASSERT_TRUE(index->Clear().ok());
  EXPECT_FALSE(index->GetIdentity()->has_value());
  EXPECT_EQ(*index->GetNextGeneration(), 0u);
}

TEST(NvmeIndexTest, AnIndexThatCannotBeOpenedIsRecreatedEmpty) {
  TempDir dir;
  {
    auto index = OpenIndex(dir / "idx");
    NvmeIndex::Batch batch;
    batch.PutBlock(1, TestKey(1), Loc(0, 0, 1));
    ASSERT_TRUE(index->Commit(batch, true).ok());
  }
  // Garbage over the MANIFEST files: RocksDB cannot open this.
  for (const auto& f : std::filesystem::directory_iterator(dir / "idx")) {
    const std::string name = f.path().filename().string();
    if (name.rfind("MANIFEST", 0) == 0 || name == "CURRENT") {
      std::ofstream(f.path(), std::ios::binary | std::ios::trunc) << "not a manifest";
    }
  }
  NvmeIndex::OpenReport report;
  auto index = OpenIndex(dir / "idx", &report);
  ASSERT_NE(index, nullptr);
  EXPECT_TRUE(report.recreated);
  EXPECT_FALSE(report.reason.empty());
  EXPECT_TRUE(absl::IsNotFound(index->GetBlock(1, TestKey(1)).status()));
}

TEST(NvmeIndexTest, AnIndexInUseIsNotDestroyed) {
  TempDir dir;
  auto first = OpenIndex(dir / "idx");
  NvmeIndex::Batch batch;
  batch.PutBlock(1, TestKey(1), Loc(0, 0, 1));
  ASSERT_TRUE(first->Commit(batch, true).ok());
  NvmeIndex::OpenReport report;
  auto second = NvmeIndex::Open(dir / "idx", 1 << 20, &report);
  EXPECT_TRUE(absl::IsUnavailable(second.status())) << second.status();
  EXPECT_FALSE(report.recreated);
  EXPECT_TRUE(first->GetBlock(1, TestKey(1)).ok());
}

}  // namespace
}  // namespace kvtier::tiers::nvme
