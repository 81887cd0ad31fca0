// The CUDA codec against the CPU codec (its reference), byte for byte, in both directions: GPU
// frames must equal CPU frames, and the GPU must decode CPU frames back to the input. Inputs
// of awkward sizes, every dtype, random bits, constants and special values; damaged frames
// must be reported, never crash, and never write outside their output. On a mismatch the input
// is written to $KVTIER_DUMP_DIR (default: the current directory) to reproduce it.
// Exits 77 (ctest SKIP) when the machine has no usable CUDA device.
#include "kvtier/compression/gpu_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "kv_like_data.h"
#include "kvtier/compression/kv_codec.h"
#include "kvtier/kernels/cuda_status.h"

namespace kvtier {
namespace {

using Bytes = std::vector<std::byte>;

constexpr KvDtype kAllDtypes[] = {KvDtype::kRaw, KvDtype::kBf16, KvDtype::kFp16, KvDtype::kFp8E4M3,
                                  KvDtype::kFp8E5M2};

struct DeviceMemory {
  explicit DeviceMemory(size_t bytes) {
    const absl::Status s =
        CudaErrorToStatus(cudaMalloc(&ptr, std::max<size_t>(bytes, 16)), "cudaMalloc");
    EXPECT_TRUE(s.ok()) << s;
  }
  ~DeviceMemory() { cudaFree(ptr); }
  uint8_t* get() const { return static_cast<uint8_t*>(ptr); }
  void* ptr = nullptr;
};

size_t Align(size_t x) { return (x + 255) & ~size_t{255}; }

// Writes the first few mismatching inputs (a broken kernel would otherwise dump them all).
void Dump(const std::string& name, const Bytes& data) {
  static int dumped = 0;
  if (++dumped > 4) return;
  const char* dir = std::getenv("KVTIER_DUMP_DIR");
  const std::string path = std::string(dir != nullptr ? dir : ".") + "/" + name;
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  std::printf("  input written to %s\n", path.c_str());
}

// Inputs of one dtype: sizes around chunk boundaries, and contents that exercise every body form.
std::vector<Bytes> AwkwardInputs(KvDtype dtype, int chunk_log2, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const size_t eb = KvDtypeBytes(dtype);
  const size_t chunk = size_t{1} << chunk_log2;
  std::vector<Bytes> inputs;
  for (size_t n : {size_t{0}, size_t{1}, size_t{31}, size_t{33}, chunk - 1, chunk, chunk + 1,
                   3 * chunk + 7, size_t{rng() % 300000}}) {
    for (int content = 0; content < 7; ++content) {
      Bytes b(n * eb);
      if (content == 0) {  // KV-like, cut to size
        testing::KvLikeOptions o;
        o.dtype = dtype;
        o.keys = rng() % 2 == 0;
        o.tokens = static_cast<int>(n / 1024 + 1);
        o.seed = rng();
        const Bytes kv = testing::GenerateKvLike(o);
        std::memcpy(b.data(), kv.data(), b.size());
      } else if (content == 1) {  // random bits: stored
        for (std::byte& x : b) x = static_cast<std::byte>(rng());
      } else if (content == 2) {  // constant
        std::fill(b.begin(), b.end(), std::byte{0x3C});
      } else if (content == 3) {  // two coded values, random raw bytes
        for (size_t i = 0; i < b.size(); ++i) {
          b[i] = static_cast<std::byte>((i % eb == eb - 1) ? 0x3F + (rng() % 8 == 0) : rng());
        }
      } else if (content == 5 || content == 6) {
        // Coded symbols whose code lengths the warp-wide construction must get exactly as the
        // CPU does: geometric counts (trees deeper than the length limit) or equal counts (ties
        // between leaves and internal nodes everywhere).
        const uint64_t period = 3 + rng() % 250;
        for (size_t i = 0; i < n; ++i) {
          const uint8_t coded = content == 5
                                    ? static_cast<uint8_t>(std::countr_zero(rng() | 1ull << 40))
                                    : static_cast<uint8_t>(i % period);
          const uint16_t raw = static_cast<uint16_t>(rng());  // format.h's Join16
          const uint16_t v = static_cast<uint16_t>((raw & 0x8000) | coded << 7 | (raw & 0x7F));
          std::memcpy(&b[i * eb], eb == 2 ? static_cast<const void*>(&v) : &coded, eb);
        }
      } else {  // special values and every byte value
        const uint16_t specials[] = {0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC1, 0x0001,
                                     0x7C00, 0x7E01, 0x03FF, 0x3F80, 0xFFFF, 0x1234};
        for (size_t i = 0; i < n; ++i) {
          const uint16_t v = rng() % 3 == 0 ? specials[rng() % 12] : static_cast<uint16_t>(i);
          std::memcpy(&b[i * eb], &v, eb);
        }
      }
      inputs.push_back(std::move(b));
    }
  }
  return inputs;
}

// Compresses `inputs` as one GPU batch and checks every frame against the CPU's; then decodes
// the CPU frames on the GPU and checks the elements. Returns the CPU frames.
std::vector<Bytes> CheckBatch(const std::vector<Bytes>& inputs, const CodecOptions& options,
                              GpuCodec& codec, const std::string& label) {
  std::vector<size_t> in_off, out_off;
  size_t in_total = 0, out_total = 0;
  for (const Bytes& in : inputs) {
    in_off.push_back(in_total);
    out_off.push_back(out_total);
    in_total += Align(in.size());
    out_total += Align(MaxCompressedSize(in.size(), options));
  }
  DeviceMemory d_in(in_total), d_out(out_total);
  std::vector<GpuCompressItem> items;
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(cudaMemcpy(d_in.get() + in_off[i], inputs[i].data(), inputs[i].size(),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    items.push_back({d_in.get() + in_off[i], inputs[i].size(), d_out.get() + out_off[i],
                     MaxCompressedSize(inputs[i].size(), options)});
  }
  absl::StatusOr<std::vector<uint64_t>> sizes = codec.Compress(items, nullptr);
  EXPECT_TRUE(sizes.ok()) << sizes.status();
  if (!sizes.ok()) return {};
  std::vector<Bytes> cpu_frames;
  for (size_t i = 0; i < inputs.size(); ++i) {
    absl::StatusOr<Bytes> cpu = Compress(inputs[i], options);
    EXPECT_TRUE(cpu.ok());
    Bytes gpu((*sizes)[i]);
    EXPECT_EQ(cudaMemcpy(gpu.data(), d_out.get() + out_off[i], gpu.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    if (gpu != *cpu) {
      size_t first = 0;
      while (first < std::min(gpu.size(), cpu->size()) && gpu[first] == (*cpu)[first]) ++first;
      ADD_FAILURE() << label << " item " << i << " (" << inputs[i].size()
                    << " bytes): GPU frame differs from the CPU frame; sizes " << gpu.size()
                    << " vs " << cpu->size() << ", first difference at byte " << first;
      Dump(label + "_item" + std::to_string(i) + ".bin", inputs[i]);
    }
    cpu_frames.push_back(*cpu);
  }

  // GPU decode of the CPU frames.
  std::vector<size_t> f_off;
  size_t f_total = 0;
  for (const Bytes& f : cpu_frames) {
    f_off.push_back(f_total);
    f_total += Align(f.size());
  }
  DeviceMemory d_frames(f_total), d_dec(in_total);
  std::vector<GpuDecompressItem> ditems;
  for (size_t i = 0; i < cpu_frames.size(); ++i) {
    EXPECT_EQ(cudaMemcpy(d_frames.get() + f_off[i], cpu_frames[i].data(), cpu_frames[i].size(),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    ditems.push_back({d_frames.get() + f_off[i], cpu_frames[i].size(), d_dec.get() + in_off[i],
                      inputs[i].size()});
  }
  const absl::Status s = codec.Decompress(ditems, nullptr);
  EXPECT_TRUE(s.ok()) << label << ": " << s;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Bytes dec(inputs[i].size());
    EXPECT_EQ(cudaMemcpy(dec.data(), d_dec.get() + in_off[i], dec.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    if (dec != inputs[i]) {
      size_t first = 0;
      while (dec[first] == inputs[i][first]) ++first;
      ADD_FAILURE() << label << " item " << i
                    << ": GPU decode of the CPU frame differs, first at byte " << first << " of "
                    << dec.size();
      Dump(label + "_decode_item" + std::to_string(i) + ".bin", inputs[i]);
    }
  }
  return cpu_frames;
}

TEST(GpuCodecTest, ByteIdenticalToCpuOnAwkwardInputs) {
  for (KvDtype dtype : kAllDtypes) {
    for (int chunk_log2 : {10, 12, 14, 16}) {
      const CodecOptions options{.dtype = dtype, .chunk_log2 = chunk_log2};
      absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
      ASSERT_TRUE(codec.ok()) << codec.status();
      const std::string label =
          std::string(KvDtypeName(dtype)) + "_chunk" + std::to_string(chunk_log2);
      CheckBatch(AwkwardInputs(dtype, chunk_log2, chunk_log2 * 31 + static_cast<int>(dtype)),
                 options, **codec, label);
    }
  }
}

TEST(GpuCodecTest, ByteIdenticalOnLargeKvBatches) {
  for (KvDtype dtype : {KvDtype::kBf16, KvDtype::kFp16, KvDtype::kFp8E4M3}) {
    const CodecOptions options{.dtype = dtype};
    absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
    ASSERT_TRUE(codec.ok());
    std::vector<Bytes> blocks;
    for (int b = 0; b < 24; ++b) {
      blocks.push_back(testing::GenerateKvBlock(dtype, 4, 32 + b, 8, 128, b));
    }
    CheckBatch(blocks, options, **codec, std::string(KvDtypeName(dtype)) + "_blocks");
  }
}

// A batch large enough that the decoder checks each chunk quarter by quarter while decoding it
// (LaunchDecode: at least 8 chunks of 2^14 elements per SM), with a partial last chunk; the
// smaller batches above take the other path.
TEST(GpuCodecTest, ByteIdenticalOnBatchesThatFillTheGpu) {
  int sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  const CodecOptions options{.dtype = KvDtype::kBf16};
  absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
  ASSERT_TRUE(codec.ok());
  const Bytes block = testing::GenerateKvBlock(KvDtype::kBf16, 4, 64, 8, 128, 3);  // 1 MiB
  const size_t chunks_per_block = block.size() / (2 << 14);
  std::vector<Bytes> blocks(8 * sms / chunks_per_block + 2, block);
  blocks.back().resize(block.size() - 3000);  // a partial last chunk
  CheckBatch(blocks, options, **codec, "bf16_full_gpu");
  CheckBatch({blocks.back()}, options, **codec, "bf16_partial_alone");
  for (size_t cut : {size_t{2}, size_t{1000}, size_t{2998}, size_t{3002}, size_t{16384}}) {
    Bytes b = block;
    b.resize(block.size() - cut);
    CheckBatch({b}, options, **codec, "bf16_cut" + std::to_string(cut));
  }
}

// So many items that the zeros the kernels start from (look-back states, error codes) exceed
// what GpuCodec stages with the descriptors, and are cleared on the device instead. Two
// batches of other sizes through one codec: the second finds the first's states and counts in
// the workspace unless they are cleared.
TEST(GpuCodecTest, ByteIdenticalOnBatchesOfManySmallItems) {
  const CodecOptions options{.dtype = KvDtype::kBf16};
  absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
  ASSERT_TRUE(codec.ok());
  const Bytes block = testing::GenerateKvBlock(KvDtype::kBf16, 1, 1, 1, 128, 9);
  for (int round = 0; round < 2; ++round) {
    std::vector<Bytes> blocks;
    for (int i = 0; i < 70000; ++i) {
      Bytes b = block;
      b.resize(block.size() - 2 * static_cast<size_t>(i % (7 + round)));
      blocks.push_back(std::move(b));
    }
    CheckBatch(blocks, options, **codec, "bf16_many_small_" + std::to_string(round));
  }
}

// Last chunks of every length from 2^14 - 1024 to 2^14 elements (frames of one full chunk and
// a partial one), in one batch: lanes finish their last tiles at every offset, running ahead
// or not (a lane that finished two tiles early once wrote into a tile not yet written).
TEST(GpuCodecTest, ByteIdenticalForEveryLastChunkLength) {
  struct Config {
    KvDtype dtype;
    int chunk_log2;
  };
  // bf16 at the default chunk (three symbols per lookup), at 2^12 (the three-kernel encoder)
  // and 2^16; fp16 and fp8 (longer codes, one or two symbols per lookup).
  for (const Config& config :
       {Config{KvDtype::kBf16, 14}, Config{KvDtype::kBf16, 12}, Config{KvDtype::kBf16, 16},
        Config{KvDtype::kFp16, 14}, Config{KvDtype::kFp8E4M3, 14}}) {
    const CodecOptions options{.dtype = config.dtype, .chunk_log2 = config.chunk_log2};
    const std::string label = std::string(KvDtypeName(config.dtype)) + "_chunk" +
                              std::to_string(config.chunk_log2) + "_last_chunk_lengths";
    SCOPED_TRACE(label);
    absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
    ASSERT_TRUE(codec.ok());
    const size_t eb = KvDtypeBytes(config.dtype);
    const size_t chunk = size_t{1} << config.chunk_log2;
    // 1 layer x K/V x tokens x 4 heads x 128: 1024 elements per token, two chunks at least.
    const Bytes block = testing::GenerateKvBlock(config.dtype, 1,
                                                 static_cast<int>(2 * chunk / 1024 + 1), 4, 128, 9);
    std::vector<Bytes> frames;
    // Every last-chunk length over the last 1024 elements (every 7th over 2^16's last 8192).
    const size_t step = chunk > (1 << 14) ? 7 : 1;
    const size_t span = chunk > (1 << 14) ? 8192 : 1024;
    for (size_t n = chunk - span; n <= chunk; n += step) {
      frames.emplace_back(block.begin(), block.begin() + eb * (chunk + n));
    }
    CheckBatch(frames, options, **codec, label);
  }
}

// Damaged copies of one frame (bytes flipped, or cut short) decoded as one batch: each must be
// reported exactly when the CPU decoder reports it, and no decode may write outside its output.
void CheckDamagedFrames(const CodecOptions& options, int tokens) {
  SCOPED_TRACE(std::string(KvDtypeName(options.dtype)) + " chunk_log2 " +
               std::to_string(options.chunk_log2));
  absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
  ASSERT_TRUE(codec.ok());
  testing::KvLikeOptions o;
  o.dtype = options.dtype;
  o.tokens = tokens;
  o.heads = 2;
  o.head_dim = 64;
  Bytes input = testing::GenerateKvLike(o);  // tokens * 128 elements
  input.resize(input.size() + 3000, std::byte{0});
  absl::StatusOr<Bytes> frame = Compress(input, options);
  ASSERT_TRUE(frame.ok());
  std::mt19937_64 rng(5);
  constexpr int kTrials = 400;
  // Each trial's output sits between canaries; any write outside shows up there.
  const size_t slot = Align(input.size()) + 512;
  DeviceMemory d_frames(kTrials * Align(frame->size())), d_out(kTrials * slot);
  ASSERT_EQ(cudaMemset(d_out.get(), 0xA5, kTrials * slot), cudaSuccess);
  std::vector<GpuDecompressItem> items;
  std::vector<Bytes> damaged;
  for (int t = 0; t < kTrials; ++t) {
    Bytes bad = *frame;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      bad[rng() % bad.size()] ^= static_cast<std::byte>(1 + rng() % 255);
    }
    size_t bytes = bad.size();
    if (t % 10 == 0) bytes = rng() % bad.size();  // truncated
    ASSERT_EQ(cudaMemcpy(d_frames.get() + t * Align(frame->size()), bad.data(), bytes,
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    items.push_back({d_frames.get() + t * Align(frame->size()), bytes, d_out.get() + t * slot + 256,
                     input.size()});
    damaged.push_back(bad);
  }
  std::vector<int32_t> errors(kTrials);
  ASSERT_TRUE((*codec)->DecompressAsync(items, errors.data(), nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (int t = 0; t < kTrials; ++t) {
    const absl::Status s = GpuDecodeErrorToStatus(errors[t], t);
    // The CPU decoder is the judge of whether the damage is detectable.
    std::vector<std::byte> out(input.size());
    const absl::Status cpu = Decompress(std::span(damaged[t]).first(items[t].frame_bytes), out);
    EXPECT_EQ(s.ok(), cpu.ok()) << "trial " << t << ": GPU " << s << ", CPU " << cpu;
    if (!s.ok()) {
      EXPECT_TRUE(s.code() == absl::StatusCode::kDataLoss ||
                  s.code() == absl::StatusCode::kInvalidArgument);
    }
  }
  Bytes host(kTrials * slot);
  ASSERT_EQ(cudaMemcpy(host.data(), d_out.get(), host.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int t = 0; t < kTrials; ++t) {
    for (size_t i = 0; i < 256; ++i) ASSERT_EQ(host[t * slot + i], std::byte{0xA5}) << t;
    for (size_t i = 256 + input.size(); i < slot; ++i) {
      ASSERT_EQ(host[t * slot + i], std::byte{0xA5}) << "trial " << t << " wrote past its output";
    }
  }
}

TEST(GpuCodecTest, DamagedFramesAreReportedAndNothingOutsideIsWritten) {
  CheckDamagedFrames({.dtype = KvDtype::kBf16, .chunk_log2 = 10}, 40);   // 5 chunks
  CheckDamagedFrames({.dtype = KvDtype::kBf16, .chunk_log2 = 14}, 300);  // 3 chunks
  CheckDamagedFrames({.dtype = KvDtype::kFp8E4M3, .chunk_log2 = 12}, 100);
}

// Holds a stream at a host function until the test opens it, or gives up after 20 s.
struct StreamGate {
  explicit StreamGate(cudaStream_t stream) {
    EXPECT_EQ(cudaLaunchHostFunc(stream, &Hold, this), cudaSuccess);
  }
  static void CUDART_CB Hold(void* p) {
    auto* gate = static_cast<StreamGate*>(p);
    if (gate->opened.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      gate->gave_up = true;
    }
  }
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
  std::atomic<bool> gave_up = false;
};

// An engine queues a stage's codec work and goes on to its copies and round trips: queuing
// several batches must not wait for the GPU to run earlier ones (it once waited for each
// previous batch's descriptor upload, i.e. for the batch before that to finish). The stream
// is held shut while six batches each way are queued; each call must return, and what the
// batches leave once the stream runs must be the CPU's bytes.
TEST(GpuCodecTest, QueuingBatchesDoesNotWaitForTheGpu) {
  const CodecOptions options{.dtype = KvDtype::kBf16};
  absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
  ASSERT_TRUE(codec.ok());
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  constexpr int kBatches = 6;
  constexpr int kBlocks = 3;
  std::vector<Bytes> inputs;
  for (int i = 0; i < kBatches * kBlocks; ++i) {
    inputs.push_back(testing::GenerateKvBlock(KvDtype::kBf16, 2, 16, 4, 128, 40 + i));
  }
  const size_t in_bytes = inputs[0].size();
  const size_t frame_capacity = Align(MaxCompressedSize(in_bytes, options));
  DeviceMemory d_in(inputs.size() * in_bytes), d_frames(inputs.size() * frame_capacity),
      d_out(inputs.size() * in_bytes);
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_EQ(
        cudaMemcpy(d_in.get() + i * in_bytes, inputs[i].data(), in_bytes, cudaMemcpyHostToDevice),
        cudaSuccess);
  }
  std::vector<std::vector<GpuCompressItem>> batches(kBatches);
  for (int b = 0; b < kBatches; ++b) {
    for (int k = 0; k < kBlocks; ++k) {
      const size_t i = static_cast<size_t>(b * kBlocks + k);
      batches[b].push_back({d_in.get() + i * in_bytes, in_bytes,
                            d_frames.get() + i * frame_capacity, frame_capacity});
    }
  }
  // One batch first, waited for: the workspace's first allocations may wait for the device.
  ASSERT_TRUE((*codec)->Compress(batches[0], stream).ok());

  uint64_t* sizes = nullptr;  // pinned, so that the size copies stay asynchronous
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&sizes), inputs.size() * sizeof(uint64_t)),
            cudaSuccess);
  {
    StreamGate gate(stream);
    for (int b = 0; b < kBatches; ++b) {
      ASSERT_TRUE((*codec)->CompressAsync(batches[b], sizes + b * kBlocks, stream).ok());
    }
    EXPECT_EQ(cudaStreamQuery(stream), cudaErrorNotReady)
        << "CompressAsync waited for the GPU to run the batches queued before it";
    gate.open.set_value();
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_FALSE(gate.gave_up);
  }
  std::vector<GpuDecompressItem> ditems;
  for (size_t i = 0; i < inputs.size(); ++i) {
    absl::StatusOr<Bytes> cpu = Compress(inputs[i], options);
    ASSERT_TRUE(cpu.ok());
    Bytes gpu(sizes[i]);
    ASSERT_EQ(cudaMemcpy(gpu.data(), d_frames.get() + i * frame_capacity, gpu.size(),
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_EQ(gpu, *cpu) << "block " << i;
    ditems.push_back(
        {d_frames.get() + i * frame_capacity, sizes[i], d_out.get() + i * in_bytes, in_bytes});
  }

  int32_t* errors = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&errors), inputs.size() * sizeof(int32_t)),
            cudaSuccess);
  ASSERT_TRUE((*codec)->Decompress(std::span(ditems).first(kBlocks), stream).ok());
  {
    StreamGate gate(stream);
    for (int b = 0; b < kBatches; ++b) {
      ASSERT_TRUE((*codec)
                      ->DecompressAsync(std::span(ditems).subspan(b * kBlocks, kBlocks),
                                        errors + b * kBlocks, stream)
                      .ok());
    }
    EXPECT_EQ(cudaStreamQuery(stream), cudaErrorNotReady)
        << "DecompressAsync waited for the GPU to run the batches queued before it";
    gate.open.set_value();
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_FALSE(gate.gave_up);
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(errors[i], 0) << "block " << i;
    Bytes out(in_bytes);
    ASSERT_EQ(cudaMemcpy(out.data(), d_out.get() + i * in_bytes, in_bytes, cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_EQ(out, inputs[i]) << "block " << i;
  }
  cudaFreeHost(errors);
  cudaFreeHost(sizes);
  cudaStreamDestroy(stream);
}

// Batches queued back to back with GpuBatchOptions::follows_previous_batch start while the one
// before them finishes, and take turns on two sets of look-back words (error words, decoding):
// large batches (more chunks than the GPU holds at once) next to one-item ones, so that a small
// batch can start while the one two before it still runs and has to wait for its words, and a batch
// larger than any before it, which grows the words in the middle of the sequence. Every frame must
// still be the CPU's, twice over.
TEST(GpuCodecTest, BatchesThatFollowEachOtherOverlapAndStayExact) {
  const CodecOptions options{.dtype = KvDtype::kBf16};
  absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
  ASSERT_TRUE(codec.ok());
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  // Items per batch; items are 512 KiB (16 chunks), so 48 items are 768 chunks.
  const std::vector<int> shape = {1, 2, 48, 1, 1, 3, 96, 2, 1, 1, 48, 5, 1};
  int total = 0;
  for (int n : shape) total += n;
  std::vector<Bytes> bases;
  for (int seed = 0; seed < 7; ++seed) {
    bases.push_back(testing::GenerateKvBlock(KvDtype::kBf16, 2, 64, 8, 128, 300 + seed));
  }
  std::vector<Bytes> inputs;
  for (int i = 0; i < total; ++i) {
    inputs.push_back(bases[i % 7]);
    std::memcpy(inputs.back().data() + 64 * i, &i, sizeof(i));  // every block distinct
  }
  const size_t in_bytes = inputs[0].size();
  ASSERT_EQ(in_bytes, size_t{512} << 10);
  const size_t frame_capacity = Align(MaxCompressedSize(in_bytes, options));
  DeviceMemory d_in(inputs.size() * in_bytes), d_frames(inputs.size() * frame_capacity);
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_EQ(
        cudaMemcpy(d_in.get() + i * in_bytes, inputs[i].data(), in_bytes, cudaMemcpyHostToDevice),
        cudaSuccess);
  }
  std::vector<Bytes> expected;
  for (const Bytes& in : inputs) {
    absl::StatusOr<Bytes> cpu = Compress(in, options);
    ASSERT_TRUE(cpu.ok());
    expected.push_back(*std::move(cpu));
  }
  uint64_t* sizes = nullptr;  // pinned: the kernel writes the sizes, nothing follows it
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&sizes), inputs.size() * sizeof(uint64_t)),
            cudaSuccess);
  for (int round = 0; round < 2; ++round) {
    ASSERT_EQ(cudaMemset(d_frames.get(), 0, inputs.size() * frame_capacity), cudaSuccess);
    std::memset(sizes, 0, inputs.size() * sizeof(uint64_t));
    size_t first = 0;
    for (size_t b = 0; b < shape.size(); ++b) {
      std::vector<GpuCompressItem> batch;
      for (int k = 0; k < shape[b]; ++k, ++first) {
        batch.push_back({d_in.get() + first * in_bytes, in_bytes,
                         d_frames.get() + first * frame_capacity, frame_capacity});
      }
      const GpuBatchOptions follows{.follows_previous_batch = b > 0};
      ASSERT_TRUE(
          (*codec)->CompressAsync(batch, sizes + (first - batch.size()), stream, follows).ok());
    }
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    for (size_t i = 0; i < inputs.size(); ++i) {
      ASSERT_EQ(sizes[i], expected[i].size()) << "round " << round << ", block " << i;
      Bytes gpu(sizes[i]);
      ASSERT_EQ(cudaMemcpy(gpu.data(), d_frames.get() + i * frame_capacity, gpu.size(),
                           cudaMemcpyDeviceToHost),
                cudaSuccess);
      EXPECT_EQ(gpu, expected[i]) << "round " << round << ", block " << i;
    }
  }

  // Back again, the same batches following each other, in two rounds: in the first, one frame
  // of the seventh batch is damaged, and only it must be reported; in the second, nothing is,
  // so no code of the first round may linger in either set of error words.
  DeviceMemory d_out(inputs.size() * in_bytes);
  int32_t* errors = nullptr;  // pinned: the kernel writes the codes, nothing follows it
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&errors), inputs.size() * sizeof(int32_t)),
            cudaSuccess);
  size_t damaged = 0;
  for (size_t b = 0; b < 6; ++b) damaged += shape[b];
  for (int round = 0; round < 2; ++round) {
    uint8_t at = 0;
    uint8_t* const spot = d_frames.get() + damaged * frame_capacity + expected[damaged].size() / 2;
    ASSERT_EQ(cudaMemcpy(&at, spot, 1, cudaMemcpyDeviceToHost), cudaSuccess);
    at ^= 0x5A;  // round 0 damages the byte, round 1 mends it
    ASSERT_EQ(cudaMemcpy(spot, &at, 1, cudaMemcpyHostToDevice), cudaSuccess);
    std::memset(errors, 0xFF, inputs.size() * sizeof(int32_t));
    ASSERT_EQ(cudaMemset(d_out.get(), 0, inputs.size() * in_bytes), cudaSuccess);
    size_t first = 0;
    for (size_t b = 0; b < shape.size(); ++b) {
      std::vector<GpuDecompressItem> batch;
      for (int k = 0; k < shape[b]; ++k, ++first) {
        batch.push_back({d_frames.get() + first * frame_capacity, expected[first].size(),
                         d_out.get() + first * in_bytes, in_bytes});
      }
      const GpuBatchOptions follows{.follows_previous_batch = b > 0};
      ASSERT_TRUE(
          (*codec)->DecompressAsync(batch, errors + (first - batch.size()), stream, follows).ok());
    }
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (round == 0 && i == damaged) {
        EXPECT_NE(errors[i], 0) << "the damaged frame was not reported";
        continue;
      }
      ASSERT_EQ(errors[i], 0) << "round " << round << ", block " << i;
      Bytes out(in_bytes);
      ASSERT_EQ(
          cudaMemcpy(out.data(), d_out.get() + i * in_bytes, in_bytes, cudaMemcpyDeviceToHost),
          cudaSuccess);
      EXPECT_EQ(out, inputs[i]) << "round " << round << ", block " << i;
    }
  }
  cudaFreeHost(errors);
  cudaFreeHost(sizes);
  cudaStreamDestroy(stream);
}

// Frame sizes and error codes go straight into pinned memory (the kernels write them there);
// into pageable memory they are copied back. Both must hold the right values.
TEST(GpuCodecTest, SizesAndErrorsReachPinnedAndPageableMemory) {
  const CodecOptions options{.dtype = KvDtype::kBf16};
  absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
  ASSERT_TRUE(codec.ok());
  std::vector<Bytes> inputs;
  for (int i = 0; i < 5; ++i) {
    inputs.push_back(testing::GenerateKvBlock(KvDtype::kBf16, 2, 24, 4, 128, 70 + i));
  }
  const size_t in_bytes = inputs[0].size();
  const size_t capacity = Align(MaxCompressedSize(in_bytes, options));
  DeviceMemory d_in(inputs.size() * in_bytes), d_frames(inputs.size() * capacity);
  std::vector<GpuCompressItem> items;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_EQ(
        cudaMemcpy(d_in.get() + i * in_bytes, inputs[i].data(), in_bytes, cudaMemcpyHostToDevice),
        cudaSuccess);
    items.push_back({d_in.get() + i * in_bytes, in_bytes, d_frames.get() + i * capacity, capacity});
  }
  std::vector<uint64_t> pageable(inputs.size(), 0);
  uint64_t* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), inputs.size() * sizeof(uint64_t)),
            cudaSuccess);
  std::fill(pinned, pinned + inputs.size(), 0);
  ASSERT_TRUE((*codec)->CompressAsync(items, pageable.data(), nullptr).ok());
  ASSERT_TRUE((*codec)->CompressAsync(items, pinned, nullptr).ok());
  ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
  for (size_t i = 0; i < inputs.size(); ++i) {
    absl::StatusOr<Bytes> cpu = Compress(inputs[i], options);
    ASSERT_TRUE(cpu.ok());
    EXPECT_EQ(pageable[i], cpu->size()) << "block " << i;
    EXPECT_EQ(pinned[i], cpu->size()) << "block " << i;
  }
  cudaFreeHost(pinned);

  // Decode the frames with one of them damaged (a byte of its last chunk's body flipped):
  // that item's code is DataLoss and the others' 0, in either kind of memory.
  constexpr size_t kDamaged = 3;
  uint8_t byte = 0;
  uint8_t* const flip = d_frames.get() + kDamaged * capacity + pageable[kDamaged] - 20;
  ASSERT_EQ(cudaMemcpy(&byte, flip, 1, cudaMemcpyDeviceToHost), cudaSuccess);
  byte ^= 0x5a;
  ASSERT_EQ(cudaMemcpy(flip, &byte, 1, cudaMemcpyHostToDevice), cudaSuccess);
  DeviceMemory d_out(inputs.size() * in_bytes);
  std::vector<GpuDecompressItem> ditems;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ditems.push_back(
        {d_frames.get() + i * capacity, pageable[i], d_out.get() + i * in_bytes, in_bytes});
  }
  std::vector<int32_t> pageable_errors(inputs.size(), -1);
  int32_t* pinned_errors = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned_errors), inputs.size() * 4),
            cudaSuccess);
  std::fill(pinned_errors, pinned_errors + inputs.size(), -1);
  ASSERT_TRUE((*codec)->DecompressAsync(ditems, pageable_errors.data(), nullptr).ok());
  ASSERT_TRUE((*codec)->DecompressAsync(ditems, pinned_errors, nullptr).ok());
  ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const absl::StatusCode want =
        i == kDamaged ? absl::StatusCode::kDataLoss : absl::StatusCode::kOk;
    EXPECT_EQ(GpuDecodeErrorToStatus(pageable_errors[i], i).code(), want) << "block " << i;
    EXPECT_EQ(GpuDecodeErrorToStatus(pinned_errors[i], i).code(), want) << "block " << i;
  }
  // Batches of few items with pinned codes keep their codes on the device between batches
  // (the last warp clears them): the damaged frame's code must not reach the next batch, of
  // the undamaged frames only, nor a damaged batch's count of warps the one after it.
  const std::vector<GpuDecompressItem> good = {ditems[0], ditems[1], ditems[2], ditems[4]};
  for (int round = 0; round < 3; ++round) {
    std::fill(pinned_errors, pinned_errors + inputs.size(), -1);
    ASSERT_TRUE((*codec)->DecompressAsync(good, pinned_errors, nullptr).ok());
    ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
    for (size_t i = 0; i < good.size(); ++i) {
      EXPECT_EQ(pinned_errors[i], 0) << "round " << round << ", block " << i;
    }
    EXPECT_EQ(pinned_errors[good.size()], -1) << "a code past the batch's items was written";
    std::fill(pinned_errors, pinned_errors + inputs.size(), -1);
    ASSERT_TRUE((*codec)->DecompressAsync(ditems, pinned_errors, nullptr).ok());
    ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
    for (size_t i = 0; i < inputs.size(); ++i) {
      EXPECT_EQ(pinned_errors[i] != 0, i == kDamaged) << "round " << round << ", block " << i;
    }
  }
  cudaFreeHost(pinned_errors);
}

TEST(GpuCodecTest, BadArgumentsAndMismatchedFrames) {
  const CodecOptions options{.dtype = KvDtype::kBf16};
  absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
  ASSERT_TRUE(codec.ok());
  DeviceMemory d(1 << 20);
  std::vector<uint64_t> sizes(1);
  GpuCompressItem odd{d.get(), 7, d.get() + 4096, 4096};
  EXPECT_EQ((*codec)->CompressAsync({&odd, 1}, sizes.data(), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  GpuCompressItem misaligned{d.get() + 2, 64, d.get() + 4096, 4096};
  EXPECT_EQ((*codec)->CompressAsync({&misaligned, 1}, sizes.data(), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  GpuCompressItem small{d.get(), 4096, d.get() + 8192, 100};
  EXPECT_EQ((*codec)->CompressAsync({&small, 1}, sizes.data(), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(GpuCodec::Create({.chunk_log2 = 30}).ok());

  // A frame written with other options is InvalidArgument, as is a wrong output size.
  Bytes input(8192, std::byte{1});
  absl::StatusOr<Bytes> fp16 = Compress(input, {.dtype = KvDtype::kFp16});
  ASSERT_TRUE(fp16.ok());
  ASSERT_EQ(cudaMemcpy(d.get(), fp16->data(), fp16->size(), cudaMemcpyHostToDevice), cudaSuccess);
  GpuDecompressItem other{d.get(), fp16->size(), d.get() + 65536, input.size()};
  EXPECT_EQ((*codec)->Decompress({&other, 1}, nullptr).code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Bytes> bf16 = Compress(input, options);
  ASSERT_TRUE(bf16.ok());
  ASSERT_EQ(cudaMemcpy(d.get(), bf16->data(), bf16->size(), cudaMemcpyHostToDevice), cudaSuccess);
  GpuDecompressItem wrong_size{d.get(), bf16->size(), d.get() + 65536, input.size() - 2};
  EXPECT_EQ((*codec)->Decompress({&wrong_size, 1}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  GpuDecompressItem right{d.get(), bf16->size(), d.get() + 65536, input.size()};
  EXPECT_TRUE((*codec)->Decompress({&right, 1}, nullptr).ok());
}

}  // namespace
}  // namespace kvtier
