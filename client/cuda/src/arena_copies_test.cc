// CopyQueue and ArenaPins on the GPU: copies to and from host memory standing in for the
// daemon's arena are cut at its 64 MiB granule boundaries (a copy must lie within one
// registration to run as a pinned one), every granule touched is registered once, contiguous
// copies join only within a granule, small pieces go to the piece-copy kernel where the device
// reaches the host memory, and the bytes arrive intact both ways. Skips (exit 77) without a
// CUDA device.
#include "arena_copies.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace kvtier::client {
namespace {

constexpr size_t kGranule = ArenaPins::kGranule;

void Check(cudaError_t e) { ASSERT_EQ(e, cudaSuccess) << cudaGetErrorString(e); }

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

TEST(ArenaCopiesTest, CopiesAreCutAtGranulesAndArriveIntact) {
  // Two whole granules and a short last one, as a daemon's arena of 130 MiB would be.
  const size_t arena_bytes = 2 * kGranule + (2 << 20);
  std::unique_ptr<std::byte, FreeDeleter> arena(
      static_cast<std::byte*>(std::aligned_alloc(4096, arena_bytes)));
  ASSERT_NE(arena, nullptr);
  std::memset(arena.get(), 0, arena_bytes);
  const size_t device_bytes = 8 << 20;
  std::vector<std::byte> pattern(device_bytes);
  for (size_t i = 0; i < device_bytes; ++i) pattern[i] = std::byte(i * 131 + (i >> 13));
  std::byte* device = nullptr;
  Check(cudaMalloc(reinterpret_cast<void**>(&device), device_bytes));
  Check(cudaMemcpy(device, pattern.data(), device_bytes, cudaMemcpyHostToDevice));
  cudaStream_t stream = nullptr;
  Check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  {
    ArenaPins pins({arena.get(), arena_bytes});
    // Device bytes [0, 4 MiB) to the 4 MiB around the first boundary, then [4, 6 MiB) right
    // after them (contiguous on both sides, but in the next granule's part), then 2 MiB into
    // the short last granule.
    std::byte* across = arena.get() + kGranule - (2 << 20);
    std::byte* last = arena.get() + 2 * kGranule;
    CopyQueue out(cudaMemcpyDeviceToHost, stream, &pins);
    ASSERT_TRUE(out.Add(across, device, 4 << 20).ok());
    EXPECT_EQ(out.queued(), 2u) << "a copy across a granule boundary is cut in two";
    ASSERT_TRUE(out.Add(across + (4 << 20), device + (4 << 20), 2 << 20).ok());
    EXPECT_EQ(out.queued(), 2u) << "a contiguous copy within the granule joins the last one";
    ASSERT_TRUE(out.Add(last, device + (6 << 20), 2 << 20).ok());
    EXPECT_EQ(out.queued(), 3u);
    ASSERT_TRUE(out.Flush().ok());
    EXPECT_EQ(out.queued(), 0u);
    Check(cudaStreamSynchronize(stream));
    EXPECT_EQ(pins.registered(), 3u);
    EXPECT_EQ(pins.failed(), 0u);
    EXPECT_EQ(std::memcmp(across, pattern.data(), 6 << 20), 0);
    EXPECT_EQ(std::memcmp(last, pattern.data() + (6 << 20), 2 << 20), 0);
    EXPECT_EQ(arena.get()[kGranule - (2 << 20) - 1], std::byte{0}) << "wrote before the copy";

    // And back: the same ranges into a cleared device buffer.
    Check(cudaMemset(device, 0, device_bytes));
    CopyQueue in(cudaMemcpyHostToDevice, stream, &pins);
    ASSERT_TRUE(in.Add(device, across, 6 << 20).ok());
    EXPECT_EQ(in.queued(), 2u);
    ASSERT_TRUE(in.Add(device + (6 << 20), last, 2 << 20).ok());
    ASSERT_TRUE(in.Flush().ok());
    Check(cudaStreamSynchronize(stream));
    EXPECT_EQ(pins.registered(), 3u) << "each granule is registered once";
    std::vector<std::byte> back(device_bytes);
    Check(cudaMemcpy(back.data(), device, device_bytes, cudaMemcpyDeviceToHost));
    EXPECT_TRUE(back == pattern);

    // Device to device and host memory outside the arena: no cutting, no registration.
    CopyQueue plain(cudaMemcpyDeviceToHost, stream, &pins);
    std::vector<std::byte> outside(2 << 20);
    ASSERT_TRUE(plain.Add(outside.data(), device, 1 << 20).ok());
    ASSERT_TRUE(plain.Add(outside.data() + (1 << 20), device + (1 << 20), 1 << 20).ok());
    EXPECT_EQ(plain.queued(), 1u);
    ASSERT_TRUE(plain.Flush().ok());
    Check(cudaStreamSynchronize(stream));
    EXPECT_EQ(std::memcmp(outside.data(), pattern.data(), 2 << 20), 0);
  }
  // Small pieces by the kernel: device threads read and write the registered arena directly;
  // aligned, 4-byte aligned and odd pieces, both ways, beside a large one for the engines.
  {
    ArenaPins pins({arena.get(), arena_bytes});
    std::memset(arena.get(), 0, 8 << 20);
    struct Piece {
      size_t arena_offset, device_offset, bytes;
    };
    const Piece pieces[] = {{0, 0, 11'264},
                            {16'384, 20'000, 4'096},
                            {40'964, 30'004, 999},
                            {70'001, 50'003, 3'333},
                            {1 << 20, 1 << 20, 1 << 20}};
    CopyQueue out(cudaMemcpyDeviceToHost, stream, &pins, /*kernel_copies=*/true);
    for (const Piece& p : pieces) {
      ASSERT_TRUE(out.Add(arena.get() + p.arena_offset, device + p.device_offset, p.bytes).ok());
    }
    EXPECT_EQ(out.queued(), 5u);
    EXPECT_EQ(out.queued_for_kernel(), 4u) << "pieces under 128 KiB go to the kernel";
    ASSERT_TRUE(out.Flush().ok());
    Check(cudaStreamSynchronize(stream));
    for (const Piece& p : pieces) {
      EXPECT_EQ(
          std::memcmp(arena.get() + p.arena_offset, pattern.data() + p.device_offset, p.bytes), 0)
          << "piece at " << p.arena_offset;
    }
    EXPECT_EQ(arena.get()[16'384 + 4'096], std::byte{0}) << "wrote past a piece";
    Check(cudaMemset(device, 0, device_bytes));
    CopyQueue in(cudaMemcpyHostToDevice, stream, &pins, /*kernel_copies=*/true);
    for (const Piece& p : pieces) {
      ASSERT_TRUE(in.Add(device + p.device_offset, arena.get() + p.arena_offset, p.bytes).ok());
    }
    EXPECT_EQ(in.queued_for_kernel(), 4u);
    ASSERT_TRUE(in.Flush().ok());
    Check(cudaStreamSynchronize(stream));
    std::vector<std::byte> back(device_bytes);
    Check(cudaMemcpy(back.data(), device, device_bytes, cudaMemcpyDeviceToHost));
    for (const Piece& p : pieces) {
      EXPECT_EQ(
          std::memcmp(back.data() + p.device_offset, pattern.data() + p.device_offset, p.bytes), 0)
          << "piece at " << p.device_offset;
    }
    // Pieces the device cannot reach (host memory never registered) stay with the engines.
    std::vector<std::byte> unregistered(4096);
    CopyQueue engines(cudaMemcpyDeviceToHost, stream, &pins, /*kernel_copies=*/true);
    ASSERT_TRUE(engines.Add(unregistered.data(), device, 4096).ok());
    EXPECT_EQ(engines.queued_for_kernel(), 0u);
    ASSERT_TRUE(engines.Flush().ok());
    Check(cudaStreamSynchronize(stream));
  }
  // The pins unregistered their granules: registering one again succeeds.
  EXPECT_EQ(cudaHostRegister(arena.get(), kGranule, cudaHostRegisterPortable), cudaSuccess);
  Check(cudaHostUnregister(arena.get()));
  Check(cudaStreamDestroy(stream));
  Check(cudaFree(device));
}

// One ArenaPins per mapping in the process: the holders share it, the granules stay registered
// until the last one lets go, and a granule registered by someone else goes to the copy
// engines, never to device threads.
TEST(ArenaCopiesTest, PinsAreSharedPerMappingAndOthersRegistrationsStayWithTheEngines) {
  const size_t arena_bytes = 2 * kGranule;
  std::unique_ptr<std::byte, FreeDeleter> arena(
      static_cast<std::byte*>(std::aligned_alloc(4096, arena_bytes)));
  ASSERT_NE(arena, nullptr);
  std::memset(arena.get(), 0, arena_bytes);
  const std::span<std::byte> span(arena.get(), arena_bytes);
  std::byte* device = nullptr;
  Check(cudaMalloc(reinterpret_cast<void**>(&device), 1 << 20));
  Check(cudaMemset(device, 0x5A, 1 << 20));
  {
    std::shared_ptr<ArenaPins> a = ArenaPins::ForArena(span);
    std::shared_ptr<ArenaPins> b = ArenaPins::ForArena(span);
    EXPECT_EQ(a.get(), b.get());
    EXPECT_TRUE(a->Ensure(arena.get()));
    a.reset();  // b still holds the registration
    EXPECT_EQ(cudaHostRegister(arena.get(), kGranule, cudaHostRegisterPortable),
              cudaErrorHostMemoryAlreadyRegistered);
    cudaGetLastError();
    EXPECT_TRUE(b->Ensure(arena.get()));
  }
  // Released by all: unregistered.
  ASSERT_EQ(cudaHostRegister(arena.get() + kGranule, kGranule, cudaHostRegisterPortable),
            cudaSuccess)
      << "the second granule was never registered";
  ASSERT_EQ(cudaHostRegister(arena.get(), kGranule, cudaHostRegisterPortable), cudaSuccess)
      << "the first granule is still registered after its last holder let go";
  Check(cudaHostUnregister(arena.get()));
  {
    // The second granule is someone else's now: the engines copy into it, not the kernel.
    std::shared_ptr<ArenaPins> pins = ArenaPins::ForArena(span);
    EXPECT_FALSE(pins->Ensure(arena.get() + kGranule));
    CopyQueue out(cudaMemcpyDeviceToHost, nullptr, pins.get(), /*kernel_copies=*/true);
    ASSERT_TRUE(out.Add(arena.get() + kGranule, device, 4096).ok());
    ASSERT_TRUE(out.Add(arena.get(), device, 4096).ok());
    EXPECT_EQ(out.queued(), 2u);
    EXPECT_EQ(out.queued_for_kernel(), 1u) << "only the granule registered by the pins";
    ASSERT_TRUE(out.Flush().ok());
    Check(cudaDeviceSynchronize());
    EXPECT_EQ(arena.get()[kGranule + 4095], std::byte{0x5A});
    EXPECT_EQ(arena.get()[4095], std::byte{0x5A});
  }
  Check(cudaHostUnregister(arena.get() + kGranule));
  Check(cudaFree(device));
}

}  // namespace
}  // namespace kvtier::client
