// NvmeDevice::RegisterMemory / NvmeTier::RegisterMemory on both file-device engines: I/O into
// registered memory (io_uring fixed buffers, READ_FIXED / WRITE_FIXED) is byte-exact, also for
// ops that lie partly or wholly outside it or in a later registration; the thread pool takes a
// registration as a no-op; and a registration the kernel refuses (RLIMIT_MEMLOCK, in a child
// process without CAP_IPC_LOCK) is best effort: OK, logged once, I/O still byte-exact, and
// memory registered before stays registered.
//
// Whether the kernel really pinned the memory is read from /proc/self/status (VmPin): io_uring
// accounts every registered page there, once per ring. Where io_uring is unavailable
// (seccomp, gVisor) the io_uring cases skip and say so.
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kvtier/tiers/nvme_device.h"
#include "kvtier/tiers/nvme_tier.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"
#include "tiers/src/nvme/test_util.h"

namespace kvtier::tiers {
namespace {

using nvme::testing::AlignedBuffer;
using nvme::testing::TempDir;
using nvme::testing::TestKey;
using nvme::testing::TestPayload;
using Engine = NvmeDeviceOptions::Engine;

constexpr uint64_t kCapacity = 8 << 20;
constexpr uint32_t kRings = 2;

// Pinned memory of this process in KiB (VmPin), or -1 where the kernel does not say.
int64_t PinnedKib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmPin:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

absl::StatusOr<std::unique_ptr<NvmeDevice>> OpenDevice(const std::string& path, Engine engine) {
  NvmeDeviceOptions o;
  o.path = path;
  o.capacity_bytes = kCapacity;
  o.engine = engine;
  o.queue_depth = 4;
  o.rings = kRings;
  return OpenFileDevice(o);
}

// Writes `bytes` from `src` to device offset `at` as one op, then reads it back into `dst` and
// compares. Empty on success, else what went wrong.
std::string RoundTrip(NvmeDevice& dev, std::byte* src, std::byte* dst, size_t bytes, uint64_t at,
                      uint64_t seed) {
  const std::vector<std::byte> want = TestPayload(seed, 1, bytes);
  std::memcpy(src, want.data(), bytes);
  IoSegment w{src, bytes};
  IoOp write;
  write.type = IoOp::Type::kWrite;
  write.offset = at;
  write.segments = {&w, 1};
  if (absl::Status s = dev.Submit({&write, 1}); !s.ok()) return "write: " + s.ToString();
  std::memset(dst, 0, bytes);
  IoSegment r{dst, bytes};
  IoOp read;
  read.offset = at;
  read.segments = {&r, 1};
  if (absl::Status s = dev.Submit({&read, 1}); !s.ok()) return "read: " + s.ToString();
  if (std::memcmp(dst, want.data(), bytes) != 0) return "read back other bytes";
  return "";
}

class RegisterMemoryTest : public ::testing::TestWithParam<Engine> {
 protected:
  std::unique_ptr<NvmeDevice> Open() {
    absl::StatusOr<std::unique_ptr<NvmeDevice>> dev = OpenDevice(dir_ / "dev", GetParam());
    if (!dev.ok() && GetParam() == Engine::kIoUring && absl::IsUnavailable(dev.status())) {
      return nullptr;
    }
    EXPECT_TRUE(dev.ok()) << dev.status();
    return dev.ok() ? std::move(*dev) : nullptr;
  }

  TempDir dir_;
};

#define OPEN_OR_SKIP(var)                                                                  \
  auto var = Open();                                                                       \
  if (var == nullptr && GetParam() == Engine::kIoUring) {                                  \
    GTEST_SKIP() << "io_uring is unavailable on this host (io_uring_queue_init refused); " \
                    "the thread-pool case covers the rest";                                \
  }                                                                                        \
  ASSERT_NE(var, nullptr)

TEST_P(RegisterMemoryTest, IoIsByteExactInsideAcrossAndOutsideTheRegisteredMemory) {
  OPEN_OR_SKIP(dev);
  const size_t a = dev->alignment();
  // `big`'s first 64 units are registered and the rest not, so that an op can straddle the end
  // of the registration; `second` is registered by a later call (another fixed-buffer index).
  AlignedBuffer big(96 * a, a), second(32 * a, a);
  const int64_t pinned_before = PinnedKib();
  ASSERT_TRUE(dev->RegisterMemory({big.data.get(), 64 * a}).ok());
  ASSERT_TRUE(dev->RegisterMemory(second.span()).ok());
  const int64_t pinned = PinnedKib() - pinned_before;
  if (pinned_before >= 0) {
    if (GetParam() == Engine::kIoUring) {
      // Every ring pins both registrations: the kernel really took them.
      EXPECT_GE(pinned, static_cast<int64_t>(kRings * (64 + 32) * a / 1024))
          << "VmPin grew by " << pinned << " KiB";
    } else {
      EXPECT_EQ(pinned, 0) << "the thread pool pins nothing: RegisterMemory is a no-op";
    }
  }
  std::byte* base = big.data.get();
  struct Case {
    const char* what;
    std::byte* src;
    std::byte* dst;
    size_t units;
  };
  const Case cases[] = {
      {"inside the first registration", base, base + 16 * a, 8},
      {"inside the second registration", second.data.get() + 4 * a, second.data.get() + 16 * a, 8},
      {"from one registration into the other", base + 32 * a, second.data.get(), 16},
      {"straddling the registration's end", base + 60 * a, base + 56 * a, 8},
      {"outside any registration", base + 70 * a, base + 80 * a, 8},
      {"the whole registration", base, base, 64},
  };
  uint64_t at = 0;
  uint64_t seed = 0;
  for (const Case& c : cases) {
    EXPECT_EQ(RoundTrip(*dev, c.src, c.dst, c.units * a, at, ++seed), "") << c.what;
    at += c.units * a;
  }
  // A two-segment op (header + payload, as the tier writes records) with one segment in
  // registered memory and one outside.
  const std::vector<std::byte> head = TestPayload(99, 1, a), body = TestPayload(99, 2, 4 * a);
  std::memcpy(base + 62 * a, head.data(), a);
  std::memcpy(base + 90 * a, body.data(), 4 * a);
  const IoSegment segs[] = {{base + 62 * a, a}, {base + 90 * a, 4 * a}};
  IoOp write;
  write.type = IoOp::Type::kWrite;
  write.offset = at;
  write.segments = segs;
  ASSERT_TRUE(dev->Submit({&write, 1}).ok());
  IoSegment r{second.data.get(), 5 * a};
  IoOp read;
  read.offset = at;
  read.segments = {&r, 1};
  ASSERT_TRUE(dev->Submit({&read, 1}).ok());
  EXPECT_EQ(std::memcmp(second.data.get(), head.data(), a), 0);
  EXPECT_EQ(std::memcmp(second.data.get() + a, body.data(), 4 * a), 0);
}

TEST_P(RegisterMemoryTest, MisalignedMemoryIsRefusedAndNothingElseChanges) {
  OPEN_OR_SKIP(dev);
  const size_t a = dev->alignment();
  AlignedBuffer buf(16 * a, a);
  const absl::Status s = dev->RegisterMemory({buf.data.get() + 512, 8 * a});
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_EQ(RoundTrip(*dev, buf.data.get(), buf.data.get() + 8 * a, 8 * a, 0, 7), "");
}

// The daemon's use: a tier whose reads land in a registered arena (single-segment reads, so
// READ_FIXED on io_uring), including a destination that runs past the arena's end.
TEST_P(RegisterMemoryTest, TierReadsIntoARegisteredArenaAreByteExact) {
  auto dev = Open();
  if (dev == nullptr && GetParam() == Engine::kIoUring) {
    GTEST_SKIP() << "io_uring is unavailable on this host";
  }
  ASSERT_NE(dev, nullptr);
  const size_t a = dev->alignment();
  constexpr uint64_t kBlock = 64 << 10;
  NvmeTierOptions options;
  options.index_path = dir_ / "index";
  options.region_bytes = 1 << 20;
  UnixClock clock;
  auto tier = NvmeTier::Create(options, std::move(dev), &clock, nullptr);
  ASSERT_TRUE(tier.ok()) << tier.status();
  ASSERT_TRUE((*tier)->AddNamespace(1, kBlock).ok());
  // 20 blocks of room, the first 16 registered: slots 16.. lie outside the registration.
  AlignedBuffer arena(20 * kBlock, a);
  ASSERT_TRUE((*tier)->RegisterMemory({arena.data.get(), 16 * kBlock}).ok());
  for (uint64_t id = 0; id < 8; ++id) {
    const std::vector<std::byte> payload = TestPayload(id, 3, kBlock);
    const BlockKey key = TestKey(id);
    const std::span<const std::byte> block(payload);
    ASSERT_TRUE((*tier)->Write(1, {&key, 1}, {&block, 1})[0].ok()) << id;
  }
  // Slots inside the registration, one straddling its end, one beyond it.
  const uint64_t slots[] = {0, 3, 7, 15, 16, 18};
  for (uint64_t k = 0; k < 6; ++k) {
    const uint64_t id = k;
    // Slot 15's destination is moved half a block on, so that it runs past the registration.
    std::byte* at = arena.data.get() + slots[k] * kBlock + (slots[k] == 15 ? kBlock / 2 : 0);
    std::span<std::byte> dst(at, (*tier)->DirectReadBytes(kBlock));
    absl::StatusOr<NvmeReadResult> r = (*tier)->Read(1, TestKey(id), dst);
    ASSERT_TRUE(r.ok()) << "slot " << slots[k] << ": " << r.status();
    ASSERT_EQ(r->length, kBlock);
    EXPECT_EQ(std::memcmp(dst.data(), TestPayload(id, 3, kBlock).data(), kBlock), 0)
        << "slot " << slots[k];
  }
  EXPECT_EQ((*tier)->Snapshot().nvme.checksum_failures, 0u);
}

INSTANTIATE_TEST_SUITE_P(Engines, RegisterMemoryTest,
                         ::testing::Values(Engine::kIoUring, Engine::kThreadPool),
                         [](const auto& info) {
                           return info.param == Engine::kIoUring ? "IoUring" : "ThreadPool";
                         });

// --- a registration the kernel refuses -------------------------------------------------------

// Counts the log lines that say a registration was refused.
class RefusalCounter final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::atomic<int> refusals{0};
  std::string last;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string text(msg.payload.data(), msg.payload.size());
    if (text.find("cannot register") != std::string::npos) {
      ++refusals;
      last = text;
    }
  }
  void flush_() override {}
};

// Drops CAP_IPC_LOCK (with it, the kernel ignores RLIMIT_MEMLOCK for io_uring) and sets
// RLIMIT_MEMLOCK to `bytes`. False, with a line on stderr, when it cannot.
bool LimitLockedMemory(uint64_t bytes) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2] = {};
  if (syscall(SYS_capget, &header, caps) != 0) return false;
  caps[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
  caps[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
  if (syscall(SYS_capset, &header, caps) != 0) {
    std::cerr << "capset: " << std::strerror(errno) << "\n";
    return false;
  }
  rlimit limit;
  getrlimit(RLIMIT_MEMLOCK, &limit);
  limit.rlim_cur = std::min<rlim_t>(bytes, limit.rlim_max);
  limit.rlim_max = limit.rlim_cur;
  if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    std::cerr << "setrlimit: " << std::strerror(errno) << "\n";
    return false;
  }
  return true;
}

// Runs in a child process (the limits must not leak into other tests). Returns 0 when every
// check passed, else 1 after printing what failed.
int RefusedRegistrationChild(const std::string& path) {
  auto counter = std::make_shared<RefusalCounter>();
  auto logger = std::make_shared<spdlog::logger>(
      "child", spdlog::sinks_init_list{counter, std::make_shared<spdlog::sinks::stderr_sink_mt>()});
  spdlog::set_default_logger(logger);
  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) {
      std::cerr << "FAILED: " << what << "\n";
      ++failures;
    }
  };
  constexpr uint64_t kLimit = 1 << 20;
  if (!LimitLockedMemory(kLimit)) return 1;
  absl::StatusOr<std::unique_ptr<NvmeDevice>> dev = OpenDevice(path, Engine::kIoUring);
  if (!dev.ok()) {
    std::cerr << "FAILED: io_uring device under a 1 MiB RLIMIT_MEMLOCK: " << dev.status() << "\n";
    return 1;
  }
  const size_t a = (*dev)->alignment();
  // Nothing to register: nothing to refuse or log.
  check((*dev)->RegisterMemory({}).ok(), "registering nothing is OK");
  check(counter->refusals == 0, "registering nothing logs no refusal");
  // Fits the limit on every ring.
  AlignedBuffer small(64 * a, a);
  int64_t before = PinnedKib();
  check((*dev)->RegisterMemory(small.span()).ok(), "small registration is OK");
  const int64_t small_pinned = PinnedKib() - before;
  check(small_pinned >= static_cast<int64_t>(kRings * small.size / 1024),
        "small registration pinned on every ring (VmPin +" + std::to_string(small_pinned) + ")");
  check(counter->refusals == 0, "small registration logs nothing");
  // 16 times the limit: refused, best effort.
  AlignedBuffer big(16 * kLimit, a), bigger(32 * kLimit, a);
  check((*dev)->RegisterMemory(big.span()).ok(), "refused registration still returns OK");
  check((*dev)->RegisterMemory(bigger.span()).ok(), "second refused registration returns OK");
  check(counter->refusals == 1,
        "a refusal is logged exactly once (" + std::to_string(counter->refusals) + " lines)");
  // The line is about the first refused registration (16 MiB), and says what to raise.
  check(counter->last.find("16.00 MiB") != std::string::npos &&
            counter->last.find("RLIMIT_MEMLOCK") != std::string::npos,
        "the log line names the refused size and RLIMIT_MEMLOCK: " + counter->last);
  // What was registered before the refusals still is (VmPin unchanged).
  check(PinnedKib() - before == small_pinned,
        "memory registered before a refusal stays registered (VmPin +" +
            std::to_string(PinnedKib() - before) + " KiB, was +" + std::to_string(small_pinned) +
            ")");
  // I/O goes on, byte-exact, in registered memory, refused memory and across the two.
  const std::string in_small =
      RoundTrip(**dev, small.data.get(), small.data.get() + 32 * a, 16 * a, 0, 1);
  check(in_small.empty(), "I/O in registered memory: " + in_small);
  const std::string in_big =
      RoundTrip(**dev, big.data.get() + 100 * a, big.data.get(), 64 * a, 64 * a, 2);
  check(in_big.empty(), "I/O in refused memory: " + in_big);
  const std::string across = RoundTrip(**dev, small.data.get(), big.data.get(), 64 * a, 0, 3);
  check(across.empty(), "I/O between the two: " + across);
  std::cerr << (failures == 0 ? "child: all checks passed" : "child: checks failed") << "\n";
  return failures == 0 ? 0 : 1;
}

TEST(RegisterMemoryRefusedTest, IsBestEffortLoggedOnceAndIoStillWorks) {
  TempDir dir;
  const std::string path = dir / "dev";
  {
    absl::StatusOr<std::unique_ptr<NvmeDevice>> dev = OpenDevice(path, Engine::kIoUring);
    if (!dev.ok() && absl::IsUnavailable(dev.status())) {
      GTEST_SKIP() << "io_uring is unavailable on this host: " << dev.status();
    }
    ASSERT_TRUE(dev.ok()) << dev.status();
  }
  if (PinnedKib() < 0) GTEST_SKIP() << "this kernel does not report VmPin";
  // A fresh process (re-executed, not forked from this one), so that the lowered limits and
  // the once-per-process log line do not involve any other test.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // The child's own TempDir is not unwound by exit(): it removes it itself.
  EXPECT_EXIT(
      {
        const int rc = RefusedRegistrationChild(path);
        std::error_code ec;
        std::filesystem::remove_all(dir.path(), ec);
        std::exit(rc);
      },
      ::testing::ExitedWithCode(0), "child: all checks passed");
}

}  // namespace
}  // namespace kvtier::tiers
