// Compression through the real kvtierd: COMPRESSION_KVZ namespaces, blocks encoded by the
// client's CPU codec (over the shared arena and over TCP), decoded on get or handed over as
// frames, demotion that encodes blocks on their way to NVMe and promotion that serves the
// frames back, across a restart; the stats that show the ratio; and the errors for requests
// that get compression wrong; demotions encoded on the daemon's GPU where there is one (and a
// clear refusal to start where there is none). The client's GPU path has its own test
// (client/cuda, label gpu).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "kv_like_data.h"
#include "kvtier/client/client.h"
#include "kvtier/compression/kv_codec.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/daemon_test.h"
#include "tests/testing/seeded_blocks.h"
#include "tests/testing/stats_lookup.h"
#if KVTIER_HAVE_CUDA
#include "kvtier/kernels/cuda_status.h"
#endif

namespace kvtier {
namespace {

using client::Client;
using client::IsStored;
using client::NamespaceHandle;
using testing::DaemonOptions;
using testing::DaemonProcess;

constexpr uint64_t kBlockBytes = 256 << 10;  // 128 tokens x 8 heads x 128 dims of bf16

// KV-like bf16 content for block `i` (keys for even i, values for odd).
std::vector<std::byte> KvBlock(uint64_t i) {
  testing::KvLikeOptions o;
  o.dtype = KvDtype::kBf16;
  o.keys = i % 2 == 0;
  o.tokens = 128;
  o.heads = 8;
  o.head_dim = 128;
  o.seed = i + 1;
  return testing::GenerateKvLike(o);
}

BlockKey Key(uint64_t i) { return testing::SeededKey(i ^ 0x5eed); }

NamespaceDescriptor Descriptor(const std::string& model, const std::string& dtype = "bf16",
                               uint64_t block_bytes = kBlockBytes) {
  return testing::TestDescriptor(model, block_bytes, dtype);
}

// Whether this machine has a GPU kvtierd can use (only builds with CUDA can).
bool HasUsableGpu() {
#if KVTIER_HAVE_CUDA
  const absl::StatusOr<int> devices = CudaDeviceCount();
  return devices.ok() && *devices > 0;
#else
  return false;
#endif
}

proto::NamespaceOptions Kvz() {
  proto::NamespaceOptions o;
  o.set_compression(proto::COMPRESSION_KVZ);
  return o;
}

class CompressionTest : public testing::DaemonTest {
 protected:
  void Start(std::vector<std::string> args = {}, const std::string& dram = "64MiB") {
    options_.dram_capacity = dram;
    options_.tcp = true;
    options_.extra_args = std::move(args);
    StartDaemon();
  }

  void OnConnect() override { ASSERT_TRUE(client_->shared_arena()); }

  NamespaceHandle Open(const std::string& model, const proto::NamespaceOptions& options) {
    auto ns = client_->OpenNamespace(Descriptor(model), options);
    EXPECT_TRUE(ns.ok()) << ns.status();
    return ns.ok() ? *ns : NamespaceHandle{};
  }

  static void PutBlocks(Client* c, const NamespaceHandle& ns, uint64_t begin, uint64_t end,
                        bool cpu_compress) {
    for (uint64_t i = begin; i < end; ++i) {
      const std::vector<std::byte> bytes = KvBlock(i);
      const BlockKey key = Key(i);
      std::span<const std::byte> block(bytes);
      auto r = c->Put(ns, {&key, 1}, {&block, 1}, {.cpu_compress = cpu_compress});
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(IsStored((*r)[0])) << i << ": " << (*r)[0];
    }
  }

  // Gets block i (decoded) and checks its bytes; returns where it was found.
  static proto::Tier ExpectBlock(Client* c, const NamespaceHandle& ns, uint64_t i) {
    std::vector<std::byte> out(kBlockBytes);
    const BlockKey key = Key(i);
    std::span<std::byte> o(out);
    auto r = c->Get(ns, {&key, 1}, {&o, 1});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return proto::TIER_NONE;
    EXPECT_TRUE((*r)[0].status.ok()) << "block " << i << ": " << (*r)[0].status;
    EXPECT_EQ((*r)[0].length, kBlockBytes) << "block " << i;
    EXPECT_EQ((*r)[0].codec, 0);
    EXPECT_TRUE(out == KvBlock(i)) << "block " << i << " came back with other bytes";
    return (*r)[0].tier;
  }

  proto::NamespaceStats NsStats(const NamespaceHandle& ns) {
    auto s = client_->Stats();
    EXPECT_TRUE(s.ok()) << s.status();
    const proto::NamespaceStats* n = s.ok() ? testing::FindNamespaceStats(*s, ns.id) : nullptr;
    EXPECT_NE(n, nullptr) << "namespace " << ns.id << " not in stats";
    return n != nullptr ? *n : proto::NamespaceStats();
  }

  proto::TierStats TierStats(proto::Tier tier) {
    auto s = client_->Stats();
    EXPECT_TRUE(s.ok()) << s.status();
    const proto::TierStats* t = s.ok() ? testing::FindTierStats(*s, tier) : nullptr;
    EXPECT_NE(t, nullptr) << "tier " << tier << " not in stats";
    return t != nullptr ? *t : proto::TierStats();
  }
};

TEST_F(CompressionTest, CpuEncodedBlocksRoundTripThroughTheArenaAndTcp) {
  Start();
  NamespaceHandle ns = Open("cpu", Kvz());
  EXPECT_EQ(ns.options.compression(), proto::COMPRESSION_KVZ);
  PutBlocks(client_.get(), ns, 0, 16, /*cpu_compress=*/true);
  for (uint64_t i = 0; i < 16; ++i) EXPECT_EQ(ExpectBlock(client_.get(), ns, i), proto::TIER_DRAM);

  // The daemon holds frames: fewer bytes than the blocks stand for, in DRAM slots to match.
  proto::NamespaceStats n = NsStats(ns);
  EXPECT_EQ(n.options().compression(), proto::COMPRESSION_KVZ);
  EXPECT_EQ(n.blocks(), 16u);
  EXPECT_EQ(n.raw_bytes(), 16 * kBlockBytes);
  EXPECT_LT(n.used_bytes() * 5, n.raw_bytes() * 4) << "expected a ratio above 1.25";
  proto::TierStats dram = TierStats(proto::TIER_DRAM);
  EXPECT_EQ(dram.raw_bytes(), 16 * kBlockBytes);
  EXPECT_EQ(dram.stored_bytes(), n.used_bytes());
  EXPECT_LT(dram.used_bytes(), 16 * kBlockBytes) << "slots should be smaller than blocks";

  // A TCP client gets the frames inline and decodes them; its own encoded puts read back over
  // the arena.
  auto tcp = Client::Connect(daemon_->tcp_uri(), {});
  ASSERT_TRUE(tcp.ok()) << tcp.status();
  for (uint64_t i = 0; i < 16; ++i) ExpectBlock(tcp->get(), ns, i);
  PutBlocks(tcp->get(), ns, 100, 104, /*cpu_compress=*/true);
  for (uint64_t i = 100; i < 104; ++i) ExpectBlock(client_.get(), ns, i);

  // With decode off, the frame comes as it is, and the CPU codec decodes it.
  for (Client* c : {client_.get(), tcp->get()}) {
    std::vector<std::byte> frame(kBlockBytes);
    const BlockKey key = Key(3);
    std::span<std::byte> o(frame);
    auto r = c->Get(ns, {&key, 1}, {&o, 1}, {.decode = false});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE((*r)[0].status.ok()) << (*r)[0].status;
    EXPECT_EQ((*r)[0].codec, 1);
    EXPECT_EQ((*r)[0].raw_length, kBlockBytes);
    ASSERT_LT((*r)[0].length, kBlockBytes);
    frame.resize((*r)[0].length);
    auto decoded = Decompress(frame);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(*decoded == KvBlock(3));
  }

  // Bytes that do not compress are stored as they are.
  const std::vector<std::byte> noise = testing::SeededBytes(77, kBlockBytes);
  const BlockKey key = Key(500);
  std::span<const std::byte> block(noise);
  auto put = client_->Put(ns, {&key, 1}, {&block, 1}, {.cpu_compress = true});
  ASSERT_TRUE(put.ok() && (*put)[0].ok());
  std::vector<std::byte> out(kBlockBytes);
  std::span<std::byte> o(out);
  auto got = client_->Get(ns, {&key, 1}, {&o, 1}, {.decode = false});
  ASSERT_TRUE(got.ok() && (*got)[0].status.ok());
  EXPECT_EQ((*got)[0].codec, 0);
  EXPECT_TRUE(out == noise);
}

TEST_F(CompressionTest, ADramQuotaCountsTheSlotsOfFrames) {
  // These frames take slots of 12/16 of a block (a ratio of about 1.4): a quota of 9 blocks
  // holds 12 of them, more than 9 in any case, and never more slot bytes than it.
  Start();
  NamespaceHandle ns = Open("quota", Kvz());
  proto::NamespaceLimits limits;
  limits.set_dram_quota_bytes(9 * kBlockBytes);
  ASSERT_TRUE(client_->SetLimits(ns, limits).ok());
  PutBlocks(client_.get(), ns, 0, 24, /*cpu_compress=*/true);
  proto::NamespaceStats n = NsStats(ns);
  EXPECT_GT(n.blocks(), 9u) << "frames should let more blocks into the quota than full ones";
  EXPECT_LE(n.dram_slot_bytes(), 9 * kBlockBytes);
  EXPECT_GE(n.dram_slot_bytes(), n.used_bytes());
  EXPECT_GT(n.quota_evictions(), 0u);
  EXPECT_EQ(n.blocks() + n.quota_evictions(), 24u);
  // The newest blocks stay, and read back whole.
  for (uint64_t i = 24 - n.blocks(); i < 24; ++i) {
    EXPECT_EQ(ExpectBlock(client_.get(), ns, i), proto::TIER_DRAM) << i;
  }
}

TEST_F(CompressionTest, DemotionEncodesAndPromotionServesFramesAcrossARestart) {
  const std::vector<std::string> nvme = {"--nvme-path",       "{data_dir}/nvme.img",
                                         "--nvme-capacity",   "128MiB",
                                         "--nvme-admission",  "all",
                                         "--eviction-policy", "lru"};
  Start(nvme, "16MiB");  // 64 blocks of DRAM
  NamespaceHandle ns = Open("demote", Kvz());
  PutBlocks(client_.get(), ns, 0, 160, /*cpu_compress=*/false);  // stored as sent
  std::this_thread::sleep_for(std::chrono::milliseconds(500));   // demotion batches

  // What went to flash was encoded on the way.
  proto::NamespaceStats n = NsStats(ns);
  ASSERT_GT(n.nvme_written_raw_bytes(), 0u);
  EXPECT_LT(n.nvme_written_stored_bytes() * 5, n.nvme_written_raw_bytes() * 4);
  proto::TierStats flash = TierStats(proto::TIER_NVME);
  EXPECT_EQ(flash.raw_bytes(), n.nvme_written_raw_bytes());
  EXPECT_EQ(flash.stored_bytes(), n.nvme_written_stored_bytes());

  // Every block reads back exactly; the early ones from NVMe, as frames the client decodes.
  EXPECT_EQ(ExpectBlock(client_.get(), ns, 0), proto::TIER_NVME);
  for (uint64_t i = 1; i < 160; ++i) ExpectBlock(client_.get(), ns, i);
  // A promoted frame sits in DRAM encoded: raw bytes above stored bytes there too.
  n = NsStats(ns);
  EXPECT_GT(n.raw_bytes(), n.used_bytes());

  // A restart keeps the namespace's options and the records' codecs.
  client_.reset();
  auto stopped = daemon_->Stop(SIGTERM);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  ASSERT_TRUE(daemon_->Restart(options_).ok());
  ConnectClient();
  auto none = client_->OpenNamespace(Descriptor("demote"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(none.status())) << none.status();
  ns = Open("demote", Kvz());
  // DRAM starts empty: these ten are promoted from their encoded records (demoted first, never
  // written again), into slots of about the frame's size, not block_bytes.
  for (uint64_t i = 0; i < 10; ++i) EXPECT_EQ(ExpectBlock(client_.get(), ns, i), proto::TIER_NVME);
  proto::TierStats dram = TierStats(proto::TIER_DRAM);
  EXPECT_EQ(dram.blocks(), 10u);
  EXPECT_EQ(dram.raw_bytes(), 10 * kBlockBytes);
  EXPECT_LT(dram.used_bytes() * 5, 10 * kBlockBytes * 4) << "promoted frames in full-size slots";
  for (uint64_t i = 0; i < 160; ++i) ExpectBlock(client_.get(), ns, i);
}

// With nvme.demotion_encoder = "gpu", the daemon's GPU encodes demotions (the stats say so,
// and every block reads back exactly); on a machine without a usable GPU (CI) the daemon
// refuses to start and says what to set instead.
TEST_F(CompressionTest, TheGpuEncodesDemotionsWhenAskedTo) {
  options_.stderr_path = (std::filesystem::temp_directory_path() /
                          ("kvtier-gpu-encoder-" + std::to_string(::getpid()) + ".log"))
                             .string();
  struct RemoveLog {
    std::string path;
    ~RemoveLog() { std::filesystem::remove(path); }
  } remove_log{options_.stderr_path};
  const std::vector<std::string> nvme = {"--nvme-path",
                                         "{data_dir}/nvme.img",
                                         "--nvme-capacity",
                                         "128MiB",
                                         "--nvme-admission",
                                         "all",
                                         "--nvme-demotion-encoder",
                                         "gpu"};
  if (!HasUsableGpu()) {
    options_.dram_capacity = "16MiB";
    options_.extra_args = nvme;
    auto d = testing::DaemonProcess::Start(options_);
    if (absl::IsNotFound(d.status())) GTEST_SKIP() << d.status();
    ASSERT_FALSE(d.ok()) << "kvtierd started with demotion_encoder = gpu and no GPU";
    EXPECT_NE(DaemonLog().find("set it to \"auto\" or \"cpu\""), std::string::npos) << DaemonLog();
    return;
  }
  Start(nvme, "16MiB");  // 64 blocks of DRAM
  NamespaceHandle ns = Open("demote-gpu", Kvz());
  PutBlocks(client_.get(), ns, 0, 160, /*cpu_compress=*/false);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // demotion batches
  const proto::TierStats flash = TierStats(proto::TIER_NVME);
  EXPECT_EQ(flash.nvme().demotion_encoder().rfind("gpu (", 0), 0u)
      << flash.nvme().demotion_encoder();
  ASSERT_GT(flash.nvme().demotions(), 0u);
  proto::NamespaceStats n = NsStats(ns);
  EXPECT_LT(n.nvme_written_stored_bytes() * 5, n.nvme_written_raw_bytes() * 4);
  EXPECT_EQ(ExpectBlock(client_.get(), ns, 0), proto::TIER_NVME);
  for (uint64_t i = 1; i < 160; ++i) ExpectBlock(client_.get(), ns, i);
}

TEST_F(CompressionTest, RequestsThatGetCompressionWrongAreRefused) {
  Start();
  // Compression of a dtype kvz does not know, or of blocks that are not whole elements.
  auto bad = client_->OpenNamespace(Descriptor("int4", "int4"), Kvz());
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  EXPECT_NE(bad.status().message().find("COMPRESSION_NONE"), std::string::npos) << bad.status();
  bad = client_->OpenNamespace(Descriptor("odd", "bf16", 4097), Kvz());
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  // Options other than the namespace's.
  NamespaceHandle plain = Open("plain", {});
  bad = client_->OpenNamespace(Descriptor("plain"), Kvz());
  EXPECT_TRUE(absl::IsFailedPrecondition(bad.status())) << bad.status();

  // Encoded blocks in a namespace that does not compress.
  const std::vector<std::byte> bytes = KvBlock(1);
  auto frame = Compress(bytes, CodecOptions{});
  ASSERT_TRUE(frame.ok());
  const BlockKey key = Key(1);
  std::span<const std::byte> block(*frame);
  const uint8_t kvz = 1;
  const uint64_t raw = kBlockBytes;
  auto put =
      client_->Put(plain, {&key, 1}, {&block, 1}, {.codecs = {&kvz, 1}, .raw_lengths = {&raw, 1}});
  EXPECT_TRUE(absl::IsInvalidArgument(put.status())) << put.status();

  // A frame that lies about its contents is stored (the daemon does not decode) but never
  // served as wrong bytes: the decoding get reports DataLoss.
  NamespaceHandle z = Open("z", Kvz());
  std::vector<std::byte> damaged = *frame;
  damaged[damaged.size() / 2] ^= std::byte{0x40};
  std::span<const std::byte> damaged_block(damaged);
  put = client_->Put(z, {&key, 1}, {&damaged_block, 1},
                     {.codecs = {&kvz, 1}, .raw_lengths = {&raw, 1}});
  ASSERT_TRUE(put.ok() && (*put)[0].ok()) << put.status();
  std::vector<std::byte> out(kBlockBytes);
  std::span<std::byte> o(out);
  auto got = client_->Get(z, {&key, 1}, {&o, 1});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(absl::IsDataLoss((*got)[0].status)) << (*got)[0].status;
  // A buffer too small for the decoded block is refused before anything is copied.
  std::vector<std::byte> small(kBlockBytes / 2);
  std::span<std::byte> s(small);
  const BlockKey good_key = Key(2);
  const std::vector<std::byte> good = KvBlock(2);
  std::span<const std::byte> good_block(good);
  put = client_->Put(z, {&good_key, 1}, {&good_block, 1}, {.cpu_compress = true});
  ASSERT_TRUE(put.ok() && (*put)[0].ok());
  got = client_->Get(z, {&good_key, 1}, {&s, 1});
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(absl::IsInvalidArgument((*got)[0].status)) << (*got)[0].status;
  EXPECT_EQ((*got)[0].length, kBlockBytes);
}

}  // namespace
}  // namespace kvtier
