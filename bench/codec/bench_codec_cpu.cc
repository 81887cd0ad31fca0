// bench_codec_cpu: ratio and single-core throughput of the kvz CPU codec against zstd -1 and
// lz4 on the same KV-like data in the same run (docs/benchmarks.md, "Compression").
//   bench_codec_cpu [--mib 16] [--block-kib 256] [--runs 5] [--chunk-log2 14]
//                   [--input DTYPE:PATH]...
// --input measures files (e.g. the KV dumps of bench/codec/dump_random_model_kv.py) instead of
// the generated datasets, each cut to --mib.
// Each dataset is cut into blocks (one kvz frame / zstd frame / lz4 block each, as the daemon
// would store them). Two timings, both on one thread and in thread CPU time (so that other
// processes on a shared machine do not count; "per core"):
// - hot: each block compressed (decompressed) --runs times in a row, median per block, summed:
//   the codec's own speed with the block in cache, as right after it arrived;
// - stream: median of --runs passes over all blocks: adds the machine's memory bandwidth.
#include <lz4.h>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench_data.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier::bench {
namespace {

double ThreadSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double MedianSeconds(int runs, const std::function<void()>& fn) {
  fn();  // warm-up: page faults, caches, lazily built tables
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    const double start = ThreadSeconds();
    fn();
    t.push_back(ThreadSeconds() - start);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Codec {
  std::string name;
  // Returns the compressed size of `in` written to `out` (capacity `cap`).
  std::function<size_t(const std::byte* in, size_t n, std::byte* out, size_t cap)> compress;
  std::function<void(const std::byte* in, size_t n, std::byte* out, size_t out_n)> decompress;
  std::function<size_t(size_t)> bound;
};

struct Result {
  double ratio, hot_enc_gbs, hot_dec_gbs, enc_gbs, dec_gbs;
};

Result Measure(const Codec& c, const Dataset& d, size_t block_bytes, int runs) {
  std::vector<std::pair<size_t, size_t>> blocks;  // offset, size
  for (size_t off = 0; off < d.bytes.size(); off += block_bytes) {
    blocks.emplace_back(off, std::min(block_bytes, d.bytes.size() - off));
  }
  std::vector<std::vector<std::byte>> frames(blocks.size());
  std::vector<size_t> sizes(blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) frames[b].resize(c.bound(blocks[b].second));
  double hot_enc = 0, hot_dec = 0;
  std::vector<std::byte> out(d.bytes.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const std::byte* in = d.bytes.data() + blocks[b].first;
    hot_enc += MedianSeconds(runs, [&] {
      sizes[b] = c.compress(in, blocks[b].second, frames[b].data(), frames[b].size());
    });
    hot_dec += MedianSeconds(runs, [&] {
      c.decompress(frames[b].data(), sizes[b], out.data() + blocks[b].first, blocks[b].second);
    });
  }
  const double enc = MedianSeconds(runs, [&] {
    for (size_t b = 0; b < blocks.size(); ++b) {
      sizes[b] = c.compress(d.bytes.data() + blocks[b].first, blocks[b].second, frames[b].data(),
                            frames[b].size());
    }
  });
  const double dec = MedianSeconds(runs, [&] {
    for (size_t b = 0; b < blocks.size(); ++b) {
      c.decompress(frames[b].data(), sizes[b], out.data() + blocks[b].first, blocks[b].second);
    }
  });
  if (out != d.bytes) {
    std::fprintf(stderr, "%s: round trip mismatch on %s\n", c.name.c_str(), d.name.c_str());
    std::exit(1);
  }
  size_t total = 0;
  for (size_t s : sizes) total += s;
  const double gb = static_cast<double>(d.bytes.size()) / 1e9;
  return {static_cast<double>(d.bytes.size()) / total, gb / hot_enc, gb / hot_dec, gb / enc,
          gb / dec};
}

void Die(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "%s: %s\n", what, std::string(s.message()).c_str());
  std::exit(1);
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

int Main(int argc, char** argv) {
  CLI::App app{"kvz CPU codec vs zstd -1 and lz4 on KV-like data"};
  size_t mib = 16, block_kib = 256;
  int runs = 5, chunk_log2 = CodecOptions().chunk_log2;
  app.add_option("--mib", mib, "bytes per dataset, in MiB")->capture_default_str();
  app.add_option("--block-kib", block_kib, "block (frame) size, in KiB")->capture_default_str();
  app.add_option("--runs", runs, "timed passes; the median is reported")->capture_default_str();
  app.add_option("--chunk-log2", chunk_log2, "kvz chunk size")->capture_default_str();
  std::vector<std::string> inputs;
  app.add_option("--input", inputs, "DTYPE:PATH of a raw tensor file to measure instead");
  CLI11_PARSE(app, argc, argv);
  std::vector<Dataset> datasets;
  for (const std::string& spec : inputs) {
    const size_t colon = spec.find(':');
    absl::StatusOr<Dataset> d =
        colon == std::string::npos
            ? absl::InvalidArgumentError("--input takes DTYPE:PATH, e.g. bf16:kv.bin")
            : FileDataset(spec.substr(0, colon), spec.substr(colon + 1), mib << 20);
    if (!d.ok()) Die("--input", d.status());
    datasets.push_back(*std::move(d));
  }
  if (inputs.empty()) datasets = StandardDatasets(mib << 20);

  std::printf(
      "bench_codec_cpu: %zu MiB per dataset, %zu KiB blocks, median of %d runs, 1 thread, "
      "%s, kvz chunk 2^%d elements, zstd %s, lz4 %s\n\n",
      mib, block_kib, runs, CpuModel().c_str(), chunk_log2, ZSTD_versionString(),
      LZ4_versionString());
  std::printf(
      "| data | codec | ratio | encode GB/s hot | decode GB/s hot | encode GB/s stream | decode "
      "GB/s stream |\n|---|---|---|---|---|---|---|\n");
  for (const Dataset& d : datasets) {
    const CodecOptions options{.dtype = d.dtype, .chunk_log2 = chunk_log2};
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    const std::vector<Codec> codecs = {
        {"kvz",
         [&](const std::byte* in, size_t n, std::byte* out, size_t cap) {
           absl::StatusOr<size_t> s = Compress({in, n}, options, {out, cap});
           if (!s.ok()) Die("kvz compress", s.status());
           return *s;
         },
         [&](const std::byte* in, size_t n, std::byte* out, size_t out_n) {
           if (absl::Status s = Decompress({in, n}, {out, out_n}); !s.ok()) Die("kvz", s);
         },
         [&](size_t n) { return MaxCompressedSize(n, options); }},
        {"zstd -1",
         [&](const std::byte* in, size_t n, std::byte* out, size_t cap) {
           return ZSTD_compressCCtx(cctx, out, cap, in, n, 1);
         },
         [&](const std::byte* in, size_t n, std::byte* out, size_t out_n) {
           ZSTD_decompressDCtx(dctx, out, out_n, in, n);
         },
         [](size_t n) { return ZSTD_compressBound(n); }},
        {"lz4",
         [](const std::byte* in, size_t n, std::byte* out, size_t cap) {
           return static_cast<size_t>(
               LZ4_compress_default(reinterpret_cast<const char*>(in), reinterpret_cast<char*>(out),
                                    static_cast<int>(n), static_cast<int>(cap)));
         },
         [](const std::byte* in, size_t n, std::byte* out, size_t out_n) {
           LZ4_decompress_safe(reinterpret_cast<const char*>(in), reinterpret_cast<char*>(out),
                               static_cast<int>(n), static_cast<int>(out_n));
         },
         [](size_t n) { return static_cast<size_t>(LZ4_compressBound(static_cast<int>(n))); }},
    };
    for (const Codec& c : codecs) {
      const Result r = Measure(c, d, block_kib << 10, runs);
      std::printf("| %s | %s | %.3f | %.2f | %.2f | %.2f | %.2f |\n", d.name.c_str(),
                  c.name.c_str(), r.ratio, r.hot_enc_gbs, r.hot_dec_gbs, r.enc_gbs, r.dec_gbs);
      std::fflush(stdout);
    }
    std::printf("| %s | order-0 bound | %.3f | | | | |\n", d.name.c_str(),
                Order0Bound(d, chunk_log2));
    ZSTD_freeCCtx(cctx);
    ZSTD_freeDCtx(dctx);
  }
  return 0;
}

}  // namespace
}  // namespace kvtier::bench

int main(int argc, char** argv) { return kvtier::bench::Main(argc, argv); }
