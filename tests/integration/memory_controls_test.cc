// Memory controls through the real kvtierd and the wire: put TTLs and namespace default TTLs
// (in DRAM and carried to NVMe by demotion), per-namespace DRAM and NVMe quotas and priorities
// set with the client and with `kvtierctl limits`, and the stats that show them.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "absl/strings/str_split.h"
#include "kvtier/client/client.h"
#include "nlohmann/json.hpp"
#include "tests/testing/daemon_process.h"
#include "tests/testing/daemon_test.h"
#include "tests/testing/seeded_blocks.h"
#include "tests/testing/stats_lookup.h"

namespace kvtier {
namespace {

using client::Client;
using client::IsStored;
using client::NamespaceHandle;
using testing::DaemonOptions;
using testing::DaemonProcess;

constexpr uint64_t kBlockBytes = 256 << 10;

std::vector<std::byte> Content(uint64_t key) {
  return testing::SeededBytes(key * 7919 + 1, kBlockBytes);
}

BlockKey Key(uint64_t i) { return testing::SeededKey(i ^ 0xc0ffee); }

NamespaceDescriptor Descriptor(const std::string& model) {
  return testing::TestDescriptor(model, kBlockBytes);
}

// Runs kvtierctl; returns its exit status. `out`, if given, gets its standard output.
int RunCtl(const std::string& args, std::string* out = nullptr) {
  const std::string cmd = std::string(KVTIERCTL_PATH) + " " + args + " 2>/dev/null";
  if (out == nullptr) {
    const int status = std::system((cmd + " >/dev/null").c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  out->clear();
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) out->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class MemoryControlsTest : public testing::DaemonTest {
 protected:
  void Start(std::vector<std::string> args = {}, const std::string& dram = "64MiB") {
    options_.dram_capacity = dram;
    options_.extra_args = std::move(args);
    StartDaemon();
  }

  NamespaceHandle Open(const std::string& model) {
    auto ns = client_->OpenNamespace(Descriptor(model));
    EXPECT_TRUE(ns.ok()) << ns.status();
    return ns.ok() ? *ns : NamespaceHandle{};
  }

  void Put(const NamespaceHandle& ns, uint64_t begin, uint64_t end, uint32_t ttl = 0) {
    for (uint64_t i = begin; i < end; ++i) {
      const std::vector<std::byte> bytes = Content(i);
      const BlockKey key = Key(i);
      std::span<const std::byte> block(bytes);
      auto r = client_->Put(ns, {&key, 1}, {&block, 1}, {.ttl_seconds = ttl});
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(IsStored((*r)[0])) << i << ": " << (*r)[0];
    }
  }

  // Whether block i reads back (with its exact bytes; wrong bytes fail the test).
  bool Has(const NamespaceHandle& ns, uint64_t i, proto::Tier* tier = nullptr) {
    std::vector<std::byte> out(kBlockBytes);
    const BlockKey key = Key(i);
    std::span<std::byte> dst(out);
    auto r = client_->Get(ns, {&key, 1}, {&dst, 1});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || !(*r)[0].status.ok()) return false;
    EXPECT_TRUE(out == Content(i)) << "block " << i << " came back with other bytes";
    if (tier != nullptr) *tier = (*r)[0].tier;
    return true;
  }

  proto::NamespaceStats NsStats(const NamespaceHandle& ns) {
    auto s = client_->Stats();
    EXPECT_TRUE(s.ok()) << s.status();
    const proto::NamespaceStats* n = s.ok() ? testing::FindNamespaceStats(*s, ns.id) : nullptr;
    EXPECT_NE(n, nullptr) << "no stats for namespace " << ns.id;
    return n != nullptr ? *n : proto::NamespaceStats();
  }
};

TEST_F(MemoryControlsTest, PutTtlsAndTheNamespaceDefaultExpireBlocks) {
  Start();
  NamespaceHandle ns = Open("ttl");
  proto::NamespaceLimits limits;
  limits.set_default_ttl_seconds(1);
  ASSERT_TRUE(client_->SetLimits(ns, limits).ok());
  Put(ns, 0, 2);        // the namespace default: 1 s
  Put(ns, 2, 4, 3600);  // their own: an hour
  EXPECT_TRUE(Has(ns, 0));
  EXPECT_TRUE(Has(ns, 2));
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  EXPECT_FALSE(Has(ns, 0));
  EXPECT_FALSE(Has(ns, 1));
  EXPECT_TRUE(Has(ns, 2));
  EXPECT_TRUE(Has(ns, 3));
  const proto::NamespaceStats s = NsStats(ns);
  EXPECT_EQ(s.expirations(), 2u);
  EXPECT_EQ(s.blocks(), 2u);
  EXPECT_EQ(s.limits().default_ttl_seconds(), 1u);
  EXPECT_EQ(s.counters().evictions(), 0u);
}

TEST_F(MemoryControlsTest, AQuotaKeepsANamespaceToItsShareAndSparesTheOthers) {
  Start();
  NamespaceHandle small = Open("small");
  NamespaceHandle big = Open("big");
  proto::NamespaceLimits limits;
  limits.set_dram_quota_bytes(4 * kBlockBytes);
  ASSERT_TRUE(client_->SetLimits(small, limits).ok());
  Put(big, 1000, 1010);
  Put(small, 0, 12);  // 3x its quota: it evicts only its own blocks
  proto::NamespaceStats s = NsStats(small);
  EXPECT_EQ(s.blocks(), 4u);
  EXPECT_EQ(s.quota_evictions(), 8u);
  EXPECT_EQ(s.limits().dram_quota_bytes(), 4 * kBlockBytes);
  EXPECT_EQ(s.dram_slot_bytes(), 4 * kBlockBytes);  // uncompressed: a full slot per block
  for (uint64_t i = 8; i < 12; ++i) EXPECT_TRUE(Has(small, i)) << i;  // the newest stay
  EXPECT_FALSE(Has(small, 0));
  EXPECT_EQ(NsStats(big).blocks(), 10u);
  for (uint64_t i = 1000; i < 1010; ++i) EXPECT_TRUE(Has(big, i)) << i;
}

TEST_F(MemoryControlsTest, KvtierctlSetsLimitsAndRefusesBadOnes) {
  if (access(KVTIERCTL_PATH, X_OK) != 0) GTEST_SKIP() << KVTIERCTL_PATH << " is not built";
  Start();
  NamespaceHandle ns = Open("ctl");
  Put(ns, 0, 6);
  const std::string where = "--socket " + daemon_->socket_path() + " ";
  EXPECT_EQ(RunCtl(where + "limits " + std::to_string(ns.id) +
                   " --dram-quota 512KiB --priority -3 --ttl 600"),
            0);
  proto::NamespaceStats s = NsStats(ns);
  EXPECT_EQ(s.limits().dram_quota_bytes(), 512u << 10);
  EXPECT_EQ(s.limits().priority(), -3);
  EXPECT_EQ(s.limits().default_ttl_seconds(), 600u);
  EXPECT_EQ(s.blocks(), 2u);  // the lowered quota took effect at once
  // Unknown namespace, a bad size, and a ninth distinct priority: errors, nothing changes.
  EXPECT_EQ(RunCtl(where + "limits 999 --priority 1"), 1);
  EXPECT_EQ(RunCtl(where + "limits " + std::to_string(ns.id) + " --dram-quota lots"), 2);
  for (int p = 1; p <= 6; ++p) {
    NamespaceHandle other = Open("ctl-" + std::to_string(p));
    EXPECT_EQ(
        RunCtl(where + "limits " + std::to_string(other.id) + " --priority " + std::to_string(p)),
        0);
  }
  NamespaceHandle ninth = Open("ctl-9");
  EXPECT_EQ(RunCtl(where + "limits " + std::to_string(ninth.id) + " --priority 9"), 1);
  EXPECT_EQ(NsStats(ninth).limits().priority(), 0);
  EXPECT_EQ(NsStats(ns).limits().priority(), -3);
  // An NVMe quota without an NVMe tier is refused, and changes nothing.
  EXPECT_EQ(RunCtl(where + "limits " + std::to_string(ns.id) + " --nvme-quota 1MiB"), 1);
  EXPECT_EQ(RunCtl(where + "limits " + std::to_string(ns.id) + " --nvme-quota lots"), 2);
  EXPECT_EQ(NsStats(ns).limits().priority(), -3);
  EXPECT_EQ(NsStats(ns).limits().dram_quota_bytes(), 512u << 10);
}

// Waits up to 10 s for `done` (staged demotions are written by the demotion thread).
template <typename Fn>
bool WaitFor(Fn done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// `kvtierctl top` against the real daemon: one JSON line per interval, with the interval's
// gets while a thread reads blocks meanwhile.
TEST_F(MemoryControlsTest, KvtierctlTopShowsTheIntervalsTraffic) {
  if (access(KVTIERCTL_PATH, X_OK) != 0) GTEST_SKIP() << KVTIERCTL_PATH << " is not built";
  Start();
  NamespaceHandle ns = Open("top");
  Put(ns, 0, 4);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  std::thread reader([&] {
    auto c = client::Client::Connect(daemon_->unix_uri(), {});
    ASSERT_TRUE(c.ok()) << c.status();
    auto handle = (*c)->OpenNamespace(Descriptor("top"));
    ASSERT_TRUE(handle.ok()) << handle.status();
    std::vector<std::byte> out(kBlockBytes);
    while (!stop.load()) {
      const BlockKey key = Key(reads.load() % 4);
      std::span<std::byte> dst(out);
      auto r = (*c)->Get(*handle, {&key, 1}, {&dst, 1});
      ASSERT_TRUE(r.ok() && (*r)[0].status.ok());
      reads.fetch_add(1);
    }
  });
  std::string out;
  const int rc =
      RunCtl("--socket " + daemon_->socket_path() + " --json top --interval 0.3 --count 2", &out);
  stop = true;
  reader.join();
  ASSERT_EQ(rc, 0) << out;
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    lines.push_back(nlohmann::json::parse(std::string(line)));
  }
  ASSERT_EQ(lines.size(), 2u) << out;
  for (const auto& j : lines) {
    EXPECT_GT(j["seconds"].get<double>(), 0.25);
    const auto& dram = j["tiers"][0];
    EXPECT_EQ(dram["tier"], "dram");
    EXPECT_GT(dram["gets_per_s"].get<double>(), 0) << j.dump();
    EXPECT_DOUBLE_EQ(dram["hit_rate"].get<double>(), 1.0) << j.dump();  // every read hits
    EXPECT_TRUE(j["request_p99_us_at_most"].contains("get")) << j.dump();
  }
  EXPECT_GT(reads.load(), 0u);
}

TEST_F(MemoryControlsTest, AnNvmeQuotaDropsTheNamespacesOldestBlocksAndSparesTheOthers) {
  if (access(KVTIERCTL_PATH, X_OK) != 0) GTEST_SKIP() << KVTIERCTL_PATH << " is not built";
  // 64 DRAM slots; every evicted block is demoted. 7 regions of 16 MiB: no region is recycled
  // in this test, so whatever leaves NVMe leaves for the quota.
  Start({"--nvme-path", "{data_dir}/nvme.img", "--nvme-capacity", "128MiB", "--nvme-admission",
         "all", "--eviction-policy", "lru"},
        "16MiB");
  NamespaceHandle small = Open("nvme-small");
  NamespaceHandle big = Open("nvme-big");
  NamespaceHandle filler = Open("nvme-filler");
  uint64_t next_filler = 10000;
  auto push_out_of_dram = [&] {  // 64 puts: everything put before leaves DRAM for NVMe
    Put(filler, next_filler, next_filler + 64);
    next_filler += 64;
  };

  Put(big, 1000, 1010);
  push_out_of_dram();
  ASSERT_TRUE(WaitFor([&] { return NsStats(big).nvme_blocks() == 10; }));
  // Device bytes per record (header unit and padding included): what the quota counts.
  const uint64_t record = NsStats(big).nvme_used_bytes() / 10;
  ASSERT_GE(record, kBlockBytes);

  const std::string where = "--socket " + daemon_->socket_path() + " ";
  ASSERT_EQ(RunCtl(where + "limits " + std::to_string(small.id) + " --nvme-quota " +
                   std::to_string(4 * record)),
            0);
  EXPECT_EQ(NsStats(small).limits().nvme_quota_bytes(), 4 * record);

  Put(small, 0, 4);
  push_out_of_dram();
  ASSERT_TRUE(WaitFor([&] { return NsStats(small).nvme_blocks() == 4; }));
  Put(small, 4, 10);  // six more: the quota keeps the newest four
  push_out_of_dram();
  auto accounted = [&] {
    const proto::NamespaceStats n = NsStats(small);
    return n.nvme_blocks() + n.nvme_quota_drops() + n.nvme_quota_rejections();
  };
  ASSERT_TRUE(WaitFor([&] { return accounted() == 10; })) << accounted();
  proto::NamespaceStats s = NsStats(small);
  EXPECT_EQ(s.nvme_blocks(), 4u);
  EXPECT_EQ(s.nvme_used_bytes(), 4 * record);
  EXPECT_GE(s.nvme_quota_drops(), 4u);  // 0..3 at least; how many of 4..9 were refused
                                        // rather than written and dropped depends on batching
  for (uint64_t i = 0; i < 4; ++i) EXPECT_FALSE(Has(small, i)) << i;
  for (uint64_t i = 6; i < 10; ++i) {
    proto::Tier tier = proto::TIER_NONE;
    EXPECT_TRUE(Has(small, i, &tier)) << i;
    EXPECT_EQ(tier, proto::TIER_NVME) << i;
  }
  // The other namespaces gave nothing up.
  const proto::NamespaceStats b = NsStats(big);
  EXPECT_EQ(b.nvme_blocks(), 10u);
  EXPECT_EQ(b.nvme_quota_drops(), 0u);
  for (uint64_t i = 1000; i < 1010; ++i) {
    proto::Tier tier = proto::TIER_NONE;
    EXPECT_TRUE(Has(big, i, &tier)) << i;
    EXPECT_EQ(tier, proto::TIER_NVME) << i;
  }
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  const proto::TierStats* nvme = testing::FindTierStats(*stats, proto::TIER_NVME);
  ASSERT_NE(nvme, nullptr);
  EXPECT_EQ(nvme->nvme().region_evictions(), 0u);
  EXPECT_EQ(nvme->nvme().quota_drops(), s.nvme_quota_drops());
  EXPECT_EQ(nvme->nvme().quota_rejections(), s.nvme_quota_rejections());

  // kvtierctl shows it.
  std::string json;
  ASSERT_EQ(RunCtl(where + "--json namespaces", &json), 0);
  EXPECT_NE(json.find("\"nvme_quota_bytes\": " + std::to_string(4 * record)), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"nvme_quota_drops\": " + std::to_string(s.nvme_quota_drops())),
            std::string::npos)
      << json;
  std::string table;
  ASSERT_EQ(RunCtl(where + "namespaces", &table), 0);
  EXPECT_NE(table.find("NVME QUOTA"), std::string::npos) << table;

  // A lowered quota drops down to it before the reply (the client this time).
  proto::NamespaceLimits limits;
  limits.set_nvme_quota_bytes(2 * record);
  ASSERT_TRUE(client_->SetLimits(small, limits).ok());
  s = NsStats(small);
  EXPECT_EQ(s.nvme_used_bytes(), 2 * record);
  EXPECT_EQ(s.nvme_blocks(), 2u);
  EXPECT_EQ(s.limits().nvme_quota_bytes(), 2 * record);
  EXPECT_EQ(NsStats(big).nvme_blocks(), 10u);
}

TEST_F(MemoryControlsTest, DemotedBlocksKeepTheirTtlOnNvme) {
  Start({"--nvme-path", "{data_dir}/nvme.img", "--nvme-capacity", "64MiB", "--nvme-admission",
         "all", "--eviction-policy", "lru"},
        "16MiB");
  NamespaceHandle ns = Open("nvme-ttl");
  Put(ns, 0, 4, 2);   // expire in 2 s
  Put(ns, 4, 8);      // no TTL
  Put(ns, 100, 180);  // pushes 0..7 out of the 64-block DRAM tier, onto NVMe
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the demotion batch
  proto::Tier tier = proto::TIER_NONE;
  ASSERT_TRUE(Has(ns, 0, &tier));
  EXPECT_EQ(tier, proto::TIER_NVME);
  std::this_thread::sleep_for(
      std::chrono::milliseconds(3600));  // NVMe counts whole seconds, rounded up
  // Gone from NVMe too (1 and 2 never came back to DRAM; 0 did, with its time left).
  EXPECT_FALSE(Has(ns, 0));
  EXPECT_FALSE(Has(ns, 1));
  EXPECT_FALSE(Has(ns, 2));
  EXPECT_TRUE(Has(ns, 5));
}

}  // namespace
}  // namespace kvtier
