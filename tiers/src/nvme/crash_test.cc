// Crash harness: a child process runs mixed writes, removes and reads against an NVMe tier on
// a real file, and is killed with SIGKILL at a random moment; the parent reopens the tier and
// checks every key against an oracle built from the child's log. A read must be a miss, the
// bytes of the last acknowledged write of that key, or the bytes of a write that was in flight
// (started, never acknowledged) — never anything else.
//
// A second namespace has a quota (set by each child: quotas are not persisted). A third of the
// writes go to it, so that most of them drop its oldest blocks in the same synced index batch;
// after every kill its recovered blocks must still fit the quota and pass the oracle too.
//
// The child is this test binary run again with --gtest_filter=NvmeCrashChild.Run and
// KVTIER_NVME_CRASH_DIR set (a fresh process: RocksDB's background threads do not survive a
// fork). It logs "W key version" before a write and "A"/"F" after, "R key"/"D key" around a
// remove, with one write(2) per line so the lines survive the kill.
//
// Short run in ctest (6 kills). Long run: KVTIER_NVME_CRASH_CYCLES=500 tiers_nvme_crash_test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "kvtier/tiers/nvme_tier.h"
#include "tiers/src/nvme/test_util.h"

extern char** environ;

namespace kvtier::tiers::nvme::testing {
namespace {

constexpr uint32_t kNs = 1;
constexpr uint32_t kQuotaNs = 2;
constexpr uint64_t kQuota = 256 << 10;  // 4 to 30 of its records
// In the oracle log, keys of kQuotaNs are written as kQuotaKeys + key.
constexpr uint64_t kQuotaKeys = 100000;
constexpr int kKeys = 48;
constexpr uint64_t kRegion = 1 << 20;
constexpr uint64_t kCapacity = (1 << 20) + 6 * kRegion;

size_t SizeOf(uint64_t key, uint64_t version) { return 1000 + (key * 7919 + version * 31) % 59000; }

NvmeDeviceOptions DeviceOptions(const std::string& dir, bool io_uring) {
  NvmeDeviceOptions o;
  o.path = dir + "/dev";
  o.capacity_bytes = kCapacity;
  o.engine = io_uring ? NvmeDeviceOptions::Engine::kAuto : NvmeDeviceOptions::Engine::kThreadPool;
  o.queue_depth = 8;
  return o;
}

absl::StatusOr<std::unique_ptr<NvmeTier>> OpenTier(const std::string& dir, bool io_uring,
                                                   const Clock* clock) {
  absl::StatusOr<std::unique_ptr<NvmeDevice>> dev = OpenFileDevice(DeviceOptions(dir, io_uring));
  if (!dev.ok()) return dev.status();
  NvmeTierOptions o;
  o.index_path = dir + "/index";
  o.region_bytes = kRegion;
  // Regions are reclaimed two at a time (the default would be one on a tier this small), so
  // that kills also land between a batched reclaim and the opening of its clean region.
  o.reclaim_batch_regions = 2;
  absl::StatusOr<std::unique_ptr<NvmeTier>> tier =
      NvmeTier::Create(o, std::move(*dev), clock, nullptr);
  if (!tier.ok()) return tier.status();
  for (uint32_t ns : {kNs, kQuotaNs}) {
    absl::Status s = (*tier)->AddNamespace(ns, 64 << 10);
    if (!s.ok()) return s;
  }
  return tier;
}

// --- child ---

void Log(int fd, const std::string& line) {
  const std::string l = line + "\n";
  (void)!write(fd, l.data(), l.size());
}

TEST(NvmeCrashChild, Run) {
  const char* dir = getenv("KVTIER_NVME_CRASH_DIR");
  if (dir == nullptr) GTEST_SKIP() << "runs only as the crash harness's child";
  const uint64_t cycle = std::strtoull(getenv("KVTIER_NVME_CRASH_CYCLE"), nullptr, 10);
  UnixClock clock;
  auto tier = OpenTier(dir, cycle % 2 == 0, &clock);
  ASSERT_TRUE(tier.ok()) << tier.status();
  const int log = open((std::string(dir) + "/oracle.log").c_str(),
                       O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(log, 0);
  Log(log, absl::StrCat("O ", cycle));
  ASSERT_TRUE((*tier)->SetNamespaceLimits(kQuotaNs, {.quota_bytes = kQuota}).ok());
  std::mt19937_64 rng(cycle * 977 + 1);
  std::map<uint64_t, std::optional<uint64_t>> mine;  // what this child acknowledged
  uint64_t counter = 0;
  AlignedBuffer buf(64 << 10);
  while (true) {
    const uint64_t dice = rng() % 100;
    if (dice < 60) {
      const uint32_t ns = rng() % 3 == 0 ? kQuotaNs : kNs;
      const uint64_t logged = ns == kQuotaNs ? kQuotaKeys : 0;  // the key's name in the log
      std::set<uint64_t> picked;
      for (uint64_t n = 1 + rng() % 4; picked.size() < n;) picked.insert(rng() % kKeys);
      std::vector<BlockKey> keys;
      std::vector<uint64_t> versions;
      std::vector<std::vector<std::byte>> payloads;
      for (uint64_t k : picked) {
        const uint64_t v = cycle * 1'000'000 + ++counter;
        keys.push_back(TestKey(k));
        versions.push_back(v);
        payloads.push_back(TestPayload(k, v, SizeOf(k, v)));
        Log(log, absl::StrCat("W ", logged + k, " ", v));
      }
      std::vector<std::span<const std::byte>> blocks(payloads.begin(), payloads.end());
      NvmeWriteOptions o;
      o.source = NvmeWriteOptions::Source::kWriteThrough;
      const auto statuses = (*tier)->Write(ns, keys, blocks, o);
      size_t i = 0;
      for (uint64_t k : picked) {
        Log(log, absl::StrCat(statuses[i].ok() ? "A " : "F ", logged + k, " ", versions[i]));
        if (statuses[i].ok() && ns == kNs) mine[k] = versions[i];
        ++i;
      }
    } else if (dice < 75) {
      const uint64_t k = rng() % kKeys;
      const BlockKey key = TestKey(k);
      Log(log, absl::StrCat("R ", k));
      const auto statuses = (*tier)->Remove(kNs, {&key, 1});
      if (statuses[0].ok() || absl::IsNotFound(statuses[0])) {
        Log(log, absl::StrCat("D ", k));
        mine[k] = std::nullopt;
      }
    } else {
      const uint64_t k = rng() % kKeys;
      absl::StatusOr<NvmeReadResult> r = (*tier)->Read(kNs, TestKey(k), buf.span());
      auto it = mine.find(k);
      if (!r.ok() || it == mine.end()) continue;
      const bool good = it->second.has_value() &&
                        std::vector<std::byte>(buf.data.get(), buf.data.get() + r->length) ==
                            TestPayload(k, *it->second, SizeOf(k, *it->second));
      if (!good) {
        Log(log, absl::StrCat("BAD ", k));
        _exit(3);
      }
    }
  }
}

// --- parent ---

struct KeyState {
  std::optional<uint64_t> acked;  // last acknowledged version; nullopt: none or removed
  std::set<uint64_t> in_flight;   // started since, not acknowledged
};

std::map<uint64_t, KeyState> ReadOracle(const std::string& path, std::string* bad) {
  std::map<uint64_t, KeyState> state;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string op;
    uint64_t k = 0, v = 0;
    ls >> op >> k >> v;
    if (op == "BAD") *bad = line;
    KeyState& s = state[k];
    if (op == "W" || op == "F") s.in_flight.insert(v);
    if (op == "A") {
      s.acked = v;
      s.in_flight.clear();
    }
    if (op == "D") {
      s.acked.reset();
      s.in_flight.clear();
    }
  }
  return state;
}

int CrashCycles() {
  const char* env = getenv("KVTIER_NVME_CRASH_CYCLES");
  return env != nullptr ? std::max(1, atoi(env)) : 6;
}

pid_t SpawnChild(const std::string& dir, int cycle) {
  std::vector<std::string> env_storage = {"KVTIER_NVME_CRASH_DIR=" + dir,
                                          "KVTIER_NVME_CRASH_CYCLE=" + std::to_string(cycle)};
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe", filter = "--gtest_filter=NvmeCrashChild.Run";
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t pid = -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // Quiet: the child's gtest banner and log lines are noise in the parent's output.
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, (dir + "/child.err").c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  const int rc = posix_spawn(&pid, self.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

TEST(NvmeCrashTest, KillNineNeverServesWrongBytes) {
  TempDir dir;
  const int cycles = CrashCycles();
  std::mt19937_64 rng(12345);
  UnixClock clock;
  uint64_t verified_hits = 0, acked_total = 0, quota_blocks = 0;
  for (int cycle = 1; cycle <= cycles; ++cycle) {
    const pid_t pid = SpawnChild(dir.path(), cycle);
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 450));
    kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus))
        << "child exited early (status " << wstatus << "); see " << dir / "child.err";

    std::string bad;
    const auto oracle = ReadOracle(dir / "oracle.log", &bad);
    ASSERT_TRUE(bad.empty()) << "child read wrong bytes: " << bad;
    auto tier = OpenTier(dir.path(), cycle % 2 == 1, &clock);
    ASSERT_TRUE(tier.ok()) << "cycle " << cycle << ": " << tier.status();
    AlignedBuffer buf(64 << 10);
    for (const auto& [ns, logged] : {std::pair{kNs, uint64_t{0}}, {kQuotaNs, kQuotaKeys}}) {
      for (uint64_t k = 0; k < kKeys; ++k) {
        absl::StatusOr<NvmeReadResult> r = (*tier)->Read(ns, TestKey(k), buf.span());
        if (!r.ok()) {
          ASSERT_TRUE(absl::IsNotFound(r.status())) << r.status();
          continue;
        }
        const std::vector<std::byte> got(buf.data.get(), buf.data.get() + r->length);
        auto it = oracle.find(logged + k);
        ASSERT_NE(it, oracle.end()) << "ns " << ns << " key " << k << " was never written but is "
                                    << "served";
        std::set<uint64_t> allowed = it->second.in_flight;
        if (it->second.acked) allowed.insert(*it->second.acked);
        bool matched = false;
        for (uint64_t v : allowed) matched |= got == TestPayload(k, v, SizeOf(k, v));
        ASSERT_TRUE(matched) << "cycle " << cycle << " ns " << ns << " key " << k << ": "
                             << r->length << " bytes that no write of this key produced";
        ++verified_hits;
      }
    }
    // The quota's drops are in the batch that indexes the write: never over it, even cut short.
    const NvmeTierSnapshot snap = (*tier)->Snapshot();
    for (const NamespaceSnapshot& n : snap.tier.namespaces) {
      if (n.namespace_id != kQuotaNs) continue;
      EXPECT_LE(n.used_bytes, kQuota) << "cycle " << cycle << ": " << n.blocks << " blocks";
      quota_blocks += n.blocks;
    }
    EXPECT_EQ((*tier)->Snapshot().nvme.checksum_failures, 0u);
  }
  std::ifstream in(dir / "oracle.log");
  for (std::string line; std::getline(in, line);) acked_total += line[0] == 'A';
  EXPECT_GT(acked_total, 0u);
  EXPECT_GT(verified_hits, 0u);
  EXPECT_GT(quota_blocks, 0u);  // the quota namespace was exercised
  std::cout << cycles << " kills, " << acked_total << " acknowledged writes, " << verified_hits
            << " reads checked after restarts, " << quota_blocks
            << " blocks of the quota namespace found within its quota\n";
}

}  // namespace
}  // namespace kvtier::tiers::nvme::testing
