// bench_demotion_encoder: how fast kvtierd can encode a demotion batch (host blocks in pageable
// memory, as the demotion thread stages them) with each BatchEncoder it can choose
// (nvme.demotion_encoder): the CPU codec on 2 threads (the default), on every core, and the GPU
// batch encoder (pack into pinned memory, one copy to the GPU, encode, frames back). Against a
// memcpy of the same bytes in the same run, as the host-memory baseline. docs/benchmarks.md,
// "Demotion encoding on the CPU and on the GPU", holds the results.
//   bench_demotion_encoder [--runs 15] [--batch-mib 32] [--block-kib 256]
// Reports the median wall time per batch as GB/s of original bytes, and every encoder's frames
// are checked against the CPU codec's before timing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "kv_like_data.h"
#include "kvtier/compression/batch_encoder.h"
#include "kvtier/compression/gpu_batch_encoder.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier::bench {
namespace {

using Clock = std::chrono::steady_clock;

double MedianSeconds(int runs, const std::function<void()>& fn) {
  fn();  // warm-up (and the GPU encoder's allocations)
  std::vector<double> s;
  for (int r = 0; r < runs; ++r) {
    const Clock::time_point start = Clock::now();
    fn();
    s.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

int Main(int argc, char** argv) {
  CLI::App app{"demotion batch encoding: CPU threads against the GPU batch encoder"};
  int runs = 15;
  size_t batch_mib = 32;
  size_t block_kib = 256;
  app.add_option("--runs", runs, "timed runs; the median is reported")->capture_default_str();
  app.add_option("--batch-mib", batch_mib, "bytes per batch, MiB")->capture_default_str();
  app.add_option("--block-kib", block_kib, "bytes per block, KiB")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const CodecOptions options{.dtype = KvDtype::kBf16};
  const size_t block_bytes = block_kib << 10;
  const size_t blocks = (batch_mib << 20) / block_bytes;
  std::vector<std::vector<std::byte>> inputs;
  std::vector<std::vector<std::byte>> outputs;
  for (size_t i = 0; i < blocks; ++i) {
    // 4 layers x K/V x tokens x 8 heads x 128 dims of bf16: 16 KiB per token.
    const int tokens = static_cast<int>(std::max<size_t>(1, (block_bytes + 16383) / 16384));
    std::vector<std::byte> kv = testing::GenerateKvBlock(KvDtype::kBf16, 4, tokens, 8, 128, i);
    kv.resize(block_bytes);
    inputs.push_back(std::move(kv));
    outputs.emplace_back(MaxCompressedSize(block_bytes, options));
  }
  std::vector<CompressJob> jobs(blocks);
  auto reset = [&] {
    for (size_t i = 0; i < blocks; ++i) jobs[i] = {.input = inputs[i], .output = outputs[i]};
  };
  std::vector<std::vector<std::byte>> reference;
  for (const auto& in : inputs) reference.push_back(*Compress(in, options));

  struct Entry {
    std::string label;
    std::unique_ptr<BatchEncoder> encoder;
  };
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<Entry> entries;
  entries.push_back({"cpu, 2 threads (default)", NewCpuBatchEncoder(2)});
  entries.push_back({"cpu, " + std::to_string(cores) + " threads", NewCpuBatchEncoder(cores)});
  absl::StatusOr<std::unique_ptr<BatchEncoder>> gpu = NewGpuBatchEncoder();
  if (gpu.ok()) {
    entries.push_back({(*gpu)->Describe(), std::move(*gpu)});
  } else {
    std::printf("no GPU encoder: %s\n", gpu.status().ToString().c_str());
  }

  std::vector<std::byte> copy_src(batch_mib << 20), copy_dst(batch_mib << 20);
  std::memset(copy_src.data(), 1, copy_src.size());
  const double memcpy_s =
      MedianSeconds(runs, [&] { std::memcpy(copy_dst.data(), copy_src.data(), copy_src.size()); });
  const double bytes = static_cast<double>(blocks * block_bytes);
  std::printf(
      "bench_demotion_encoder: %zu blocks of %zu KiB (bf16, KV-like), %d cores, median of "
      "%d runs\n\n| encoder | ms per batch | GB/s | ratio | x memcpy time |\n"
      "|---|---|---|---|---|\n",
      blocks, block_kib, cores, runs);
  std::printf("| memcpy of the batch | %.2f | %.2f | | 1.00 |\n", memcpy_s * 1e3,
              bytes / memcpy_s / 1e9);
  for (Entry& e : entries) {
    reset();
    if (absl::Status s = e.encoder->Compress(jobs, options); !s.ok()) {
      std::fprintf(stderr, "%s: %s\n", e.label.c_str(), s.ToString().c_str());
      return 1;
    }
    uint64_t stored = 0;
    for (size_t i = 0; i < blocks; ++i) {
      if (jobs[i].compressed_bytes != reference[i].size() ||
          !std::equal(reference[i].begin(), reference[i].end(), outputs[i].begin())) {
        std::fprintf(stderr, "%s: block %zu is not the CPU codec's frame\n", e.label.c_str(), i);
        return 1;
      }
      stored += jobs[i].compressed_bytes;
    }
    const double s = MedianSeconds(runs, [&] {
      reset();
      if (!e.encoder->Compress(jobs, options).ok()) std::exit(1);
    });
    std::printf("| %s | %.2f | %.2f | %.3f | %.1f |\n", e.label.c_str(), s * 1e3, bytes / s / 1e9,
                bytes / static_cast<double>(stored), s / memcpy_s);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace kvtier::bench

int main(int argc, char** argv) { return kvtier::bench::Main(argc, argv); }
