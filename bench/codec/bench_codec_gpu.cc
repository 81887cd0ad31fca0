// bench_codec_gpu: throughput of the kvz CUDA codec on KV-like data at 1 MiB to 256 MiB
// batches (items of 1 MiB, one frame each), against a device-to-device copy of the same bytes,
// and the end-to-end effect on PCIe transfers: compress then copy to the host versus copying
// the raw bytes (and the reverse). docs/benchmarks.md, "Compression", holds the results.
//   bench_codec_gpu [--runs 30] [--max-mib 256]
// Times are CUDA-event medians over --runs, after a warm-up; consecutive runs use different
// slices of a 256 MiB buffer so that small batches are not served from L2 alone.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
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

Data MakePool(KvDtype dtype, int chunk_log2, size_t pool_mib) {
  Data d{dtype, pool_mib};
  // 32 MiB of distinct KV-like blocks, repeated to fill the pool (chunks are independent,
  // so repetition changes neither the ratio nor the speed).
  std::vector<std::byte> distinct;
  for (int b = 0; distinct.size() < (size_t{32} << 20); ++b) {
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

int Main(int argc, char** argv) {
  CLI::App app{"kvz CUDA codec throughput and PCIe effect"};
  int runs = 30;
  size_t max_mib = 256;
  app.add_option("--runs", runs, "timed runs per point; the median is reported")
      ->capture_default_str();
  app.add_option("--max-mib", max_mib, "largest batch, MiB")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  absl::StatusOr<int> devices = CudaDeviceCount();
  if (!devices.ok() || *devices == 0) {
    std::printf("no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::printf("bench_codec_gpu: %s, %d SMs, items of 1 MiB, median of %d runs (CUDA events)\n\n",
              prop.name, prop.multiProcessorCount, runs);
  std::printf(
      "| dtype | chunk | batch | ratio | compress GB/s | decompress GB/s | D2D copy GB/s "
      "|\n|---|---|---|---|---|---|---|\n");

  const size_t pool = max_mib;
  struct Config {
    KvDtype dtype;
    int chunk_log2;
  };
  // The default chunk (2^14 elements) at every batch size; 2^12 for small batches, where more,
  // shorter chunks give the GPU more warps; fp16 and fp8 at 64 MiB.
  for (const Config& config : {Config{KvDtype::kBf16, 14}, Config{KvDtype::kBf16, 12},
                               Config{KvDtype::kFp16, 14}, Config{KvDtype::kFp8E4M3, 14}}) {
    const KvDtype dtype = config.dtype;
    const CodecOptions options{.dtype = dtype, .chunk_log2 = config.chunk_log2};
    absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(options);
    CheckOk(codec.status(), "GpuCodec::Create");
    Data d = MakePool(dtype, config.chunk_log2, pool);
    // Frames of the whole pool once, for the ratio and as decode inputs; verified against the
    // CPU codec and by a round trip.
    absl::StatusOr<std::vector<uint64_t>> sizes =
        (*codec)->Compress(CompressItems(d, 0, pool), stream);
    CheckOk(sizes.status(), "compress");
    d.sizes = *sizes;
    CheckOk((*codec)->Decompress(DecompressItems(d, 0, pool), stream), "decompress");
    {
      std::vector<std::byte> in(kItemBytes), out(kItemBytes), frame(d.sizes[0]);
      CHECK_CUDA(cudaMemcpy(in.data(), d.d_in, kItemBytes, cudaMemcpyDeviceToHost));
      CHECK_CUDA(cudaMemcpy(out.data(), d.d_out, kItemBytes, cudaMemcpyDeviceToHost));
      CHECK_CUDA(cudaMemcpy(frame.data(), d.d_frames, frame.size(), cudaMemcpyDeviceToHost));
      absl::StatusOr<std::vector<std::byte>> cpu = Compress(in, options);
      if (in != out || !cpu.ok() || *cpu != frame) {
        std::fprintf(stderr, "verification failed for %s\n",
                     std::string(KvDtypeName(dtype)).c_str());
        return 1;
      }
    }
    uint64_t total = 0;
    for (uint64_t s : d.sizes) total += s;
    const double ratio = static_cast<double>(pool * kItemBytes) / static_cast<double>(total);

    std::vector<uint64_t> host_sizes(pool);
    std::vector<int32_t> host_errors(pool);
    for (size_t mib : {size_t{1}, size_t{8}, size_t{64}, size_t{256}}) {
      if (mib > pool || (dtype != KvDtype::kBf16 && mib != 64) ||
          (config.chunk_log2 != 14 && mib > 64)) {
        continue;
      }
      const size_t slots = pool / mib;
      const double bytes = static_cast<double>(mib * kItemBytes);
      const double enc = MedianMs(runs, stream, [&](int r) {
        const size_t first = (r % slots) * mib;
        CheckOk((*codec)->CompressAsync(CompressItems(d, first, mib), host_sizes.data(), stream),
                "compress");
      });
      const double dec = MedianMs(runs, stream, [&](int r) {
        const size_t first = (r % slots) * mib;
        CheckOk(
            (*codec)->DecompressAsync(DecompressItems(d, first, mib), host_errors.data(), stream),
            "decompress");
      });
      const double copy = MedianMs(runs, stream, [&](int r) {
        const size_t first = (r % slots) * mib;
        CHECK_CUDA(cudaMemcpyAsync(d.d_out + first * kItemBytes, d.d_in + first * kItemBytes,
                                   mib * kItemBytes, cudaMemcpyDeviceToDevice, stream));
      });
      for (size_t i = 0; i < mib; ++i) CheckOk(GpuDecodeErrorToStatus(host_errors[i], i), "decode");
      std::printf("| %s | 2^%d | %zu MiB | %.3f | %.0f | %.0f | %.0f |\n",
                  std::string(KvDtypeName(dtype)).c_str(), config.chunk_log2, mib, ratio,
                  bytes / enc / 1e6, bytes / dec / 1e6, bytes / copy / 1e6);
      std::fflush(stdout);
    }

    if (dtype == KvDtype::kBf16 && config.chunk_log2 == 14) {
      // End to end over PCIe, 64 MiB: raw copy versus compress + copy of the frames.
      const size_t mib = std::min<size_t>(64, pool);
      void* pinned = nullptr;
      CHECK_CUDA(cudaMallocHost(&pinned, mib * d.capacity));
      auto* host = static_cast<uint8_t*>(pinned);
      const double d2h_raw = MedianMs(runs, stream, [&](int) {
        CHECK_CUDA(cudaMemcpyAsync(host, d.d_in, mib * kItemBytes, cudaMemcpyDeviceToHost, stream));
      });
      const double d2h_kvz = MedianMs(runs, stream, [&](int) {
        absl::StatusOr<std::vector<uint64_t>> s =
            (*codec)->Compress(CompressItems(d, 0, mib), stream);
        CheckOk(s.status(), "compress");
        for (size_t i = 0; i < mib; ++i) {
          CHECK_CUDA(cudaMemcpyAsync(host + i * d.capacity, d.d_frames + i * d.capacity, (*s)[i],
                                     cudaMemcpyDeviceToHost, stream));
        }
      });
      const double h2d_raw = MedianMs(runs, stream, [&](int) {
        CHECK_CUDA(
            cudaMemcpyAsync(d.d_out, host, mib * kItemBytes, cudaMemcpyHostToDevice, stream));
      });
      const double h2d_kvz = MedianMs(runs, stream, [&](int) {
        for (size_t i = 0; i < mib; ++i) {
          CHECK_CUDA(cudaMemcpyAsync(d.d_frames + i * d.capacity, host + i * d.capacity, d.sizes[i],
                                     cudaMemcpyHostToDevice, stream));
        }
        CheckOk((*codec)->DecompressAsync(DecompressItems(d, 0, mib), host_errors.data(), stream),
                "decompress");
      });
      std::printf(
          "\n| bf16, %zu MiB over PCIe | raw ms | kvz ms | raw GB/s | effective GB/s with "
          "kvz |\n|---|---|---|---|---|\n",
          mib);
      const double bytes = static_cast<double>(mib * kItemBytes);
      std::printf("| GPU -> host (compress, copy frames) | %.2f | %.2f | %.1f | %.1f |\n", d2h_raw,
                  d2h_kvz, bytes / d2h_raw / 1e6, bytes / d2h_kvz / 1e6);
      std::printf("| host -> GPU (copy frames, decompress) | %.2f | %.2f | %.1f | %.1f |\n\n",
                  h2d_raw, h2d_kvz, bytes / h2d_raw / 1e6, bytes / h2d_kvz / 1e6);
      CHECK_CUDA(cudaFreeHost(pinned));
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
