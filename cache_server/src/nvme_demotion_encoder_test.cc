// Demotions of a compressed namespace encoded by each demotion encoder kvtierd can choose
// (nvme.demotion_encoder): the CPU codec, and the kvz CUDA codec where the machine has a GPU
// (skipped, saying so, where it has none). Whichever encodes, the frames that reach NVMe and
// come back on a promotion must be the CPU codec's bytes, and decode to the block; the stats
// name the encoder. Real tiers over the in-memory fault-injecting device.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "demotion_encoder.h"
#include "kv_like_data.h"
#include "kvtier/common/testing/manual_clock.h"
#include "kvtier/common/testing/temp_dir.h"
#include "kvtier/compression/codec.h"
#include "kvtier/compression/kv_codec.h"
#include "kvtier/tiers/dram_tier.h"
#include "kvtier/tiers/nvme_tier.h"
#include "kvtier/tiers/testing/nvme_memory_device.h"
#include "nvme_placement.h"
#include "tests/testing/seeded_blocks.h"

namespace kvtier::server {
namespace {

constexpr uint32_t kNs = 1;
constexpr tiers::OwnerId kOwner = 1;
constexpr uint64_t kBlock = 64 << 10;
constexpr uint64_t kBlocks = 200;  // DRAM holds 128 of them: the first ones are demoted

std::vector<std::byte> Content(uint64_t id) {
  ::kvtier::testing::KvLikeOptions o;
  o.dtype = KvDtype::kBf16;
  o.keys = id % 2 == 0;
  o.tokens = 64;
  o.seed = id + 1;
  std::vector<std::byte> kv = ::kvtier::testing::GenerateKvLike(o);
  kv.resize(kBlock);
  return kv;
}

class DemotionEncoderTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::shared_ptr<BatchEncoder>> encoder = NewDemotionEncoder(GetParam(), 2);
    if (GetParam() == "gpu" && !encoder.ok()) {
      GTEST_SKIP() << "no usable GPU here (" << encoder.status()
                   << "); the GPU demotion encoder is tested on a GPU host";
    }
    ASSERT_TRUE(encoder.ok()) << encoder.status();
    encoder_ = *encoder;

    tiers::DramTierOptions dram_options;
    dram_options.capacity_bytes = 8 << 20;
    dram_options.slab_bytes = 1 << 20;
    dram_options.lease_timeout_ns = 1'000'000'000;
    dram_options.preallocate = false;
    auto dram = tiers::DramTier::Create(dram_options, &clock_, nullptr);
    ASSERT_TRUE(dram.ok()) << dram.status();
    dram_ = std::move(*dram);
    ASSERT_TRUE(dram_->AddNamespace(kNs, kBlock, 16).ok());
    tiers::NvmeTierOptions nvme_options;
    nvme_options.index_path = dir_.path() + "/index";
    nvme_options.region_bytes = 4 << 20;
    auto nvme = tiers::NvmeTier::Create(nvme_options, tiers::testing::NewMemoryDevice(medium_),
                                        &unix_clock_, nullptr);
    ASSERT_TRUE(nvme.ok()) << nvme.status();
    nvme_ = std::move(*nvme);
    NvmePlacementOptions options;
    options.encoder = encoder_;
    placement_ = std::make_unique<NvmePlacement>(options, dram_.get(), nvme_.get(),
                                                 tiers::NewAdmitAllPolicy());
    ASSERT_TRUE(placement_->AddNamespace(kNs, kBlock, KvDtype::kBf16).ok());
  }

  void TearDown() override {
    placement_.reset();
    nvme_.reset();
    dram_.reset();
  }

  void Put(uint64_t id) {
    const BlockKey key = ::kvtier::testing::SeededKey(id);
    const std::vector<uint64_t> lengths = {kBlock};
    const tiers::LeaseGrant grant = dram_->ReservePut(kOwner, kNs, {&key, 1}, lengths);
    ASSERT_EQ(grant.codes[0], absl::StatusCode::kOk);
    const std::vector<std::byte> bytes = Content(id);
    std::memcpy(dram_->arena_base() + grant.slots[0].offset, bytes.data(), bytes.size());
    absl::StatusOr<std::vector<absl::StatusCode>> codes = dram_->CommitPut(kOwner, grant.lease_id);
    ASSERT_TRUE(codes.ok()) << codes.status();
  }

  ::kvtier::testing::ManualClock clock_;
  tiers::UnixClock unix_clock_;
  ::kvtier::testing::TempDir dir_;
  std::shared_ptr<tiers::testing::MemoryMedium> medium_ =
      std::make_shared<tiers::testing::MemoryMedium>(64 << 20);
  std::shared_ptr<BatchEncoder> encoder_;
  std::unique_ptr<tiers::DramTier> dram_;
  std::unique_ptr<tiers::NvmeTier> nvme_;
  std::unique_ptr<NvmePlacement> placement_;
};

TEST_P(DemotionEncoderTest, DemotedFramesAreTheCpuCodecsBytes) {
  for (uint64_t id = 0; id < kBlocks; ++id) ASSERT_NO_FATAL_FAILURE(Put(id));
  ASSERT_TRUE(placement_->Drain(absl::InfiniteFuture()));

  proto::NvmeStats stats;
  placement_->FillStats(placement_->NvmeSnapshot(), &stats);
  EXPECT_EQ(stats.demotion_encoder(), encoder_->Describe());
  EXPECT_EQ(stats.demotion_encoder().rfind(GetParam() + " (", 0), 0u) << stats.demotion_encoder();
  ASSERT_GE(stats.demotions(), kBlocks - 128);

  uint64_t checked = 0;
  for (uint64_t id = 0; id < kBlocks; ++id) {
    const BlockKey key = ::kvtier::testing::SeededKey(id);
    if (dram_->LookupPrefix(kNs, {&key, 1}) == 1) continue;  // still in DRAM: never demoted
    ASSERT_TRUE(placement_->Promote(kNs, {&key, 1})[0]) << "block " << id;
    const tiers::LeaseGrant grant = dram_->AcquireRead(kOwner, kNs, {&key, 1});
    ASSERT_EQ(grant.codes[0], absl::StatusCode::kOk) << "block " << id;
    const tiers::SlotRef& slot = grant.slots[0];
    const std::span<const std::byte> stored(dram_->arena_base() + slot.offset, slot.length);
    EXPECT_EQ(slot.encoding.codec, static_cast<uint8_t>(CodecId::kKvz)) << "block " << id;
    absl::StatusOr<std::vector<std::byte>> cpu_frame =
        Compress(Content(id), CodecOptions{.dtype = KvDtype::kBf16});
    ASSERT_TRUE(cpu_frame.ok());
    EXPECT_TRUE(std::equal(stored.begin(), stored.end(), cpu_frame->begin(), cpu_frame->end()))
        << "block " << id << ": the demoted frame is not the CPU codec's";
    absl::StatusOr<std::vector<std::byte>> decoded = Decompress(stored);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(*decoded == Content(id)) << "block " << id;
    ASSERT_TRUE(dram_->Release(kOwner, grant.lease_id).ok());
    ++checked;
  }
  EXPECT_GE(checked, kBlocks - 128);
}

INSTANTIATE_TEST_SUITE_P(Encoders, DemotionEncoderTest, ::testing::Values("cpu", "gpu"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace kvtier::server
