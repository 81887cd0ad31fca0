// kvtierd registers its DRAM arena with the NVMe device (io_uring fixed buffers) at startup.
// Run as an unprivileged service is -- without CAP_IPC_LOCK, under a small RLIMIT_MEMLOCK --
// the kernel refuses to pin it: the daemon must start anyway, say so once in its log, and move
// blocks between DRAM and NVMe byte for byte without fixed buffers.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kvtier/client/client.h"
#include "kvtier/common/testing/temp_dir.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/daemon_test.h"
#include "tests/testing/seeded_blocks.h"
#include "tests/testing/stats_lookup.h"

namespace kvtier {
namespace {

using client::Client;
using testing::DaemonOptions;
using testing::DaemonProcess;

constexpr uint64_t kBlockBytes = 256 << 10;

BlockKey Key(uint64_t i) { return testing::SeededKey(i ^ 0xa4e7a); }
std::vector<std::byte> Content(uint64_t i) {
  return testing::SeededBytes(i * 31337 + 5, kBlockBytes);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(NvmeArenaRegistrationTest, RefusedRegistrationIsLoggedOnceAndBlocksStillMoveByteExact) {
  const testing::TempDir dir;
  const std::string log_path = dir / "kvtierd.log";
  DaemonOptions options;
  options.dram_capacity = "16MiB";  // 64 blocks: the 160 put below go through NVMe
  options.extra_args = {"--nvme-path",       "{data_dir}/nvme.img",
                        "--nvme-capacity",   "128MiB",
                        "--nvme-engine",     "io_uring",
                        "--nvme-admission",  "all",
                        "--eviction-policy", "lru"};
  options.stderr_path = log_path;
  // The arena is 16 MiB and every ring pins it: far over 1 MiB.
  options.memlock_bytes = 1 << 20;
  auto d = DaemonProcess::Start(options);
  const std::string startup_log = ReadFile(log_path);
  if (absl::IsNotFound(d.status())) GTEST_SKIP() << d.status();
  if (!d.ok() && startup_log.find("io_uring is unavailable") != std::string::npos) {
    GTEST_SKIP() << "io_uring is unavailable on this host: " << startup_log;
  }
  ASSERT_TRUE(d.ok()) << d.status() << "\n" << startup_log;
  std::unique_ptr<DaemonProcess> daemon = std::move(*d);

  auto c = Client::Connect(daemon->unix_uri(), {});
  ASSERT_TRUE(c.ok()) << c.status();
  std::unique_ptr<Client> client = std::move(*c);
  auto ns = client->OpenNamespace(
      testing::TestDescriptor("registration-test", kBlockBytes, "bf16", "test"));
  ASSERT_TRUE(ns.ok()) << ns.status();

  constexpr uint64_t kBlocks = 160;
  for (uint64_t i = 0; i < kBlocks; ++i) {
    const std::vector<std::byte> bytes = Content(i);
    const BlockKey key = Key(i);
    const std::span<const std::byte> block(bytes);
    auto r = client->Put(*ns, {&key, 1}, {&block, 1});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE((*r)[0].ok()) << i << ": " << (*r)[0];
  }
  // Demotions are written in the background: wait (bounded) until none is staged.
  for (int tries = 0; tries < 500; ++tries) {
    auto s = client->Stats();
    ASSERT_TRUE(s.ok()) << s.status();
    if (testing::FindTierStats(*s, proto::TIER_NVME)->nvme().demotion_queue_bytes() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Every block reads back exactly; the early ones are promoted from NVMe into the arena, which
  // io_uring now reads into without fixed buffers.
  uint64_t from_nvme = 0;
  std::vector<std::byte> out(kBlockBytes);
  for (uint64_t i = 0; i < kBlocks; ++i) {
    const BlockKey key = Key(i);
    const std::span<std::byte> dst(out);
    auto r = client->Get(*ns, {&key, 1}, {&dst, 1});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE((*r)[0].status.ok()) << "block " << i << ": " << (*r)[0].status;
    ASSERT_EQ((*r)[0].length, kBlockBytes);
    ASSERT_TRUE(out == Content(i)) << "wrong bytes for block " << i;
    from_nvme += (*r)[0].tier == proto::TIER_NVME ? 1 : 0;
  }
  EXPECT_GE(from_nvme, 50u);
  auto s = client->Stats();
  ASSERT_TRUE(s.ok());
  const proto::NvmeStats& nvme = testing::FindTierStats(*s, proto::TIER_NVME)->nvme();
  EXPECT_EQ(nvme.engine(), "io_uring");
  EXPECT_EQ(nvme.checksum_failures(), 0u);
  EXPECT_EQ(nvme.io_errors(), 0u);

  client.reset();
  ASSERT_TRUE(daemon->Stop(SIGTERM, std::chrono::seconds(60)).ok());
  const std::string log = ReadFile(log_path);
  EXPECT_EQ(Count(log, "io_uring: cannot register"), 1u) << log;
  EXPECT_NE(log.find("RLIMIT_MEMLOCK"), std::string::npos) << log;
  daemon.reset();
}

}  // namespace
}  // namespace kvtier
