// The NVMe tier inside the real kvtierd: demotion of DRAM evictions, promotion on get, lookup
// tier reports, write-through, a warm restart after SIGTERM, kill -9 with write-through, removes
// that reach flash, damaged files between runs, and clear errors for bad devices.
//
// The crash harness (CrashHarness) runs mixed put/get/remove load from several clients, kills
// kvtierd with SIGKILL at random moments, restarts it and checks every key against an oracle:
// a read returns a miss or exactly the bytes of the last acknowledged put of that key (or of
// the one put in flight when the daemon died) -- never anything else. KVTIER_CRASH_ITERATIONS
// (default 3) sets how many kills; the long run is e.g. KVTIER_CRASH_ITERATIONS=200.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "kvtier/client/client.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/daemon_test.h"
#include "tests/testing/seeded_blocks.h"
#include "tests/testing/stats_lookup.h"

namespace kvtier {
namespace {

using client::Client;
using client::GetResult;
using client::IsStored;
using client::NamespaceHandle;
using testing::DaemonOptions;
using testing::DaemonProcess;

constexpr uint64_t kBlockBytes = 256 << 10;

// Deterministic bytes of (key index, version): any mix-up shows.
std::vector<std::byte> Content(uint64_t key, uint64_t version, uint64_t length = kBlockBytes) {
  return testing::SeededBytes(key * 1000003 + version, length);
}

BlockKey Key(uint64_t i) { return testing::SeededKey(i ^ 0x5eed); }

NamespaceDescriptor Descriptor() {
  return testing::TestDescriptor("nvme-test", kBlockBytes, "bf16", "test");
}

std::vector<std::string> NvmeArgs(std::vector<std::string> more = {}) {
  std::vector<std::string> args = {"--nvme-path", "{data_dir}/nvme.img", "--nvme-capacity",
                                   "128MiB",      "--lease-timeout",     "10000"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

class NvmeDaemonTest : public testing::DaemonTest {
 protected:
  void Start(const std::string& dram, std::vector<std::string> args) {
    options_.dram_capacity = dram;
    options_.extra_args = std::move(args);
    StartDaemon();
  }

  void Restart() { RestartDaemon(); }

  void OnConnect() override {
    auto ns = client_->OpenNamespace(Descriptor());
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
  }

  void PutRange(uint64_t begin, uint64_t end, uint64_t version = 0) {
    for (uint64_t i = begin; i < end; ++i) {
      const std::vector<std::byte> bytes = Content(i, version);
      const BlockKey key = Key(i);
      std::span<const std::byte> block(bytes);
      auto r = client_->Put(ns_, {&key, 1}, {&block, 1});
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(IsStored((*r)[0])) << i << ": " << (*r)[0];
    }
  }

  // Gets one block: nullopt on a miss; fails the test on anything else but a hit.
  std::optional<std::vector<std::byte>> GetOne(uint64_t i, proto::Tier* tier = nullptr) {
    std::vector<std::byte> out(kBlockBytes);
    const BlockKey key = Key(i);
    std::span<std::byte> dst(out);
    auto r = client_->Get(ns_, {&key, 1}, {&dst, 1});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || absl::IsNotFound((*r)[0].status)) return std::nullopt;
    EXPECT_TRUE((*r)[0].status.ok()) << (*r)[0].status;
    if (!(*r)[0].status.ok()) return std::nullopt;
    if (tier != nullptr) *tier = (*r)[0].tier;
    out.resize((*r)[0].length);
    return out;
  }

  proto::TierStats Tier(proto::Tier which) {
    auto s = client_->Stats();
    EXPECT_TRUE(s.ok()) << s.status();
    const proto::TierStats* t = s.ok() ? testing::FindTierStats(*s, which) : nullptr;
    EXPECT_NE(t, nullptr) << "no stats for tier " << which;
    return t != nullptr ? *t : proto::TierStats();
  }

  // Waits until staged demotions are written.
  void WaitForDemotions() {
    for (int i = 0; i < 500; ++i) {
      if (Tier(proto::TIER_NVME).nvme().demotion_queue_bytes() == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "demotions did not drain";
  }

  NamespaceHandle ns_;
};

TEST_F(NvmeDaemonTest, EvictionsDemoteAndGetsPromoteWithTheRightBytes) {
  // 16 MiB of DRAM holds 64 blocks of 256 KiB; 160 blocks go through it.
  Start("16MiB", NvmeArgs({"--nvme-admission", "all"}));
  PutRange(0, 160);
  WaitForDemotions();
  const proto::TierStats nvme = Tier(proto::TIER_NVME);
  EXPECT_GE(nvme.nvme().demotions(), 90u);
  EXPECT_EQ(nvme.nvme().admission_policy(), "all");
  EXPECT_GT(nvme.nvme().flash_bytes_written(), 90 * kBlockBytes);
  EXPECT_GE(nvme.blocks(), 90u);

  // Lookup sees the whole prefix across both tiers, oldest blocks on NVMe.
  std::vector<BlockKey> keys;
  for (uint64_t i = 0; i < 160; ++i) keys.push_back(Key(i));
  auto lookup = client_->Lookup(ns_, keys);
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->prefix_blocks, 160u);
  EXPECT_EQ(lookup->tiers[0], proto::TIER_NVME);
  EXPECT_EQ(lookup->tiers[159], proto::TIER_DRAM);

  // Every block comes back with its bytes; the first ones from NVMe.
  for (uint64_t i = 0; i < 160; ++i) {
    proto::Tier tier = proto::TIER_NONE;
    auto got = GetOne(i, &tier);
    ASSERT_TRUE(got.has_value()) << i;
    ASSERT_TRUE(*got == Content(i, 0)) << "wrong bytes for block " << i;
    if (i < 20) EXPECT_EQ(tier, proto::TIER_NVME) << i;
  }
  const proto::TierStats after = Tier(proto::TIER_NVME);
  EXPECT_GE(after.nvme().promotions(), 20u);
  EXPECT_EQ(after.nvme().checksum_failures(), 0u);
  // A promoted block is in DRAM now.
  proto::Tier tier = proto::TIER_NONE;
  ASSERT_TRUE(GetOne(159, &tier).has_value());
  EXPECT_EQ(tier, proto::TIER_DRAM);
  // A batched get mixing both tiers, in one request.
  std::vector<std::vector<std::byte>> outs(8, std::vector<std::byte>(kBlockBytes));
  std::vector<std::span<std::byte>> dsts;
  std::vector<BlockKey> batch;
  for (uint64_t i = 0; i < 8; ++i) {
    batch.push_back(Key(i * 20));
    dsts.emplace_back(outs[i]);
  }
  auto r = client_->Get(ns_, batch, dsts);
  ASSERT_TRUE(r.ok()) << r.status();
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE((*r)[i].status.ok()) << i << " " << (*r)[i].status;
    EXPECT_TRUE(outs[i] == Content(i * 20, 0)) << i;
  }
}

TEST_F(NvmeDaemonTest, DefaultAdmissionWritesOnlyBlocksThatWereRead) {
  // admission hits:1; LRU, so that the blocks read once are evicted too (prefix-slru would
  // keep them: they were reused).
  Start("16MiB", NvmeArgs({"--eviction-policy", "lru"}));
  PutRange(0, 10);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(GetOne(i).has_value());
  PutRange(10, 160);  // evicts everything above, read or not
  WaitForDemotions();
  const proto::TierStats nvme = Tier(proto::TIER_NVME);
  EXPECT_EQ(nvme.nvme().admission_policy(), "hits:1");
  EXPECT_GE(nvme.nvme().admission_rejections(), 50u);
  EXPECT_GE(nvme.nvme().demotions(), 10u);
  for (uint64_t i = 0; i < 10; ++i) {
    proto::Tier tier = proto::TIER_NONE;
    auto got = GetOne(i, &tier);
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_TRUE(*got == Content(i, 0));
    EXPECT_EQ(tier, proto::TIER_NVME);
  }
  // Never read, evicted: gone.
  EXPECT_FALSE(GetOne(10).has_value());
}

TEST_F(NvmeDaemonTest, CleanShutdownSavesDramAndRestartComesBackWarm) {
  Start("64MiB", NvmeArgs());
  PutRange(0, 40);
  auto stopped = daemon_->Stop(SIGTERM, std::chrono::seconds(60));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << *stopped;
  Restart();
  const proto::TierStats nvme = Tier(proto::TIER_NVME);
  EXPECT_EQ(nvme.nvme().blocks_recovered(), 40u);
  EXPECT_EQ(nvme.blocks(), 40u);
  // Same namespace id as before the restart, and the blocks are found under it.
  std::vector<BlockKey> keys;
  for (uint64_t i = 0; i < 40; ++i) keys.push_back(Key(i));
  auto lookup = client_->Lookup(ns_, keys);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix_blocks, 40u);
  for (proto::Tier t : lookup->tiers) EXPECT_EQ(t, proto::TIER_NVME);
  for (uint64_t i = 0; i < 40; ++i) {
    auto got = GetOne(i);
    ASSERT_TRUE(got.has_value()) << i;
    ASSERT_TRUE(*got == Content(i, 0)) << i;
  }
  // A second namespace opened after the restart gets a new id, not the old one's.
  NamespaceDescriptor other = Descriptor();
  other.model_id = "another";
  auto ns2 = client_->OpenNamespace(other);
  ASSERT_TRUE(ns2.ok());
  EXPECT_NE(ns2->id, ns_.id);
}

TEST_F(NvmeDaemonTest, WriteThroughBlocksSurviveKill9) {
  Start("64MiB", NvmeArgs({"--nvme-write-through"}));
  PutRange(0, 30);
  EXPECT_EQ(Tier(proto::TIER_NVME).nvme().write_throughs(), 30u);
  auto killed = daemon_->Stop(SIGKILL);
  ASSERT_TRUE(killed.ok());
  Restart();
  for (uint64_t i = 0; i < 30; ++i) {
    auto got = GetOne(i);
    ASSERT_TRUE(got.has_value()) << i;
    ASSERT_TRUE(*got == Content(i, 0)) << i;
  }
  // Blocks on NVMe already (promoted, written through) are not written again when evicted.
  PutRange(100, 400);
  WaitForDemotions();
  const proto::TierStats nvme = Tier(proto::TIER_NVME);
  EXPECT_GT(Tier(proto::TIER_DRAM).counters().evictions(), 0u);
  EXPECT_EQ(nvme.nvme().demotions(), 0u);
  EXPECT_EQ(nvme.nvme().admission_rejections(), 0u);
  EXPECT_EQ(nvme.nvme().write_throughs(), 300u);
}

// A write-through put that finds the device full (every region holds pinned blocks) fails
// with RESOURCE_EXHAUSTED, stores nothing, and the daemon goes on serving; unpinning makes room.
TEST_F(NvmeDaemonTest, WriteThroughToAFullDeviceFailsThePutAndKeepsServing) {
  Start("64MiB", {"--nvme-path", "{data_dir}/nvme.img", "--nvme-capacity", "48MiB",
                  "--nvme-write-through", "--lease-timeout", "10000"});
  uint64_t stored = 0;
  absl::Status refused;
  for (uint64_t i = 0; i < 400 && refused.ok(); ++i) {
    const std::vector<std::byte> bytes = Content(i, 0);
    const BlockKey key = Key(i);
    std::span<const std::byte> block(bytes);
    auto r = client_->Put(ns_, {&key, 1}, {&block, 1});
    ASSERT_TRUE(r.ok()) << r.status();
    if (!(*r)[0].ok()) {
      refused = (*r)[0];
      break;
    }
    auto pinned = client_->Pin(ns_, {&key, 1}, true);
    ASSERT_TRUE(pinned.ok() && (*pinned)[0].ok());
    ++stored;
  }
  ASSERT_FALSE(refused.ok()) << "48 MiB of flash took " << stored << " pinned 256 KiB blocks";
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_LT(stored, 48u * 4);
  // The refused block was not stored anywhere; the others read back exactly.
  EXPECT_FALSE(GetOne(stored).has_value());
  for (uint64_t i = 0; i < stored; ++i) {
    auto got = GetOne(i);
    ASSERT_TRUE(got.has_value()) << i;
    ASSERT_TRUE(*got == Content(i, 0)) << i;
  }
  auto health = client_->Health();
  ASSERT_TRUE(health.ok() && health->serving());
  // Unpinned, the oldest regions can be evicted again, and puts succeed.
  for (uint64_t i = 0; i < stored; ++i) {
    const BlockKey key = Key(i);
    ASSERT_TRUE(client_->Pin(ns_, {&key, 1}, false).ok());
  }
  PutRange(1000, 1040);
  EXPECT_EQ(*GetOne(1039), Content(1039, 0));
}

TEST_F(NvmeDaemonTest, RemoveReachesFlashAndStaysRemovedAcrossRestarts) {
  Start("16MiB", NvmeArgs({"--nvme-admission", "all"}));
  PutRange(0, 120);
  WaitForDemotions();
  std::vector<BlockKey> keys = {Key(0), Key(1), Key(119)};
  auto removed = client_->Remove(ns_, keys);
  ASSERT_TRUE(removed.ok());
  for (const absl::Status& s : *removed) EXPECT_TRUE(s.ok()) << s;
  EXPECT_FALSE(GetOne(0).has_value());
  EXPECT_FALSE(GetOne(119).has_value());
  // Put again with other bytes: the new bytes, never the old.
  PutRange(0, 1, /*version=*/7);
  auto got = GetOne(0);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == Content(0, 7));
  ASSERT_TRUE(daemon_->Stop(SIGTERM, std::chrono::seconds(60)).ok());
  Restart();
  EXPECT_FALSE(GetOne(1).has_value());
  EXPECT_FALSE(GetOne(119).has_value());
  got = GetOne(0);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == Content(0, 7));
  got = GetOne(2);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == Content(2, 0));
}

TEST_F(NvmeDaemonTest, PrefetchPromotesAheadOfTheGetAndIsBounded) {
  Start("16MiB", NvmeArgs({"--nvme-admission", "all", "--eviction-policy", "lru"}));
  PutRange(0, 100);  // 0..35 or so end up on NVMe only
  WaitForDemotions();
  std::vector<BlockKey> keys;
  for (uint64_t i = 0; i < 8; ++i) keys.push_back(Key(i));
  keys.push_back(Key(99));   // in DRAM
  keys.push_back(Key(500));  // nowhere
  auto hint = client_->Prefetch(ns_, keys);
  ASSERT_TRUE(hint.ok()) << hint.status();
  EXPECT_EQ(hint->queued, 8u);
  EXPECT_EQ(hint->in_dram, 1u);
  EXPECT_EQ(hint->not_cached, 1u);
  EXPECT_EQ(hint->dropped, 0u);
  // The promotion finishes in the background; then the get is served from DRAM.
  for (int i = 0; i < 500 && Tier(proto::TIER_NVME).nvme().prefetch_promoted() < 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Tier(proto::TIER_NVME).nvme().prefetch_promoted(), 8u);
  for (uint64_t i = 0; i < 8; ++i) {
    proto::Tier tier = proto::TIER_NONE;
    auto got = GetOne(i, &tier);
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_TRUE(*got == Content(i, 0)) << i;
    EXPECT_EQ(tier, proto::TIER_DRAM) << i;
  }
}

TEST_F(NvmeDaemonTest, APrefetchHintKeepsABlockInDram) {
  // 16 MiB of DRAM holds 64 blocks; LRU would evict block 0 first.
  Start("16MiB", NvmeArgs({"--nvme-admission", "all", "--eviction-policy", "lru"}));
  PutRange(0, 60);
  std::vector<BlockKey> hinted = {Key(0)};
  auto hint = client_->Prefetch(ns_, hinted);
  ASSERT_TRUE(hint.ok()) << hint.status();
  EXPECT_EQ(hint->in_dram, 1u);
  PutRange(60, 100);  // 36 or more evictions, the coldest first
  WaitForDemotions();
  proto::Tier tier = proto::TIER_NONE;
  auto got = GetOne(0, &tier);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == Content(0, 0));
  EXPECT_EQ(tier, proto::TIER_DRAM) << "the hinted block was evicted";
  got = GetOne(1, &tier);  // put after 0, not hinted: demoted
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == Content(1, 0));
  EXPECT_EQ(tier, proto::TIER_NVME);
}

TEST_F(NvmeDaemonTest, PrefetchBeyondTheBoundIsDropped) {
  // At most 4 prefetched keys in flight.
  const std::string config = "/tmp/kvtier-prefetch-bound.toml";
  { std::ofstream(config) << "[nvme]\nprefetch_max_keys = 4\n"; }
  Start("16MiB",
        NvmeArgs({"--nvme-admission", "all", "--eviction-policy", "lru", "--config", config}));
  PutRange(0, 100);
  WaitForDemotions();
  std::vector<BlockKey> keys;
  for (uint64_t i = 0; i < 20; ++i) keys.push_back(Key(i));
  auto hint = client_->Prefetch(ns_, keys);
  ASSERT_TRUE(hint.ok()) << hint.status();
  EXPECT_LE(hint->queued, 4u);
  EXPECT_GE(hint->dropped, 16u);
  EXPECT_EQ(hint->queued + hint->dropped, 20u);
  EXPECT_GE(Tier(proto::TIER_NVME).nvme().prefetch_dropped(), 16u);
  std::filesystem::remove(config);
  // Dropped hints change nothing: every block still reads back right.
  for (uint64_t i = 0; i < 20; ++i) {
    auto got = GetOne(i);
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_TRUE(*got == Content(i, 0)) << i;
  }
}

TEST_F(NvmeDaemonTest, PrefetchUnderConcurrencyNeverChangesWhatGetsReturn) {
  Start("16MiB", NvmeArgs({"--nvme-admission", "all"}));
  constexpr uint64_t kKeys = 150;  // more than DRAM holds: blocks keep moving between tiers
  PutRange(0, kKeys);
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0}, misses{0}, gets{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto c = Client::Connect(daemon_->unix_uri(), {});
      ASSERT_TRUE(c.ok());
      auto ns = (*c)->OpenNamespace(Descriptor());
      ASSERT_TRUE(ns.ok());
      std::mt19937_64 rng(t);
      std::vector<std::byte> out(kBlockBytes);
      while (!stop.load()) {
        std::vector<BlockKey> keys;
        const uint64_t first = rng() % kKeys;
        for (uint64_t k = 0; k < 6; ++k) keys.push_back(Key((first + k) % kKeys));
        if (t % 2 == 0) {  // hinters: ahead of the readers, as an engine's scheduler would be
          ASSERT_TRUE((*c)->Prefetch(*ns, keys).ok());
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        for (uint64_t k = 0; k < 6; ++k) {
          const uint64_t i = (first + k) % kKeys;
          std::span<std::byte> dst(out);
          auto r = (*c)->Get(*ns, {&keys[k], 1}, {&dst, 1});
          ASSERT_TRUE(r.ok()) << r.status();
          gets.fetch_add(1);
          if (!(*r)[0].status.ok()) {
            misses.fetch_add(1);
            ADD_FAILURE() << "block " << i << " missed: " << (*r)[0].status;
            continue;
          }
          if (!(out == Content(i, 0))) wrong.fetch_add(1);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(gets.load(), 20);
  // Every block is in one tier or the other: nothing is lost by racing promotions.
  EXPECT_EQ(misses.load(), 0) << Tier(proto::TIER_NVME).DebugString();
  EXPECT_GT(Tier(proto::TIER_NVME).nvme().prefetch_promoted(), 0u);
}

TEST_F(NvmeDaemonTest, PinnedBlocksStayInDramAndSurviveOnNvme) {
  Start("16MiB", NvmeArgs({"--nvme-admission", "all", "--eviction-policy", "lru"}));
  PutRange(0, 4);
  std::vector<BlockKey> pinned = {Key(0), Key(1), Key(2)};
  auto r = client_->Pin(ns_, pinned, true);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const absl::Status& s : *r) EXPECT_TRUE(s.ok()) << s;
  auto missing = client_->Pin(ns_, std::vector<BlockKey>{Key(999)}, true);
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(absl::IsNotFound((*missing)[0]));
  PutRange(4, 200);  // three times what DRAM holds
  WaitForDemotions();
  // The pinned ones never left DRAM; the unpinned block 3 did.
  for (uint64_t i = 0; i < 3; ++i) {
    proto::Tier tier = proto::TIER_NONE;
    auto got = GetOne(i, &tier);
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_TRUE(*got == Content(i, 0));
    EXPECT_EQ(tier, proto::TIER_DRAM) << i;
  }
  proto::Tier tier = proto::TIER_NONE;
  ASSERT_TRUE(GetOne(3, &tier).has_value());
  EXPECT_EQ(tier, proto::TIER_NVME);
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->namespaces(0).pinned_blocks(), 3u);
  // Pinning a block that is only on NVMe pins it there (it survives region eviction).
  auto on_nvme = client_->Pin(ns_, std::vector<BlockKey>{Key(5)}, true);
  ASSERT_TRUE(on_nvme.ok());
  EXPECT_TRUE((*on_nvme)[0].ok()) << (*on_nvme)[0];
  // Unpinned, they are ordinary blocks again and make way.
  ASSERT_TRUE(client_->Pin(ns_, pinned, false).ok());
  PutRange(200, 300);
  WaitForDemotions();
  ASSERT_TRUE(GetOne(0, &tier).has_value());
  EXPECT_EQ(tier, proto::TIER_NVME);
  EXPECT_EQ(client_->Stats()->namespaces(0).pinned_blocks(), 0u);
}

// Flips bytes in `path` at `count` random offsets past `skip`.
void Damage(const std::filesystem::path& path, uint64_t skip, int count, uint64_t seed) {
  const uint64_t size = std::filesystem::file_size(path);
  if (size <= skip) return;
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < count; ++i) {
    const uint64_t at = skip + rng() % (size - skip);
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(at));
    f.write(&c, 1);
  }
}

TEST_F(NvmeDaemonTest, DamagedDeviceAndIndexGiveMissesNeverWrongBytes) {
  Start("64MiB", NvmeArgs());
  PutRange(0, 60);
  ASSERT_TRUE(daemon_->Stop(SIGTERM, std::chrono::seconds(60)).ok());
  const std::filesystem::path dir = daemon_->data_dir();
  // The device: 400 flipped bytes in the records (past the superblock's first 64 KiB).
  Damage(dir / "nvme.img", 64 << 10, 400, 1);
  Restart();
  int hits = 0;
  for (uint64_t i = 0; i < 60; ++i) {
    auto got = GetOne(i);
    if (!got.has_value()) continue;
    ASSERT_TRUE(*got == Content(i, 0)) << "wrong bytes served for block " << i;
    ++hits;
  }
  const proto::TierStats nvme = Tier(proto::TIER_NVME);
  EXPECT_GT(nvme.nvme().checksum_failures(), 0u);
  EXPECT_LT(hits, 60);
  // The index: damage every file of the RocksDB directory.
  ASSERT_TRUE(daemon_->Stop(SIGTERM, std::chrono::seconds(60)).ok());
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "nvme-index")) {
    if (!entry.is_regular_file()) continue;
    Damage(entry.path(), 0, 50, 2 + files++);
  }
  ASSERT_GT(files, 0);
  Restart();  // must start: the index is rebuilt from the device (or empty), logged
  for (uint64_t i = 0; i < 60; ++i) {
    auto got = GetOne(i);
    if (got.has_value()) ASSERT_TRUE(*got == Content(i, 0)) << "wrong bytes for " << i;
  }
  // And it still serves new blocks.
  PutRange(200, 210);
  for (uint64_t i = 200; i < 210; ++i) ASSERT_TRUE(GetOne(i).has_value());
}

// Runs kvtierd with `args` expecting it to refuse to start; returns its stderr.
std::string StartupError(const std::vector<std::string>& args, int* exit_code) {
  char tmpl[] = "/tmp/kvtier-nvme-err-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
  const std::string dir = tmpl;
  const std::string err = dir + "/stderr";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    std::vector<std::string> all = {DaemonProcess::BinaryPath(), "--data-dir", dir, "--socket",
                                    dir + "/s.sock"};
    for (std::string a : args) {
      if (size_t at = a.find("{dir}"); at != std::string::npos) a.replace(at, 5, dir);
      all.push_back(a);
    }
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove_all(dir);
  return text;
}

TEST(NvmeDaemonStartup, BadDevicesFailWithClearErrors) {
  if (!std::filesystem::exists(DaemonProcess::BinaryPath())) GTEST_SKIP() << "no kvtierd";
  int code = 0;
  std::string err = StartupError(
      {"--nvme-path", "/nonexistent-dir/x/nvme.img", "--nvme-capacity", "64MiB"}, &code);
  EXPECT_NE(code, 0);
  EXPECT_NE(err.find("/nonexistent-dir/x/nvme.img"), std::string::npos) << err;

  // An existing file of another size is refused, never truncated.
  char tmpl[] = "/tmp/kvtier-nvme-size-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string file = std::string(tmpl) + "/small.img";
  { std::ofstream(file) << std::string(1 << 20, 'x'); }
  err = StartupError({"--nvme-path", file, "--nvme-capacity", "64MiB"}, &code);
  EXPECT_NE(code, 0);
  EXPECT_NE(err.find(file), std::string::npos) << err;
  EXPECT_EQ(std::filesystem::file_size(file), 1u << 20);
  std::filesystem::remove_all(tmpl);

  err = StartupError(
      {"--nvme-path", "{dir}/n.img", "--nvme-capacity", "64MiB", "--nvme-admission", "sometimes"},
      &code);
  EXPECT_EQ(code, 2);
  EXPECT_NE(err.find("hits:N"), std::string::npos) << err;
  err = StartupError({"--nvme-path", "{dir}/n.img", "--nvme-capacity", "1MiB"}, &code);
  EXPECT_EQ(code, 2);
  EXPECT_NE(err.find("two regions"), std::string::npos) << err;
}

// --- the crash harness ------------------------------------------------------------------------

int CrashIterations() {
  const char* env = std::getenv("KVTIER_CRASH_ITERATIONS");
  return env != nullptr ? std::max(1, std::atoi(env)) : 3;
}

// What a key may read as: `acked` (version, or -1 for absent) and, while an operation on it is
// in flight, `in_flight` too.
struct KeyState {
  int64_t acked = -1;
  int64_t in_flight = -2;  // -2: none
};

class NvmeCrashTest : public NvmeDaemonTest,
                      public ::testing::WithParamInterface<std::vector<std::string>> {};

// Reclaims of two regions at a time, so that the commit thread reclaims ahead of the writer
// (the default is one at a time on a tier of 8 regions).
constexpr char kReclaimAheadConfig[] = "/tmp/kvtier-nvme-crash-reclaim-ahead.toml";

// Both I/O engines, write-through, and regions reclaimed ahead, under the same oracle.
INSTANTIATE_TEST_SUITE_P(Engines, NvmeCrashTest,
                         ::testing::Values(std::vector<std::string>{"--nvme-engine", "auto"},
                                           std::vector<std::string>{"--nvme-engine", "thread_pool"},
                                           std::vector<std::string>{"--nvme-write-through"},
                                           std::vector<std::string>{"--config",
                                                                    kReclaimAheadConfig}));

TEST_P(NvmeCrashTest, KillNineUnderLoadNeverServesWrongBytes) {
  constexpr int kThreads = 3;
  constexpr uint64_t kKeysPerThread = 60;
  { std::ofstream(kReclaimAheadConfig) << "[nvme]\nreclaim_batch = 2\n"; }
  std::vector<std::string> args = {"--nvme-admission", "all"};
  args.insert(args.end(), GetParam().begin(), GetParam().end());
  Start("16MiB", NvmeArgs(args));
  std::vector<KeyState> state(kThreads * kKeysPerThread);
  std::vector<int64_t> next_version(state.size(), 0);
  std::mt19937_64 rng(42);
  uint64_t checked_hits = 0, region_evictions = 0, reclaimed_ahead = 0;

  for (int iteration = 0; iteration < CrashIterations(); ++iteration) {
    std::atomic<bool> stop{false};
    std::atomic<int> violations{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, t] {
        auto c = Client::Connect(daemon_->unix_uri(), {});
        if (!c.ok()) return;
        auto ns = (*c)->OpenNamespace(Descriptor());
        if (!ns.ok()) return;
        std::mt19937_64 r(rng() + t);
        std::vector<std::byte> out(kBlockBytes);
        while (!stop.load()) {
          const uint64_t i = t * kKeysPerThread + r() % kKeysPerThread;
          KeyState& s = state[i];
          const BlockKey key = Key(i);
          const int op = static_cast<int>(r() % 3);
          if (op == 0 && s.acked < 0) {  // put a new version
            const int64_t v = next_version[i]++;
            const std::vector<std::byte> bytes = Content(i, v);
            std::span<const std::byte> block(bytes);
            s.in_flight = v;
            auto res = (*c)->Put(*ns, {&key, 1}, {&block, 1});
            if (!res.ok()) return;  // the daemon died: in_flight stays
            if ((*res)[0].ok()) s.acked = v;
            s.in_flight = -2;
          } else if (op == 1 && s.acked >= 0) {  // remove
            s.in_flight = -1;
            auto res = (*c)->Remove(*ns, {&key, 1});
            if (!res.ok()) return;
            s.acked = -1;
            s.in_flight = -2;
          } else {  // get: must be the acknowledged version, or a miss
            std::span<std::byte> dst(out);
            auto res = (*c)->Get(*ns, {&key, 1}, {&dst, 1});
            if (!res.ok()) return;
            if ((*res)[0].status.ok() &&
                (s.acked < 0 || !std::equal(out.begin(), out.end(), Content(i, s.acked).begin()))) {
              violations.fetch_add(1);
            }
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 800));
    if (auto stats = client_->Stats(); stats.ok()) {  // counters start over with each daemon
      const proto::NvmeStats& n = testing::FindTierStats(*stats, proto::TIER_NVME)->nvme();
      region_evictions += n.region_evictions();
      reclaimed_ahead += n.reclaimed_ahead();
    }
    ASSERT_TRUE(daemon_->Stop(SIGKILL).ok());
    stop = true;
    for (auto& w : workers) w.join();
    EXPECT_EQ(violations.load(), 0) << "a live get returned bytes other than the acked put's";

    Restart();
    for (uint64_t i = 0; i < state.size(); ++i) {
      KeyState& s = state[i];
      auto got = GetOne(i);
      if (got.has_value()) {
        const bool acked = s.acked >= 0 && *got == Content(i, s.acked);
        const bool in_flight = s.in_flight >= 0 && *got == Content(i, s.in_flight);
        ASSERT_TRUE(acked || in_flight)
            << "iteration " << iteration << ": key " << i << " read bytes of neither its "
            << "acknowledged version " << s.acked << " nor its in-flight one " << s.in_flight;
        s.acked = acked ? s.acked : s.in_flight;
        ++checked_hits;
      } else if (s.acked >= 0 || s.in_flight >= 0) {
        // Lost with DRAM (a cache may lose entries): make the oracle agree, remove for real.
        auto res = client_->Remove(ns_, std::vector<BlockKey>{Key(i)});
        ASSERT_TRUE(res.ok());
        s.acked = -1;
      }
      s.in_flight = -2;
    }
  }
  // Something must have come back through NVMe, or the harness tested nothing.
  EXPECT_GT(checked_hits, 0u);
  // With reclaim_batch = 2, regions are reclaimed ahead whenever any are reclaimed at all.
  if (GetParam().front() == "--config" && region_evictions > 0) EXPECT_GT(reclaimed_ahead, 0u);
  std::cout << region_evictions << " region evictions (" << reclaimed_ahead << " ahead)\n";
}

}  // namespace
}  // namespace kvtier
