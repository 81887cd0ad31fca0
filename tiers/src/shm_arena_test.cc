#include "tiers/src/shm_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "gtest/gtest.h"

namespace kvtier::tiers::internal {
namespace {

TEST(ShmArenaTest, TableCoversEveryPageIncludingItself) {
  for (uint64_t pages : {1ull, 511ull, 512ull, 513ull, 262144ull, 1000003ull}) {
    const uint64_t data = pages * 4096;
    const uint64_t table = ShmArena::TableBytesFor(4096, data);
    EXPECT_EQ(table % 4096, 0u);
    EXPECT_GE(table / 8, (table + data) / 4096) << pages;
    // Not wasteful: one page less would not do.
    EXPECT_LT((table - 4096) / 8, (table - 4096 + data) / 4096) << pages;
  }
  // 1 GiB of 4 KiB pages: 262144 data + 514 table entries -> 514 pages of table.
  EXPECT_EQ(ShmArena::TableBytesFor(4096, 1ull << 30), (2ull << 20) + 2 * 4096);
}

TEST(ShmArenaTest, CreatesSealedMappedMemfd) {
  auto arena = ShmArena::Create("kvtier-test", 4096, 64 * 4096, /*preallocate=*/true);
  ASSERT_TRUE(arena.ok()) << arena.status();
  ShmArena& a = **arena;
  EXPECT_EQ(a.table_bytes(), 4096u);
  EXPECT_EQ(a.size(), 65 * 4096u);
  EXPECT_EQ(a.data_offset(), 4096u);
  EXPECT_EQ(a.data_bytes(), 64 * 4096u);
  EXPECT_EQ(lseek(a.fd(), 0, SEEK_END), static_cast<off_t>(a.size()));
  EXPECT_NE(fcntl(a.fd(), F_GETFD) & FD_CLOEXEC, 0);
  const int seals = fcntl(a.fd(), F_GET_SEALS);
  EXPECT_NE(seals & F_SEAL_SHRINK, 0);
  EXPECT_NE(seals & F_SEAL_GROW, 0);
  EXPECT_NE(ftruncate(a.fd(), 0), 0);  // a client cannot pull the pages from under us
  // Fresh memory reads as zero, and is writable.
  for (uint64_t i = 0; i < a.size(); i += 4096) EXPECT_EQ(a.base()[i], std::byte{0});
  std::memset(a.base() + a.data_offset(), 0x5a, a.data_bytes());
}

TEST(ShmArenaTest, GenerationsBumpPerPageAndShowInAnotherMapping) {
  auto arena = ShmArena::Create("kvtier-test", 4096, 8 * 4096, /*preallocate=*/false);
  ASSERT_TRUE(arena.ok()) << arena.status();
  ShmArena& a = **arena;
  const uint64_t slot = a.data_offset() + 3 * 4096;
  EXPECT_EQ(a.Generation(slot), 0u);
  a.BumpGeneration(slot);
  a.BumpGeneration(slot + 100);  // same page
  EXPECT_EQ(a.Generation(slot), 2u);
  EXPECT_EQ(a.Generation(slot + 4096), 0u);

  void* other = mmap(nullptr, a.size(), PROT_READ, MAP_SHARED, a.fd(), 0);
  ASSERT_NE(other, MAP_FAILED);
  const auto* table = static_cast<const uint64_t*>(other);
  EXPECT_EQ(table[slot / 4096], 2u);
  munmap(other, a.size());
}

TEST(ShmArenaTest, LargePagesIndexTheTableByTheirSize) {
  auto arena = ShmArena::Create("kvtier-test", 65536, 4 * 65536, /*preallocate=*/false);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ((*arena)->table_bytes(), 65536u);
  (*arena)->BumpGeneration((*arena)->data_offset() + 65536);
  const auto* table = reinterpret_cast<const uint64_t*>((*arena)->base());
  EXPECT_EQ(table[2], 1u);
}

TEST(ShmArenaTest, SizeOverTheLimitIsResourceExhaustedNamingTheFlag) {
  // A file-size limit makes ftruncate fail with EFBIG, the same way a full /dev/shm or memory
  // cgroup fails the daemon, without really exhausting this machine's memory.
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  small.rlim_cur = 1 << 20;
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  auto arena = ShmArena::Create("kvtier-test", 4096, 64 << 20, /*preallocate=*/true);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(arena.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(arena.status())) << arena.status();
  EXPECT_NE(arena.status().message().find("--dram-capacity"), absl::string_view::npos);
  EXPECT_NE(arena.status().message().find("ftruncate"), absl::string_view::npos);
}

}  // namespace
}  // namespace kvtier::tiers::internal
