// Damage between runs: bytes flipped on the device and in the RocksDB directory's files. The
// tier must start, count what it rejects, and never return a byte that was not written for the
// key it is read under.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "kvtier/tiers/nvme_tier.h"
#include "tiers/src/nvme/tier_test_util.h"

namespace kvtier::tiers::nvme::testing {
namespace {

namespace fs = std::filesystem;

// Writes blocks 0..n-1 (sizes vary, some unaligned) and returns their bytes.
std::map<uint64_t, std::vector<std::byte>> Fill(NvmeTier& tier, int n) {
  std::map<uint64_t, std::vector<std::byte>> written;
  for (int i = 0; i < n; ++i) {
    const size_t size = 3000 + 7919 * (i % 13);
    EXPECT_TRUE(Put(tier, i, 1, size).ok());
    written[i] = TestPayload(i, 1, size);
  }
  return written;
}

void ExpectMissOrExactly(NvmeTier& tier, const std::map<uint64_t, std::vector<std::byte>>& w,
                         size_t* hits = nullptr) {
  for (const auto& [id, bytes] : w) {
    EXPECT_TRUE(MissOrExactly(tier, id, bytes));
    if (hits != nullptr && Get(tier, id).ok()) ++*hits;
  }
}

TEST(NvmeCorruptionTest, FlippedDeviceBytesAreCountedMissesNeverServed) {
  TierHarness h(4);
  ASSERT_TRUE(h.Open().ok());
  const auto written = Fill(h.tier(), 60);
  const uint64_t used_end = (1 << 20) + 2 * kRegionBytes;  // the records fill ~1.7 regions
  std::mt19937_64 rng(7);
  for (int i = 0; i < 300; ++i) {
    h.medium().FlipByte((1 << 20) + rng() % (used_end - (1 << 20)), 1 << (rng() % 8));
  }
  size_t hits = 0;
  ExpectMissOrExactly(h.tier(), written, &hits);
  NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_GT(s.nvme.checksum_failures, 0u);
  EXPECT_LE(s.nvme.checksum_failures, s.tier.counters.misses);
  EXPECT_LT(hits, written.size());
  // A block that failed once is forgotten, not re-read and re-counted.
  const uint64_t failures = s.nvme.checksum_failures;
  ExpectMissOrExactly(h.tier(), written);
  EXPECT_EQ(h.tier().Snapshot().nvme.checksum_failures, failures);

  // And after a restart (the damaged headers make region checks and scans stop early).
  ASSERT_TRUE(h.Open().ok());
  ExpectMissOrExactly(h.tier(), written);
  h.Close();
  fs::remove_all(h.options().index_path);
  ASSERT_TRUE(h.Open().ok());
  ExpectMissOrExactly(h.tier(), written);
}

TEST(NvmeCorruptionTest, DamagedSuperblockReformats) {
  TierHarness h(4);
  ASSERT_TRUE(h.Open().ok());
  const auto written = Fill(h.tier(), 10);
  h.Close();
  h.medium().FlipByte(20);
  ASSERT_TRUE(h.Open().ok());
  EXPECT_TRUE(h.tier().Snapshot().recovery.formatted);
  EXPECT_EQ(h.tier().Snapshot().tier.blocks, 0u);
  ExpectMissOrExactly(h.tier(), written);
  // The old records are still on the device, but the new format's generations start above
  // theirs, so they can never be mistaken for current ones.
  ASSERT_TRUE(Put(h.tier(), 100, 1, 5000).ok());
  h.Close();
  fs::remove_all(h.options().index_path);
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(*Get(h.tier(), 100), TestPayload(100, 1, 5000));
  ExpectMissOrExactly(h.tier(), written);
}

// Copies `from` to `to` (a directory of plain files).
void CopyDir(const fs::path& from, const fs::path& to) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
}

// One kind of damage to one file of the index directory.
void Damage(const fs::path& dir, std::mt19937_64& rng) {
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(dir)) {
    if (f.is_regular_file() && f.file_size() > 0) files.push_back(f.path());
  }
  ASSERT_FALSE(files.empty());
  const fs::path victim = files[rng() % files.size()];
  const uint64_t size = fs::file_size(victim);
  switch (rng() % 4) {
    case 0:
    case 1: {  // a few flipped bytes
      std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
      for (int i = 0, n = 1 + static_cast<int>(rng() % 8); i < n; ++i) {
        const auto at = static_cast<std::streamoff>(rng() % size);
        f.seekg(at);
        char c = 0;
        f.get(c);
        f.seekp(at);
        f.put(static_cast<char>(c ^ (1 << (rng() % 8))));
      }
      break;
    }
    case 2:  // torn: the file cut short
      fs::resize_file(victim, rng() % size);
      break;
    default:  // lost
      fs::remove(victim);
  }
}

TEST(NvmeCorruptionTest, DamagedIndexFilesNeverServeWrongBytes) {
  TierHarness h(4);
  ASSERT_TRUE(h.Open().ok());
  auto written = Fill(h.tier(), 40);
  const fs::path index = h.options().index_path;
  const fs::path live = h.dir() / "live-copy";      // as a kill -9 leaves it: WAL, no flush
  const fs::path closed = h.dir() / "closed-copy";  // as a clean shutdown leaves it
  CopyDir(index, live);
  h.Close();
  CopyDir(index, closed);
  // Each round starts from the same device too: a restart opens a fresh region, and rounds
  // that wrapped the log would test less and less.
  const std::vector<std::byte> device = h.medium().Read(0, h.medium().size_bytes());

  std::mt19937_64 rng(11);
  int rebuilt = 0;
  size_t hits = 0;
  for (int round = 0; round < 24; ++round) {
    h.medium().Overwrite(0, device);
    CopyDir(round % 2 == 0 ? live : closed, index);
    Damage(index, rng);
    h.options().rebuild_from_device = round % 3 != 2;
    absl::StatusOr<NvmeTier*> tier = h.Open();
    ASSERT_TRUE(tier.ok()) << "round " << round << ": " << tier.status();
    if (h.tier().Snapshot().recovery.index_rebuilt) ++rebuilt;
    ExpectMissOrExactly(h.tier(), written, &hits);
    // The tier keeps working on a damaged-then-repaired index.
    ASSERT_TRUE(Put(h.tier(), 1000 + round, 1, 4000).ok());
    EXPECT_EQ(*Get(h.tier(), 1000 + round), TestPayload(1000 + round, 1, 4000));
    h.Close();
  }
  EXPECT_GT(rebuilt, 0);
  EXPECT_GT(hits, written.size() * 24 / 2);  // most damage costs little: WAL, LOG, rebuilds
}

TEST(NvmeCorruptionTest, IndexAheadOfTheDeviceIsCaughtByGenerations) {
  // The index says region R holds generation g, but the device holds a newer generation there
  // (as after a log tail lost with its reclaim): the region's entries are dropped at startup.
  TierHarness h(4);
  ASSERT_TRUE(h.Open().ok());
  const auto written = Fill(h.tier(), 30);  // regions 0 and 1
  const fs::path saved = h.dir() / "saved";
  h.Close();
  CopyDir(h.options().index_path, saved);
  ASSERT_TRUE(h.Open().ok());
  // Wrap the log so region 0 is reclaimed and rewritten with other blocks.
  for (int i = 100; i < 200; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, 60 << 10).ok());
  h.Close();
  CopyDir(saved, h.options().index_path);  // the old index comes back
  ASSERT_TRUE(h.Open().ok());
  const NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_GT(s.recovery.regions_dropped, 0u);
  EXPECT_GT(s.recovery.blocks_dropped, 0u);
  ExpectMissOrExactly(h.tier(), written);
  // New writes after such a start get generations above everything on the device.
  ASSERT_TRUE(Put(h.tier(), 500, 1, 5000).ok());
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(*Get(h.tier(), 500), TestPayload(500, 1, 5000));
}

}  // namespace
}  // namespace kvtier::tiers::nvme::testing
