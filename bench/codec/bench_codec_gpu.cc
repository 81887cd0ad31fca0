// bench_codec_gpu: throughput of the kvz CUDA codec on KV-like data at 1 MiB to 256 MiB
// batches (items of 1 MiB, one frame each), against a device-to-device copy of the same bytes,
// and the end-to-end effect on PCIe transfers: compress then copy to the host versus copying
// the raw bytes (and the reverse), one after the other and pipelined in groups (compression of
// group i+1 overlapping the copy of group i). docs/benchmarks.md, "Compression", holds the
// results.
//   bench_codec_gpu [--runs 30] [--max-mib 256] [--batch-mib 1,8,64,256] [--input DTYPE:PATH]
//                   [--profile-mib N]
// Times are CUDA-event medians over --runs, after a warm-up; consecutive runs use different
// slices of a 256 MiB buffer so that small batches are not served from L2 alone. Each batch
// size is timed alone (one batch between the events) and queued (four batches back to back,
// time per batch, as a pipeline queues them). Sizes and
// error codes come back into pinned host memory, as a client would use the codec.
// --batch-mib picks the batch sizes (any up to --max-mib: the speed across sizes shows where
// waves of chunks start and end); dtypes other than bf16 and chunks other than 2^14 run at 64
// MiB and below only.
// --input fills the pool with a raw tensor file (repeated) instead of the KV-like generator.
// --profile-mib compresses and decompresses one bf16 batch of N MiB twice and exits: the run
// to put under a profiler (ncu -k regex:Kernel ...).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "kv_like_data.h"
#include "kvtier/compression/gpu_codec.h"
#include "kvtier/compression/kv_codec.h"
#include "kvtier/kernels/cuda_status.h"

namespace kvtier::bench {
namespace {

constexpr size_t kItemBytes = size_t{1} << 20;

#define CHECK_CUDA(expr)                                              \
  do {                                                                \
    const cudaError_t e = (expr);                                     \
    if (e != cudaSuccess) {                                           \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(e)); \
      std::exit(1);                                                   \
    }                                                                 \
  } while (0)

void CheckOk(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, std::string(s.message()).c_str());
    std::exit(1);
  }
}

// Median milliseconds of fn(run) over `runs`, timed with events on `stream`, after a warm-up.
// Batches queued back to back for the pipelined figures.
constexpr int kQueued = 4;

double MedianMs(int runs, cudaStream_t stream, const std::function<void(int)>& fn) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  fn(runs);  // warm-up
  CHECK_CUDA(cudaStreamSynchronize(stream));
  std::vector<float> ms;
  for (int r = 0; r < runs; ++r) {
    CHECK_CUDA(cudaEventRecord(start, stream));
    fn(r);
    CHECK_CUDA(cudaEventRecord(stop, stream));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float t = 0;
    CHECK_CUDA(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Data {
  KvDtype dtype;
  size_t items;                 // 1 MiB items in the pool
  uint8_t* d_in = nullptr;      // items * 1 MiB
  uint8_t* d_frames = nullptr;  // items * frame capacity
  uint8_t* d_out = nullptr;     // items * 1 MiB
  size_t capacity = 0;
  std::vector<uint64_t> sizes;  // compressed size of every pool item
};

// `file` (if not empty) or 32 MiB of distinct KV-like blocks, repeated to fill the pool
// (chunks are independent, so repetition changes neither the ratio nor the speed).
Data MakePool(KvDtype dtype, int chunk_log2, size_t pool_mib, std::vector<std::byte> file) {
  Data d{dtype, pool_mib};
  std::vector<std::byte> distinct = std::move(file);
  const bool generate = distinct.empty();
  for (int b = 0; generate && distinct.size() < (size_t{32} << 20); ++b) {
    const std::vector<std::byte> block = testing::GenerateKvBlock(
        dtype, 4, 256, 8, 128, static_cast<uint64_t>(b));  // 4 layers x K/V x 256 tokens
    distinct.insert(distinct.end(), block.begin(), block.end());
  }
  distinct.resize(std::min(distinct.size(), pool_mib * kItemBytes) / kItemBytes * kItemBytes);
  const CodecOptions options{.dtype = dtype, .chunk_log2 = chunk_log2};
  d.capacity = (MaxCompressedSize(kItemBytes, options) + 255) & ~size_t{255};
  CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&d.d_in), pool_mib * kItemBytes));
  CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&d.d_frames), pool_mib * d.capacity));
  CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&d.d_out), pool_mib * kItemBytes));
  for (size_t off = 0; off < pool_mib * kItemBytes; off += distinct.size()) {
    CHECK_CUDA(cudaMemcpy(d.d_in + off, distinct.data(),
                          std::min(distinct.size(), pool_mib * kItemBytes - off),
                          cudaMemcpyHostToDevice));
  }
  return d;
}

std::vector<GpuCompressItem> CompressItems(const Data& d, size_t first, size_t n) {
  std::vector<GpuCompressItem> items;
  for (size_t i = first; i < first + n; ++i) {
    items.push_back({d.d_in + i * kItemBytes, kItemBytes, d.d_frames + i * d.capacity, d.capacity});
  }
  return items;
}

std::vector<GpuDecompressItem> DecompressItems(const Data& d, size_t first, size_t n) {
  std::vector<GpuDecompressItem> items;
  for (size_t i = first; i < first + n; ++i) {
    items.push_back(
        {d.d_frames + i * d.capacity, d.sizes[i], d.d_out + i * kItemBytes, kItemBytes});
  }
  return items;
}

// Pinned host memory for sizes and error codes, so that the codec's result copies stay
// asynchronous (a pageable destination makes the host wait for the copy).
template <typename T>
T* PinnedArray(size_t n) {
  void* p = nullptr;
  CHECK_CUDA(cudaMallocHost(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return static_cast<T*>(p);
}

void CopyFramesToHost(const Data& d, size_t first, size_t n, const uint64_t* sizes, uint8_t* host,
                      cudaStream_t stream) {
  for (size_t i = first; i < first + n; ++i) {
    CHECK_CUDA(cudaMemcpyAsync(host + i * d.capacity, d.d_frames + i * d.capacity, sizes[i],
                               cudaMemcpyDeviceToHost, stream));
  }
}

void CopyFramesToDevice(const Data& d, size_t first, size_t n, const uint8_t* host,
                        cudaStream_t stream) {
  for (size_t i = first; i < first + n; ++i) {
    CHECK_CUDA(cudaMemcpyAsync(d.d_frames + i * d.capacity, host + i * d.capacity, d.sizes[i],
                               cudaMemcpyHostToDevice, stream));
  }
}

// GPU -> host and host -> GPU of `mib` MiB of the pool: the raw copy against kvz, first one
// after the other (compress everything, then copy the frames), then pipelined in groups of
// `group` items: the compression of group i+1 runs on `stream` while group i's frames are
// copied on `copy_stream` (the host waits for each group's sizes before queuing its copies);
// on the way back, group i+1's frames are copied while group i decompresses.
void PcieTable(GpuCodec& codec, const Data& d, size_t mib, int runs, cudaStream_t stream,
               cudaStream_t copy_stream) {
  uint8_t* host = nullptr;
  CHECK_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host), mib * d.capacity));
  uint64_t* sizes = PinnedArray<uint64_t>(mib);
  int32_t* errors = PinnedArray<int32_t>(mib);
  std::vector<cudaEvent_t> done(mib);
  for (cudaEvent_t& ev : done) CHECK_CUDA(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaEvent_t joined;
  CHECK_CUDA(cudaEventCreateWithFlags(&joined, cudaEventDisableTiming));
  // Work on copy_stream is made part of the timed region on `stream` by joining it back.
  auto join = [&] {
    CHECK_CUDA(cudaEventRecord(joined, copy_stream));
    CHECK_CUDA(cudaStreamWaitEvent(stream, joined));
  };
  const double bytes = static_cast<double>(mib * kItemBytes);
  const double d2h_raw = MedianMs(runs, stream, [&](int) {
    CHECK_CUDA(cudaMemcpyAsync(host, d.d_in, mib * kItemBytes, cudaMemcpyDeviceToHost, stream));
  });
  const double h2d_raw = MedianMs(runs, stream, [&](int) {
    CHECK_CUDA(cudaMemcpyAsync(d.d_out, host, mib * kItemBytes, cudaMemcpyHostToDevice, stream));
  });
  const double d2h_serial = MedianMs(runs, stream, [&](int) {
    CheckOk(codec.CompressAsync(CompressItems(d, 0, mib), sizes, stream), "compress");
    CHECK_CUDA(cudaStreamSynchronize(stream));
    CopyFramesToHost(d, 0, mib, sizes, host, stream);
  });
  // The frames now in `host` are what the get direction copies back.
  const double h2d_serial = MedianMs(runs, stream, [&](int) {
    CopyFramesToDevice(d, 0, mib, host, stream);
    CheckOk(codec.DecompressAsync(DecompressItems(d, 0, mib), errors, stream), "decompress");
  });
  for (size_t i = 0; i < mib; ++i) CheckOk(GpuDecodeErrorToStatus(errors[i], i), "decode");
  std::printf(
      "\n| bf16, %zu MiB over PCIe | raw ms | kvz ms | raw GB/s | effective GB/s with kvz |\n"
      "|---|---|---|---|---|\n",
      mib);
  std::printf("| GPU -> host, serial (compress all, copy frames) | %.3f | %.3f | %.1f | %.1f |\n",
              d2h_raw, d2h_serial, bytes / d2h_raw / 1e6, bytes / d2h_serial / 1e6);
  std::printf("| host -> GPU, serial (copy frames, decompress all) | %.3f | %.3f | %.1f | %.1f |\n",
              h2d_raw, h2d_serial, bytes / h2d_raw / 1e6, bytes / h2d_serial / 1e6);
  for (size_t group : {size_t{2}, size_t{4}, size_t{8}, size_t{16}}) {
    if (group > mib) continue;
    const size_t groups = (mib + group - 1) / group;
    const double d2h_pipe = MedianMs(runs, stream, [&](int) {
      CHECK_CUDA(cudaEventRecord(joined, stream));  // copies start after the timed start
      CHECK_CUDA(cudaStreamWaitEvent(copy_stream, joined));
      for (size_t g = 0; g <= groups; ++g) {
        if (g < groups) {
          const size_t n = std::min(group, mib - g * group);
          CheckOk(codec.CompressAsync(CompressItems(d, g * group, n), sizes + g * group, stream),
                  "compress");
          CHECK_CUDA(cudaEventRecord(done[g], stream));
        }
        if (g > 0) {  // group g-1's sizes are needed on the host to queue its copies
          CHECK_CUDA(cudaEventSynchronize(done[g - 1]));
          const size_t first = (g - 1) * group;
          CopyFramesToHost(d, first, std::min(group, mib - first), sizes, host, copy_stream);
        }
      }
      join();
    });
    const double h2d_pipe = MedianMs(runs, stream, [&](int) {
      CHECK_CUDA(cudaEventRecord(joined, stream));
      CHECK_CUDA(cudaStreamWaitEvent(copy_stream, joined));
      for (size_t g = 0; g < groups; ++g) {
        const size_t first = g * group;
        const size_t n = std::min(group, mib - first);
        CopyFramesToDevice(d, first, n, host, copy_stream);
        CHECK_CUDA(cudaEventRecord(done[g], copy_stream));
        CHECK_CUDA(cudaStreamWaitEvent(stream, done[g]));
        CheckOk(codec.DecompressAsync(DecompressItems(d, first, n), errors + first, stream),
                "decompress");
      }
    });
    for (size_t i = 0; i < mib; ++i) CheckOk(GpuDecodeErrorToStatus(errors[i], i), "decode");
    std::printf("| GPU -> host, pipelined, groups of %zu MiB | %.3f | %.3f | %.1f | %.1f |\n",
                group, d2h_raw, d2h_pipe, bytes / d2h_raw / 1e6, bytes / d2h_pipe / 1e6);
    std::printf("| host -> GPU, pipelined, groups of %zu MiB | %.3f | %.3f | %.1f | %.1f |\n",
                group, h2d_raw, h2d_pipe, bytes / h2d_raw / 1e6, bytes / h2d_pipe / 1e6);
    std::fflush(stdout);
  }

  // Packed: one PCIe copy per group instead of one per frame (a copy per 0.7 MB frame loses
  // about a fifth of the link). Frames sit back to back at 16-byte aligned offsets: on the way
  // out they are gathered on the GPU (device-to-device copies) after their group's
  // compression, on the way in the host already holds them packed (as a daemon would send
  // them) and the GPU decodes them where they land.
  std::vector<size_t> offset(mib + 1, 0);
  for (size_t i = 0; i < mib; ++i) offset[i + 1] = offset[i] + ((d.sizes[i] + 15) & ~size_t{15});
  uint8_t* d_packed = nullptr;
  uint8_t* host_packed = nullptr;
  CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_packed), offset[mib]));
  CHECK_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host_packed), offset[mib]));
  for (size_t group : {size_t{4}, size_t{8}, size_t{16}}) {
    if (group > mib) continue;
    const size_t groups = (mib + group - 1) / group;
    std::memset(host_packed, 0, offset[mib]);
    const double d2h_packed = MedianMs(runs, stream, [&](int) {
      CHECK_CUDA(cudaEventRecord(joined, stream));
      CHECK_CUDA(cudaStreamWaitEvent(copy_stream, joined));
      for (size_t g = 0; g <= groups; ++g) {
        if (g < groups) {
          const size_t n = std::min(group, mib - g * group);
          CheckOk(codec.CompressAsync(CompressItems(d, g * group, n), sizes + g * group, stream),
                  "compress");
          CHECK_CUDA(cudaEventRecord(done[g], stream));
        }
        if (g > 0) {
          CHECK_CUDA(cudaEventSynchronize(done[g - 1]));
          const size_t first = (g - 1) * group;
          const size_t last = std::min(first + group, mib);
          for (size_t i = first; i < last; ++i) {  // sizes[i] == d.sizes[i]: same input
            CHECK_CUDA(cudaMemcpyAsync(d_packed + offset[i], d.d_frames + i * d.capacity, sizes[i],
                                       cudaMemcpyDeviceToDevice, copy_stream));
          }
          CHECK_CUDA(cudaMemcpyAsync(host_packed + offset[first], d_packed + offset[first],
                                     offset[last] - offset[first], cudaMemcpyDeviceToHost,
                                     copy_stream));
        }
      }
      join();
    });
    CHECK_CUDA(cudaStreamSynchronize(stream));
    for (size_t i = 0; i < mib; ++i) {
      if (std::memcmp(host_packed + offset[i], host + i * d.capacity, d.sizes[i]) != 0) {
        std::fprintf(stderr, "packed frame %zu differs from the frame copied alone\n", i);
        std::exit(1);
      }
    }
    const double h2d_packed = MedianMs(runs, stream, [&](int) {
      CHECK_CUDA(cudaEventRecord(joined, stream));
      CHECK_CUDA(cudaStreamWaitEvent(copy_stream, joined));
      for (size_t g = 0; g < groups; ++g) {
        const size_t first = g * group;
        const size_t last = std::min(first + group, mib);
        CHECK_CUDA(cudaMemcpyAsync(d_packed + offset[first], host_packed + offset[first],
                                   offset[last] - offset[first], cudaMemcpyHostToDevice,
                                   copy_stream));
        CHECK_CUDA(cudaEventRecord(done[g], copy_stream));
        CHECK_CUDA(cudaStreamWaitEvent(stream, done[g]));
        std::vector<GpuDecompressItem> items;
        for (size_t i = first; i < last; ++i) {
          items.push_back({d_packed + offset[i], d.sizes[i], d.d_out + i * kItemBytes, kItemBytes});
        }
        CheckOk(codec.DecompressAsync(items, errors + first, stream), "decompress");
      }
    });
    CHECK_CUDA(cudaStreamSynchronize(stream));
    for (size_t i = 0; i < mib; ++i) CheckOk(GpuDecodeErrorToStatus(errors[i], i), "decode");
    std::printf(
        "| GPU -> host, pipelined, packed, groups of %zu MiB | %.3f | %.3f | %.1f | %.1f |\n",
        group, d2h_raw, d2h_packed, bytes / d2h_raw / 1e6, bytes / d2h_packed / 1e6);
    std::printf(
        "| host -> GPU, pipelined, packed, groups of %zu MiB | %.3f | %.3f | %.1f | %.1f |\n",
        group, h2d_raw, h2d_packed, bytes / h2d_raw / 1e6, bytes / h2d_packed / 1e6);
    std::fflush(stdout);
  }
  CHECK_CUDA(cudaFree(d_packed));
  CHECK_CUDA(cudaFreeHost(host_packed));
  std::printf("\n");
  for (cudaEvent_t& ev : done) CHECK_CUDA(cudaEventDestroy(ev));
  CHECK_CUDA(cudaEventDestroy(joined));
  CHECK_CUDA(cudaFreeHost(errors));
  CHECK_CUDA(cudaFreeHost(sizes));
  CHECK_CUDA(cudaFreeHost(host));
}

std::vector<std::byte> ReadInput(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", path.c_str());
    std::exit(1);
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < kItemBytes) {
    std::fprintf(stderr, "%s: need at least 1 MiB\n", path.c_str());
    std::exit(1);
  }
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

int Main(int argc, char** argv) {
  CLI::App app{"kvz CUDA codec throughput and PCIe effect"};
  int runs = 30;
  size_t max_mib = 256;
  size_t profile_mib = 0;
  std::vector<size_t> batch_mib = {1, 8, 64, 256};
  std::string input;
  app.add_option("--runs", runs, "timed runs per point; the median is reported")
      ->capture_default_str();
  app.add_option("--max-mib", max_mib, "largest batch, MiB")->capture_default_str();
  app.add_option("--batch-mib", batch_mib, "batch sizes, MiB")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--input", input, "DTYPE:PATH of a raw tensor file to measure instead");
  app.add_option("--profile-mib", profile_mib, "one bf16 batch of N MiB for a profiler, then exit");
  CLI11_PARSE(app, argc, argv);
  absl::StatusOr<int> devices = CudaDeviceCount();
  if (!devices.ok() || *devices == 0) {
    std::printf("no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream, copy_stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CHECK_CUDA(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));

  struct Config {
    KvDtype dtype;
    int chunk_log2;
  };
  // The default chunk (2^14 elements) at every batch size; 2^12 for small batches, where more,
  // shorter chunks give the GPU more warps; fp16 and fp8 at 64 MiB.
  std::vector<Config> configs = {
      {KvDtype::kBf16, 14}, {KvDtype::kBf16, 12}, {KvDtype::kFp16, 14}, {KvDtype::kFp8E4M3, 14}};
  std::vector<std::byte> file;
  if (!input.empty()) {
    const size_t colon = input.find(':');
    absl::StatusOr<KvDtype> dtype = colon == std::string::npos
                                        ? absl::InvalidArgumentError("--input takes DTYPE:PATH")
                                        : ParseKvDtype(input.substr(0, colon));
    CheckOk(dtype.status(), "--input");
    file = ReadInput(input.substr(colon + 1));
    configs = {{*dtype, 14}};
  }
  if (profile_mib > 0) {
    configs = {{KvDtype::kBf16, 14}};
    max_mib = profile_mib;
  }
  std::printf(
      "bench_codec_gpu: %s, %d SMs, items of 1 MiB, median of %d runs (CUDA events)%s%s\n\n",
      prop.name, prop.multiProcessorCount, runs, input.empty() ? "" : ", input ", input.c_str());
  std::printf(
      "| dtype | chunk | batch | ratio | compress GB/s | decompress GB/s | compress, %d queued "
      "| compress, %d queued, each following the last | decompress, %d queued | decompress, %d "
      "queued, each following the last | D2D copy GB/s |\n|---|---|---|---|---|---|---|---|---|"
      "---|---|\n",
      kQueued, kQueued, kQueued, kQueued);

  const size_t pool = max_mib;
  for (const Config& config : configs) {
    const KvDtype dtype = config.dtype;
    const bool full = !file.empty() || dtype == KvDtype::kBf16;  // every batch size
    const CodecOptions options{.dtype = dtype, .chunk_log2 = config.chunk_log2};
    absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
    CheckOk(codec.status(), "GpuCodec::Create");
    Data d = MakePool(dtype, config.chunk_log2, pool, file);
    // Frames of the whole pool once, for the ratio and as decode inputs; verified against the
    // CPU codec and by a round trip.
    absl::StatusOr<std::vector<uint64_t>> sizes =
        (*codec)->Compress(CompressItems(d, 0, pool), stream);
    CheckOk(sizes.status(), "compress");
    d.sizes = *sizes;
    CheckOk((*codec)->Decompress(DecompressItems(d, 0, pool), stream), "decompress");
    if (profile_mib > 0) {  // the profiled pair: one more compress and decompress, then out
      CheckOk((*codec)->Compress(CompressItems(d, 0, pool), stream).status(), "compress");
      CheckOk((*codec)->Decompress(DecompressItems(d, 0, pool), stream), "decompress");
      std::printf("profile run done: %zu MiB\n", pool);
      return 0;
    }
    {
      std::vector<std::byte> in(kItemBytes), out(kItemBytes);
      for (size_t i : {size_t{0}, pool / 2, pool - 1}) {
        std::vector<std::byte> frame(d.sizes[i]);
        CHECK_CUDA(
            cudaMemcpy(in.data(), d.d_in + i * kItemBytes, kItemBytes, cudaMemcpyDeviceToHost));
        CHECK_CUDA(
            cudaMemcpy(out.data(), d.d_out + i * kItemBytes, kItemBytes, cudaMemcpyDeviceToHost));
        CHECK_CUDA(cudaMemcpy(frame.data(), d.d_frames + i * d.capacity, frame.size(),
                              cudaMemcpyDeviceToHost));
        absl::StatusOr<std::vector<std::byte>> cpu = Compress(in, options);
        if (in != out || !cpu.ok() || *cpu != frame) {
          std::fprintf(stderr, "verification failed for %s, item %zu\n",
                       std::string(KvDtypeName(dtype)).c_str(), i);
          return 1;
        }
      }
    }
    uint64_t total = 0;
    for (uint64_t s : d.sizes) total += s;
    const double ratio = static_cast<double>(pool * kItemBytes) / static_cast<double>(total);

    uint64_t* host_sizes = PinnedArray<uint64_t>(pool);
    int32_t* host_errors = PinnedArray<int32_t>(pool);
    for (size_t mib : batch_mib) {
      if (mib > pool || (!full && mib != 64) || (config.chunk_log2 != 14 && mib > 64)) {
        continue;
      }
      const size_t slots = pool / mib;
      const double bytes = static_cast<double>(mib * kItemBytes);
      auto compress = [&](int r) {
        const size_t first = (r % slots) * mib;
        CheckOk((*codec)->CompressAsync(CompressItems(d, first, mib), host_sizes, stream),
                "compress");
      };
      // The same, each batch but a run's first declared to follow the one before it
      // (GpuBatchOptions::follows_previous_batch: it may start as that one finishes).
      auto compress_following = [&](int r) {
        const size_t first = (r % slots) * mib;
        const GpuBatchOptions follows{.follows_previous_batch = r % kQueued != 0};
        CheckOk((*codec)->CompressAsync(CompressItems(d, first, mib), host_sizes, stream, follows),
                "compress");
      };
      auto decompress = [&](int r) {
        const size_t first = (r % slots) * mib;
        CheckOk((*codec)->DecompressAsync(DecompressItems(d, first, mib), host_errors, stream),
                "decompress");
      };
      auto decompress_following = [&](int r) {
        const size_t first = (r % slots) * mib;
        const GpuBatchOptions follows{.follows_previous_batch = r % kQueued != 0};
        CheckOk(
            (*codec)->DecompressAsync(DecompressItems(d, first, mib), host_errors, stream, follows),
            "decompress");
      };
      // One batch between the events: the GPU also waits for the host's calls (descriptor
      // upload, launch, sizes back), as a caller that queues one batch and waits does.
      const double enc = MedianMs(runs, stream, compress);
      const double dec = MedianMs(runs, stream, decompress);
      // kQueued batches queued back to back, time per batch: a pipeline's view (GpuBlockClient
      // queues every stage's compression at once), where the host's calls overlap the GPU.
      auto queued = [&](const std::function<void(int)>& fn) {
        return MedianMs(runs, stream,
                        [&](int r) {
                          for (int k = 0; k < kQueued; ++k) fn(r * kQueued + k);
                        }) /
               kQueued;
      };
      const double enc_queued = queued(compress);
      const double enc_following = queued(compress_following);
      const double dec_queued = queued(decompress);
      const double dec_following = queued(decompress_following);
      const double copy = MedianMs(runs, stream, [&](int r) {
        const size_t first = (r % slots) * mib;
        CHECK_CUDA(cudaMemcpyAsync(d.d_out + first * kItemBytes, d.d_in + first * kItemBytes,
                                   mib * kItemBytes, cudaMemcpyDeviceToDevice, stream));
      });
      for (size_t i = 0; i < mib; ++i) CheckOk(GpuDecodeErrorToStatus(host_errors[i], i), "decode");
      std::printf(
          "| %s | 2^%d | %zu MiB | %.3f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
          std::string(KvDtypeName(dtype)).c_str(), config.chunk_log2, mib, ratio, bytes / enc / 1e6,
          bytes / dec / 1e6, bytes / enc_queued / 1e6, bytes / enc_following / 1e6,
          bytes / dec_queued / 1e6, bytes / dec_following / 1e6, bytes / copy / 1e6);
      std::fflush(stdout);
    }
    CHECK_CUDA(cudaFreeHost(host_sizes));
    CHECK_CUDA(cudaFreeHost(host_errors));

    if (dtype == KvDtype::kBf16 && config.chunk_log2 == 14 && file.empty()) {
      PcieTable(**codec, d, std::min<size_t>(64, pool), runs, stream, copy_stream);
    }
    CHECK_CUDA(cudaFree(d.d_in));
    CHECK_CUDA(cudaFree(d.d_frames));
    CHECK_CUDA(cudaFree(d.d_out));
  }
  return 0;
}

}  // namespace
}  // namespace kvtier::bench

int main(int argc, char** argv) { return kvtier::bench::Main(argc, argv); }
