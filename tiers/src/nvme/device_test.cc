// File devices on both engines (io_uring and the pread/pwrite pool), their error messages, and
// the in-memory test device's fault injection.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "kvtier/tiers/nvme_device.h"
#include "kvtier/tiers/testing/nvme_memory_device.h"
#include "tiers/src/nvme/io_engine.h"
#include "tiers/src/nvme/test_util.h"

namespace kvtier::tiers {
namespace {

using nvme::testing::AlignedBuffer;
using nvme::testing::TempDir;
using nvme::testing::TestPayload;
using Engine = NvmeDeviceOptions::Engine;

constexpr uint64_t kCapacity = 8 << 20;

class FileDeviceTest : public ::testing::TestWithParam<Engine> {
 protected:
  std::unique_ptr<NvmeDevice> Open(NvmeDeviceOptions o = {}) {
    if (o.path.empty()) o.path = dir_ / "dev";
    if (o.capacity_bytes == 0) o.capacity_bytes = kCapacity;
    o.engine = GetParam();
    o.queue_depth = 4;
    o.rings = 2;
    absl::StatusOr<std::unique_ptr<NvmeDevice>> dev = OpenFileDevice(o);
    if (!dev.ok() && GetParam() == Engine::kIoUring && absl::IsUnavailable(dev.status())) {
      return nullptr;  // io_uring not allowed here (seccomp, gVisor): the pool covers it
    }
    EXPECT_TRUE(dev.ok()) << dev.status();
    return dev.ok() ? std::move(*dev) : nullptr;
  }

  TempDir dir_;
};

#define OPEN_OR_SKIP(var, ...)                              \
  auto var = Open(__VA_ARGS__);                             \
  if (var == nullptr && GetParam() == Engine::kIoUring) {   \
    GTEST_SKIP() << "io_uring is unavailable on this host"; \
  }                                                         \
  ASSERT_NE(var, nullptr)

TEST_P(FileDeviceTest, ReportsEngineSizeAndAlignment) {
  OPEN_OR_SKIP(dev);
  EXPECT_EQ(dev->engine(), GetParam() == Engine::kIoUring ? "io_uring" : "thread_pool");
  EXPECT_EQ(dev->size_bytes(), kCapacity);
  EXPECT_GE(dev->alignment(), 4096u);
  EXPECT_EQ(dev->alignment() & (dev->alignment() - 1), 0u);
}

TEST_P(FileDeviceTest, WritesAndReadsBackManyOpsAndSegments) {
  OPEN_OR_SKIP(dev);
  const uint32_t a = dev->alignment();
  // 40 ops (10x the queue depth), each of two segments, then read back as one segment each.
  constexpr int kOps = 40;
  std::vector<AlignedBuffer> heads, bodies, back;
  std::vector<std::array<IoSegment, 2>> segs(kOps);
  std::vector<IoSegment> read_segs(kOps);
  std::vector<IoOp> writes(kOps), reads(kOps);
  for (int i = 0; i < kOps; ++i) {
    heads.emplace_back(a, a);
    bodies.emplace_back(3 * a, a);
    back.emplace_back(4 * a, a);
  }
  for (int i = 0; i < kOps; ++i) {
    auto head = TestPayload(i, 1, a), body = TestPayload(i, 2, 3 * a);
    std::memcpy(heads[i].data.get(), head.data(), a);
    std::memcpy(bodies[i].data.get(), body.data(), 3 * a);
    segs[i] = {IoSegment{heads[i].data.get(), a}, IoSegment{bodies[i].data.get(), 3 * a}};
    writes[i].type = IoOp::Type::kWrite;
    writes[i].offset = uint64_t(i) * 4 * a;
    writes[i].segments = segs[i];
    read_segs[i] = {back[i].data.get(), 4 * a};
    reads[i].type = IoOp::Type::kRead;
    reads[i].offset = writes[i].offset;
    reads[i].segments = {&read_segs[i], 1};
  }
  ASSERT_TRUE(dev->Submit(writes).ok());
  ASSERT_TRUE(dev->Sync().ok());
  ASSERT_TRUE(dev->Submit(reads).ok());
  for (int i = 0; i < kOps; ++i) {
    ASSERT_EQ(std::memcmp(back[i].data.get(), heads[i].data.get(), a), 0) << i;
    ASSERT_EQ(std::memcmp(back[i].data.get() + a, bodies[i].data.get(), 3 * a), 0) << i;
  }
}

TEST_P(FileDeviceTest, CallsBackOncePerOpAsItCompletes) {
  OPEN_OR_SKIP(dev);
  const uint32_t a = dev->alignment();
  constexpr size_t kOps = 24;
  AlignedBuffer buf(kOps * a, a);
  std::vector<IoSegment> segs(kOps);
  std::vector<IoOp> ops(kOps);
  for (size_t i = 0; i < kOps; ++i) {
    segs[i] = {buf.data.get() + i * a, a};
    ops[i].segments = {&segs[i], 1};
    ops[i].offset = i * a;
  }
  ops[5].offset = 7;  // invalid: reported through the callback too
  std::vector<std::atomic<int>> calls(kOps);
  std::atomic<int> set_when_called{0};
  (void)dev->Submit(ops, [&](size_t i) {
    calls[i].fetch_add(1);
    if (i == 5 ? absl::IsInvalidArgument(ops[i].status) : ops[i].status.ok()) ++set_when_called;
  });
  for (size_t i = 0; i < kOps; ++i) EXPECT_EQ(calls[i].load(), 1) << i;
  EXPECT_EQ(set_when_called.load(), static_cast<int>(kOps));
}

TEST_P(FileDeviceTest, StreamsOpsHandedOverWhileEarlierOnesRun) {
  OPEN_OR_SKIP(dev);
  const uint32_t a = dev->alignment();
  // 8 batches of 6 writes (queue depth 4): the first given to SubmitStream, the others returned
  // by more(). Each batch owns its memory, and more() frees the batches whose ops have all
  // completed, as the contract allows. Batch 5's op 2 is invalid: it fails alone.
  constexpr int kBatches = 8, kPerBatch = 6;
  struct Batch {
    explicit Batch(uint32_t a) : buf(kPerBatch * size_t{2} * a, a) {}
    AlignedBuffer buf;
    std::vector<IoSegment> segs = std::vector<IoSegment>(kPerBatch);
    std::vector<IoOp> ops = std::vector<IoOp>(kPerBatch);
    std::atomic<int> unfinished{kPerBatch};
  };
  // more() (this thread) and on_complete (the pool's workers) both walk the batches.
  absl::Mutex live_mu;
  std::deque<std::unique_ptr<Batch>> live;
  std::vector<std::atomic<int>> calls(kBatches * kPerBatch);
  std::atomic<int> freed{0};
  int made = 0;
  auto make = [&]() -> std::span<IoOp> {
    auto b = std::make_unique<Batch>(a);
    for (int i = 0; i < kPerBatch; ++i) {
      const int id = made * kPerBatch + i;
      const std::vector<std::byte> payload = TestPayload(id, 3, 2 * a);
      std::memcpy(b->buf.data.get() + i * 2 * a, payload.data(), 2 * a);
      b->segs[i] = {b->buf.data.get() + i * 2 * a, 2 * a};
      b->ops[i].type = IoOp::Type::kWrite;
      b->ops[i].offset = uint64_t(id) * 2 * a;
      b->ops[i].segments = {&b->segs[i], 1};
    }
    if (made == 5) b->ops[2].offset = 3;  // misaligned
    ++made;
    const std::span<IoOp> ops = b->ops;
    absl::MutexLock lock(&live_mu);
    live.push_back(std::move(b));
    return ops;
  };
  auto on_complete = [&](IoOp& op) {
    absl::MutexLock lock(&live_mu);
    for (auto& b : live) {
      if (&op < b->ops.data() || &op >= b->ops.data() + kPerBatch) continue;
      const int index = static_cast<int>(&op - b->ops.data());
      calls[(b->ops[0].offset / (2 * a)) + index].fetch_add(1);
      --b->unfinished;
      return;
    }
    ADD_FAILURE() << "completion of an op that is not live";
  };
  auto more = [&]() -> std::span<IoOp> {
    {
      absl::MutexLock lock(&live_mu);
      while (!live.empty() && live.front()->unfinished.load() == 0) {
        live.pop_front();
        ++freed;
      }
    }
    return made < kBatches ? make() : std::span<IoOp>();
  };
  const absl::Status s = dev->SubmitStream(make(), on_complete, more);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_GE(freed.load(), kBatches - 2);  // the device let go of finished batches as it went
  for (int id = 0; id < kBatches * kPerBatch; ++id) EXPECT_EQ(calls[id].load(), 1) << id;

  AlignedBuffer back(2 * a, a);
  IoSegment seg{back.data.get(), 2 * a};
  for (int id = 0; id < kBatches * kPerBatch; ++id) {
    if (id == 5 * kPerBatch + 2) continue;
    IoOp read;
    read.offset = uint64_t(id) * 2 * a;
    read.segments = {&seg, 1};
    ASSERT_TRUE(dev->Submit({&read, 1}).ok());
    EXPECT_EQ(std::memcmp(back.data.get(), TestPayload(id, 3, 2 * a).data(), 2 * a), 0) << id;
  }
}

// A read the kernel answers short (here: the file was cut behind the device's back, so the
// read meets end of file halfway) goes on from where it stopped, across the op's segments, and
// ends with a clear error when the kernel has nothing more, rather than spinning or reporting
// success for bytes never read.
TEST_P(FileDeviceTest, ShortReadsContinueAndEndOfFileIsAnError) {
  OPEN_OR_SKIP(dev);
  const uint32_t a = dev->alignment();
  const uint64_t last = kCapacity - 4 * uint64_t{a};  // the final four units
  AlignedBuffer data(4 * a, a);
  const std::vector<std::byte> payload = TestPayload(9, 1, 4 * a);
  std::memcpy(data.data.get(), payload.data(), 4 * a);
  IoSegment whole{data.data.get(), 4 * a};
  IoOp write;
  write.type = IoOp::Type::kWrite;
  write.offset = last;
  write.segments = {&whole, 1};
  ASSERT_TRUE(dev->Submit({&write, 1}).ok());
  ASSERT_EQ(truncate((dir_ / "dev").c_str(), static_cast<off_t>(kCapacity - 2 * a)), 0);

  // Two segments (1 + 3 units) over the last four units: the kernel returns the two that are
  // left, which end inside the second segment.
  AlignedBuffer back(4 * a, a);
  std::memset(back.data.get(), 0, 4 * a);
  const IoSegment parts[] = {{back.data.get(), a}, {back.data.get() + a, 3 * uint64_t{a}}};
  IoOp read;
  read.offset = last;
  read.segments = parts;
  const absl::Status s = dev->Submit({&read, 1});
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find("end of device"), std::string::npos) << s;
  EXPECT_EQ(std::memcmp(back.data.get(), payload.data(), 2 * a), 0) << "the bytes before EOF";

  // A read wholly before the cut is unaffected.
  IoSegment first{back.data.get(), 2 * uint64_t{a}};
  read.segments = {&first, 1};
  read.status = absl::OkStatus();
  ASSERT_TRUE(dev->Submit({&read, 1}).ok());
  EXPECT_EQ(std::memcmp(back.data.get(), payload.data(), 2 * a), 0);
}

TEST_P(FileDeviceTest, RegisteredMemoryReadsAndWrites) {
  OPEN_OR_SKIP(dev);
  const uint32_t a = dev->alignment();
  AlignedBuffer arena(64 * a, a);
  ASSERT_TRUE(dev->RegisterMemory(arena.span()).ok());
  auto bytes = TestPayload(5, 5, 8 * a);
  std::memcpy(arena.data.get(), bytes.data(), bytes.size());
  IoSegment w{arena.data.get(), 8 * a};
  IoOp write;
  write.type = IoOp::Type::kWrite;
  write.offset = 16 * a;
  write.segments = {&w, 1};
  ASSERT_TRUE(dev->Submit({&write, 1}).ok());
  IoSegment r{arena.data.get() + 32 * a, 8 * a};
  IoOp read;
  read.offset = 16 * a;
  read.segments = {&r, 1};
  ASSERT_TRUE(dev->Submit({&read, 1}).ok());
  EXPECT_EQ(std::memcmp(arena.data.get() + 32 * a, bytes.data(), bytes.size()), 0);
}

TEST_P(FileDeviceTest, RejectsMisalignedAndOutOfRangeOps) {
  OPEN_OR_SKIP(dev);
  const uint32_t a = dev->alignment();
  AlignedBuffer buf(2 * a, a);
  IoSegment odd_length{buf.data.get(), a + 512};
  IoSegment odd_address{buf.data.get() + 512, a};
  IoSegment fine{buf.data.get(), a};
  std::vector<IoOp> ops(4);
  ops[0].segments = {&odd_length, 1};
  ops[1].segments = {&odd_address, 1};
  ops[2].segments = {&fine, 1};
  ops[2].offset = 100;
  ops[3].segments = {&fine, 1};
  ops[3].offset = dev->size_bytes();
  EXPECT_TRUE(absl::IsInvalidArgument(dev->Submit(ops)));
  for (const IoOp& op : ops) EXPECT_TRUE(absl::IsInvalidArgument(op.status)) << op.status;
}

TEST_P(FileDeviceTest, KeepsAnExistingFileAndItsBytes) {
  {
    OPEN_OR_SKIP(dev);
    AlignedBuffer buf(4096);
    std::memset(buf.data.get(), 0x5a, 4096);
    IoSegment s{buf.data.get(), 4096};
    IoOp op;
    op.type = IoOp::Type::kWrite;
    op.offset = 4096;
    op.segments = {&s, 1};
    ASSERT_TRUE(dev->Submit({&op, 1}).ok());
  }
  NvmeDeviceOptions o;
  o.capacity_bytes = kCapacity;  // same size: fine
  OPEN_OR_SKIP(dev, o);
  AlignedBuffer buf(4096);
  IoSegment s{buf.data.get(), 4096};
  IoOp op;
  op.offset = 4096;
  op.segments = {&s, 1};
  ASSERT_TRUE(dev->Submit({&op, 1}).ok());
  EXPECT_EQ(buf.data[100], std::byte{0x5a});
}

INSTANTIATE_TEST_SUITE_P(Engines, FileDeviceTest,
                         ::testing::Values(Engine::kIoUring, Engine::kThreadPool),
                         [](const auto& info) {
                           return info.param == Engine::kIoUring ? "IoUring" : "ThreadPool";
                         });

// --- errors that name the problem ---

absl::Status OpenStatus(NvmeDeviceOptions o) {
  o.engine = Engine::kThreadPool;
  return OpenFileDevice(o).status();
}

// A stream keeps its ring for as long as its producer has work. A submitter that finds every
// ring busy must wait for one that no stream holds: here the stream (ring 0) waits inside
// more() for the reader, which finds ring 0 streaming and ring 1 briefly held, and must queue
// on ring 1. Queued on ring 0 it would wait for the stream, which gives up after 5 s.
TEST(UringEngineTest, ASubmitterWaitingForARingDoesNotQueueBehindAStream) {
  TempDir dir;
  const std::string path = dir / "file";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  absl::StatusOr<std::unique_ptr<nvme::IoEngine>> engine = nvme::NewUringEngine(fd, 4, 2);
  if (!engine.ok()) {
    close(fd);
    GTEST_SKIP() << "io_uring is unavailable on this host: " << engine.status();
  }
  AlignedBuffer buf(3 * 4096);
  IoSegment segs[3];
  IoOp ops[3];
  for (int i = 0; i < 3; ++i) {
    segs[i] = {buf.data.get() + i * 4096, 4096};
    ops[i].offset = uint64_t(i) * 4096;
    ops[i].segments = {&segs[i], 1};
  }
  absl::Notification stream_open, holder_in, reader_started, reader_done;
  bool reader_came_first = false;
  std::thread stream([&] {
    IoOp* first[] = {&ops[0]};
    bool asked = false;
    (*engine)->RunStream(
        first, [](IoOp*) {},
        [&]() -> std::span<IoOp* const> {
          if (!asked) {
            asked = true;
            stream_open.Notify();
            reader_came_first = reader_done.WaitForNotificationWithTimeout(absl::Seconds(5));
          }
          return {};
        });
  });
  std::thread holder([&] {
    stream_open.WaitForNotification();
    IoOp* mine[] = {&ops[1]};
    (*engine)->Run(mine, [&](IoOp*) {  // keeps ring 1 until the reader is waiting
      holder_in.Notify();
      reader_started.WaitForNotification();
      absl::SleepFor(absl::Milliseconds(50));
    });
  });
  holder_in.WaitForNotification();
  reader_started.Notify();
  IoOp* mine[] = {&ops[2]};
  (*engine)->Run(mine, [](IoOp*) {});
  reader_done.Notify();
  holder.join();
  stream.join();
  EXPECT_TRUE(reader_came_first) << "the reader waited for the stream's ring";
  for (const IoOp& op : ops) EXPECT_TRUE(op.status.ok()) << op.status;
  engine->reset();
  close(fd);
}

TEST(FileDeviceErrorsTest, MissingDirectory) {
  TempDir dir;
  NvmeDeviceOptions o;
  o.path = dir / "no/such/dir/dev";
  o.capacity_bytes = kCapacity;
  absl::Status s = OpenStatus(o);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_NE(s.message().find("does not exist"), std::string::npos) << s;
}

TEST(FileDeviceErrorsTest, MissingFileWithoutCreate) {
  TempDir dir;
  NvmeDeviceOptions o;
  o.path = dir / "dev";
  o.capacity_bytes = kCapacity;
  o.create_if_missing = false;
  EXPECT_TRUE(absl::IsNotFound(OpenStatus(o)));
}

TEST(FileDeviceErrorsTest, NewFileNeedsACapacity) {
  TempDir dir;
  NvmeDeviceOptions o;
  o.path = dir / "dev";
  absl::Status s = OpenStatus(o);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("--nvme-capacity"), std::string::npos) << s;
  EXPECT_FALSE(std::filesystem::exists(o.path));
}

TEST(FileDeviceErrorsTest, WrongSizeFileIsRefusedAndKept) {
  TempDir dir;
  const std::string path = dir / "dev";
  { std::ofstream(path) << std::string(12345, 'x'); }
  NvmeDeviceOptions o;
  o.path = path;
  o.capacity_bytes = kCapacity;
  absl::Status s = OpenStatus(o);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(s.message().find("12345"), std::string::npos) << s;
  EXPECT_EQ(std::filesystem::file_size(path), 12345u);
}

TEST(FileDeviceErrorsTest, DirectoryIsNotADevice) {
  TempDir dir;
  NvmeDeviceOptions o;
  o.path = dir.path();
  o.capacity_bytes = kCapacity;
  EXPECT_TRUE(absl::IsFailedPrecondition(OpenStatus(o)));
}

TEST(FileDeviceErrorsTest, SecondOpenerIsTurnedAway) {
  TempDir dir;
  NvmeDeviceOptions o;
  o.path = dir / "dev";
  o.capacity_bytes = kCapacity;
  o.engine = Engine::kThreadPool;
  auto first = OpenFileDevice(o);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::Status s = OpenFileDevice(o).status();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find("in use"), std::string::npos) << s;
}

TEST(FileDeviceErrorsTest, BadOptions) {
  NvmeDeviceOptions o;
  EXPECT_TRUE(absl::IsInvalidArgument(o.Validate()));
  o.path = "/tmp/x";
  o.queue_depth = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(o.Validate()));
}

// --- the in-memory test device ---

TEST(MemoryDeviceTest, InjectsFaults) {
  auto medium = std::make_shared<testing::MemoryMedium>(1 << 20);
  auto dev = testing::NewMemoryDevice(medium);
  AlignedBuffer buf(8192);
  IoSegment s{buf.data.get(), 8192};
  IoOp op;
  op.type = IoOp::Type::kWrite;
  op.segments = {&s, 1};
  medium->FailWritesAfter(8192, ENOSPC);
  EXPECT_TRUE(dev->Submit({&op, 1}).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(dev->Submit({&op, 1})));
  medium->FailReads(EIO);
  op.type = IoOp::Type::kRead;
  EXPECT_TRUE(absl::IsUnavailable(dev->Submit({&op, 1})));
  medium->FailSyncs(EIO);
  EXPECT_TRUE(absl::IsUnavailable(dev->Sync()));
  medium->ClearFaults();
  EXPECT_TRUE(dev->Submit({&op, 1}).ok());
  EXPECT_TRUE(dev->Sync().ok());
  medium->FlipByte(10);
  EXPECT_EQ(medium->Read(10, 1)[0], std::byte{0xff});
}

TEST(MemoryDeviceTest, TornWritesLandTheirBudgetThenFailAndHooksRunFirst) {
  auto medium = std::make_shared<testing::MemoryMedium>(1 << 20);
  auto dev = testing::NewMemoryDevice(medium);
  AlignedBuffer buf(3 * 4096);
  std::memset(buf.data.get(), 0x6b, buf.size);
  IoSegment s{buf.data.get(), buf.size};
  IoOp op;
  op.type = IoOp::Type::kWrite;
  op.segments = {&s, 1};
  int hooks = 0;
  medium->OnWrite([&] { ++hooks; });
  medium->FailWritesAfter(5000, EIO, /*torn=*/true);
  EXPECT_TRUE(absl::IsUnavailable(dev->Submit({&op, 1})));
  EXPECT_EQ(hooks, 1);
  EXPECT_EQ(medium->Read(4999, 1)[0], std::byte{0x6b});     // the first 5000 bytes landed
  EXPECT_EQ(medium->Read(5000, 1)[0], std::byte{0});        // the rest did not
  EXPECT_EQ(medium->writes(), 0u);                          // a failed op is no completed write
  EXPECT_TRUE(absl::IsUnavailable(dev->Submit({&op, 1})));  // the budget is spent
  medium->ClearFaults();
  EXPECT_TRUE(dev->Submit({&op, 1}).ok());
  EXPECT_EQ(medium->Read(3 * 4096 - 1, 1)[0], std::byte{0x6b});
  medium->OnWrite(nullptr);
  EXPECT_TRUE(dev->Submit({&op, 1}).ok());
  EXPECT_EQ(hooks, 3);
}

}  // namespace
}  // namespace kvtier::tiers
