// kvtier-codec: kvz compression for files, so that users can see what their KV tensors
// compress to (docs/compression.md).
//   kvtier-codec compress --dtype bf16|fp16|fp8e4m3|fp8e5m2|raw [--chunk-log2 N] IN OUT
//   kvtier-codec decompress IN OUT
//   kvtier-codec info [--chunks] FILE
// A file holds one or more concatenated frames: inputs above 1 GiB are cut into 1 GiB frames
// (a frame holds at most 2 GiB).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "kvtier/compression/frame_info.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier {
namespace {

constexpr size_t kFrameInputBytes = size_t{1} << 30;

absl::StatusOr<std::vector<std::byte>> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot open %s for reading", path));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::UnavailableError(absl::StrFormat("error reading %s", path));
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

absl::Status WriteFile(const std::string& path, const std::vector<std::byte>& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrFormat("cannot open %s for writing", path));
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out.good()) return absl::UnavailableError(absl::StrFormat("error writing %s", path));
  return absl::OkStatus();
}

absl::Status RunCompress(const std::string& dtype_name, int chunk_log2, const std::string& in_path,
                         const std::string& out_path) {
  absl::StatusOr<KvDtype> dtype = ParseKvDtype(dtype_name);
  if (!dtype.ok()) return dtype.status();
  const CodecOptions options{.dtype = *dtype, .chunk_log2 = chunk_log2};
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  absl::StatusOr<std::vector<std::byte>> input = ReadFile(in_path);
  if (!input.ok()) return input.status();
  std::vector<std::byte> out;
  std::vector<std::byte> frame;
  size_t pos = 0;
  do {
    const size_t n = std::min(kFrameInputBytes, input->size() - pos);
    const std::span<const std::byte> part(input->data() + pos, n);
    frame.resize(MaxCompressedSize(n, options));
    absl::StatusOr<size_t> size = Compress(part, options, frame);
    if (!size.ok()) return size.status();
    out.insert(out.end(), frame.begin(), frame.begin() + static_cast<ptrdiff_t>(*size));
    pos += n;
  } while (pos < input->size());
  if (absl::Status s = WriteFile(out_path, out); !s.ok()) return s;
  std::printf("%s: %zu -> %zu bytes (%.3fx, %s)\n", in_path.c_str(), input->size(), out.size(),
              out.empty() ? 0.0 : static_cast<double>(input->size()) / out.size(),
              std::string(KvDtypeName(*dtype)).c_str());
  return absl::OkStatus();
}

absl::Status RunDecompress(const std::string& in_path, const std::string& out_path) {
  absl::StatusOr<std::vector<std::byte>> input = ReadFile(in_path);
  if (!input.ok()) return input.status();
  std::vector<std::byte> out;
  size_t pos = 0;
  size_t frame_index = 0;
  do {
    const std::span<const std::byte> rest(input->data() + pos, input->size() - pos);
    absl::StatusOr<FrameHeader> h = ReadFrameHeader(rest);
    if (!h.ok()) {
      return absl::Status(h.status().code(), absl::StrFormat("frame %d at byte %d: %s", frame_index,
                                                             pos, h.status().message()));
    }
    const size_t old = out.size();
    out.resize(old + h->decompressed_bytes);
    const absl::Status s = Decompress(
        rest.first(h->frame_bytes), std::span<std::byte>(out.data() + old, h->decompressed_bytes));
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrFormat("frame %d at byte %d: %s", frame_index, pos, s.message()));
    }
    pos += h->frame_bytes;
    ++frame_index;
  } while (pos < input->size());
  return WriteFile(out_path, out);
}

absl::Status RunInfo(const std::string& path, bool list_chunks) {
  absl::StatusOr<std::vector<std::byte>> input = ReadFile(path);
  if (!input.ok()) return input.status();
  size_t pos = 0;
  uint64_t original = 0;
  size_t frames = 0;
  do {
    const std::span<const std::byte> rest(input->data() + pos, input->size() - pos);
    absl::StatusOr<FrameInfo> info = InspectFrame(rest);
    if (!info.ok()) {
      return absl::Status(info.status().code(), absl::StrFormat("frame %d at byte %d: %s", frames,
                                                                pos, info.status().message()));
    }
    const FrameHeader& h = info->header;
    std::map<std::string_view, std::pair<int, uint64_t>> modes;  // count, body bytes
    for (const ChunkInfo& c : info->chunks) {
      modes[c.mode].first += 1;
      modes[c.mode].second += c.body_bytes;
    }
    std::printf(
        "frame %zu: kvz v1, %s, %llu elements, %llu -> %llu bytes (%.3fx), %llu chunks of "
        "%d elements\n",
        frames, std::string(KvDtypeName(h.dtype)).c_str(),
        static_cast<unsigned long long>(h.element_count),
        static_cast<unsigned long long>(h.decompressed_bytes),
        static_cast<unsigned long long>(h.frame_bytes),
        h.frame_bytes ? static_cast<double>(h.decompressed_bytes) / h.frame_bytes : 0.0,
        static_cast<unsigned long long>(h.num_chunks), 1 << h.chunk_log2);
    std::printf("  overhead: 32 header + %llu directory bytes\n",
                static_cast<unsigned long long>(8 * h.num_chunks));
    for (const auto& [mode, stat] : modes) {
      std::printf("  %-8s %6d chunks  %12llu bytes\n", std::string(mode).c_str(), stat.first,
                  static_cast<unsigned long long>(stat.second));
    }
    if (list_chunks) {
      std::printf("  %7s %9s %10s %10s %7s %-8s %7s %7s\n", "chunk", "elements", "original", "body",
                  "ratio", "mode", "symbols", "max_len");
      for (size_t c = 0; c < info->chunks.size(); ++c) {
        const ChunkInfo& ci = info->chunks[c];
        std::printf("  %7zu %9u %10llu %10llu %7.3f %-8s %7d %7d\n", c, ci.elements,
                    static_cast<unsigned long long>(ci.original_bytes),
                    static_cast<unsigned long long>(ci.body_bytes),
                    static_cast<double>(ci.original_bytes) / ci.body_bytes,
                    std::string(ci.mode).c_str(), ci.symbols, ci.max_code_length);
      }
    }
    original += h.decompressed_bytes;
    pos += h.frame_bytes;
    ++frames;
  } while (pos < input->size());
  std::printf("total: %zu frame(s), %llu -> %zu bytes (%.3fx)\n", frames,
              static_cast<unsigned long long>(original), input->size(),
              input->empty() ? 0.0 : static_cast<double>(original) / input->size());
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  CLI::App app{"kvz lossless compression for KV-cache tensors (docs/format.md)"};
  app.require_subcommand(1);

  std::string dtype = "bf16", in_path, out_path;
  int chunk_log2 = CodecOptions().chunk_log2;
  CLI::App* compress = app.add_subcommand("compress", "compress a file of tensor elements");
  compress->add_option("--dtype", dtype, "element type: bf16, fp16, fp8e4m3, fp8e5m2 or raw")
      ->required();
  compress->add_option("--chunk-log2", chunk_log2, "log2 of elements per chunk, 10..16")
      ->capture_default_str();
  compress->add_option("IN", in_path, "input file")->required();
  compress->add_option("OUT", out_path, "output file")->required();

  CLI::App* decompress = app.add_subcommand("decompress", "decompress a kvz file");
  decompress->add_option("IN", in_path, "kvz file")->required();
  decompress->add_option("OUT", out_path, "output file")->required();

  bool list_chunks = false;
  CLI::App* info = app.add_subcommand("info", "show a kvz file's frames, chunk modes and ratio");
  info->add_flag("--chunks", list_chunks, "list every chunk");
  info->add_option("FILE", in_path, "kvz file")->required();

  CLI11_PARSE(app, argc, argv);
  absl::Status s;
  if (compress->parsed()) {
    s = RunCompress(dtype, chunk_log2, in_path, out_path);
  } else if (decompress->parsed()) {
    s = RunDecompress(in_path, out_path);
  } else {
    s = RunInfo(in_path, list_chunks);
  }
  if (!s.ok()) {
    std::cerr << "kvtier-codec: " << s.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace kvtier

int main(int argc, char** argv) { return kvtier::Main(argc, argv); }
