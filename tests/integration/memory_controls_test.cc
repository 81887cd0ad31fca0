// Memory controls through the real kvtierd and the wire: put TTLs and namespace default TTLs
// (in DRAM and carried to NVMe by demotion), per-namespace DRAM quotas and priorities set with
// the client and with `kvtierctl limits`, and the stats that show them.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "kvtier/client/client.h"
#include "tests/testing/daemon_process.h"
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
  NamespaceDescriptor d;
  d.model_id = model;
  d.dtype = "bf16";
  d.block_tokens = 16;
  d.block_bytes = kBlockBytes;
  return d;
}

// Runs kvtierctl; returns its exit status.
int RunCtl(const std::string& args) {
  const std::string cmd = std::string(KVTIERCTL_PATH) + " " + args + " >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class MemoryControlsTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> args = {}, const std::string& dram = "64MiB") {
    DaemonOptions options;
    options.dram_capacity = dram;
    options.extra_args = std::move(args);
    auto d = DaemonProcess::Start(options);
    if (absl::IsNotFound(d.status())) GTEST_SKIP() << d.status();
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    auto c = Client::Connect(daemon_->unix_uri(), {});
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
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

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
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
