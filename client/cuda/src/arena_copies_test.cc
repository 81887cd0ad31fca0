// CopyQueue and ArenaPins on the GPU: copies to and from host memory standing in for the
// daemon's arena are cut at its 64 MiB granule boundaries (a copy must lie within one
// registration to run as a pinned one), every granule touched is registered once, contiguous
// copies join only within a granule, and the bytes arrive intact both ways. Skips (exit 77)
// without a CUDA device.
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
  // The pins unregistered their granules: registering one again succeeds.
  EXPECT_EQ(cudaHostRegister(arena.get(), kGranule, cudaHostRegisterPortable), cudaSuccess);
  Check(cudaHostUnregister(arena.get()));
  Check(cudaStreamDestroy(stream));
  Check(cudaFree(device));
}

}  // namespace
}  // namespace kvtier::client
