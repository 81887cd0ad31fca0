// Frame layer of the CPU codec: options, header and directory, chunk placement, batches.
#include "kvtier/compression/kv_codec.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "chunk_codec.h"
#include "format.h"
#include "frame_header.h"
#include "kvtier/common/strings.h"

namespace kvtier {
namespace {

using kvz::ChunkLayout;

const uint8_t* Bytes(std::span<const std::byte> s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}
uint8_t* Bytes(std::span<std::byte> s) { return reinterpret_cast<uint8_t*>(s.data()); }

// Runs fn(i) for i in [0, n) on up to `threads` threads; returns the first error in index
// order (each prefixed with its index).
template <typename Fn>
absl::Status ParallelFor(size_t n, int threads, const char* what, Fn fn) {
  std::vector<absl::Status> results(n);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) results[i] = fn(i);
  };
  const size_t extra = std::min<size_t>(n, static_cast<size_t>(std::max(threads, 1))) - 1;
  std::vector<std::thread> pool;
  pool.reserve(extra);
  for (size_t t = 0; t < extra; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  for (size_t i = 0; i < n; ++i) {
    if (!results[i].ok()) {
      return absl::Status(results[i].code(),
                          absl::StrCat(what, " ", i, ": ", results[i].message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CodecOptions::Validate() const {
  if (static_cast<uint8_t>(dtype) >= kvz::kNumDtypes) {
    return absl::InvalidArgumentError(
        absl::StrCat("CodecOptions.dtype ", static_cast<int>(dtype), " is not a KvDtype"));
  }
  if (chunk_log2 < kvz::kMinChunkLog2 || chunk_log2 > kvz::kMaxChunkLog2) {
    return absl::InvalidArgumentError(absl::StrCat("CodecOptions.chunk_log2 must be in [",
                                                   kvz::kMinChunkLog2, ", ", kvz::kMaxChunkLog2,
                                                   "], got ", chunk_log2));
  }
  return absl::OkStatus();
}

size_t MaxCompressedSize(size_t input_bytes, const CodecOptions& options) {
  const uint64_t elements = input_bytes / KvDtypeBytes(options.dtype);
  return kvz::kHeaderBytes + kvz::kDirEntryBytes * kvz::NumChunks(elements, options.chunk_log2) +
         input_bytes + 3;
}

absl::StatusOr<size_t> Compress(std::span<const std::byte> input, const CodecOptions& options,
                                std::span<std::byte> output) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  const size_t element_bytes = KvDtypeBytes(options.dtype);
  if (input.size() % element_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("input of ", input.size(), " bytes is not a whole number of ",
                     AbslView(KvDtypeName(options.dtype)),
                     " elements; pick the right dtype, or raw for arbitrary bytes"));
  }
  if (input.size() > kvz::kMaxFrameInputBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input of ", input.size(), " bytes exceeds the 2 GiB frame limit; split it into frames"));
  }
  const size_t max_size = MaxCompressedSize(input.size(), options);
  if (output.size() < max_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("output buffer of ", output.size(),
                     " bytes is smaller than MaxCompressedSize = ", max_size));
  }
  const ChunkLayout layout{static_cast<uint8_t>(options.dtype), options.chunk_log2};
  const uint64_t elements = input.size() / element_bytes;
  const uint64_t num_chunks = kvz::NumChunks(elements, options.chunk_log2);
  const uint64_t chunk_elements = uint64_t{1} << options.chunk_log2;
  uint8_t* const out = Bytes(output);
  uint8_t* const dir = out + kvz::kHeaderBytes;
  uint8_t* const payload = dir + kvz::kDirEntryBytes * num_chunks;
  uint8_t* const out_end = out + output.size();
  const uint8_t* const in = Bytes(input);
  thread_local kvz::ChunkScratch scratch;
  size_t pos = 0;
  for (uint64_t c = 0; c < num_chunks; ++c) {
    const uint64_t first = c * chunk_elements;
    const uint32_t n = static_cast<uint32_t>(std::min(chunk_elements, elements - first));
    uint32_t check = 0;
    pos += kvz::EncodeChunk(layout, c, in + first * element_bytes, n, payload + pos,
                            static_cast<size_t>(out_end - (payload + pos)), &check, scratch);
    kvz::StoreLe32(dir + kvz::kDirEntryBytes * c, static_cast<uint32_t>(pos));
    kvz::StoreLe32(dir + kvz::kDirEntryBytes * c + 4, check);
  }
  const size_t frame_bytes = static_cast<size_t>(payload - out) + pos;
  kvz::WriteFrameHeader(layout.dtype, options.chunk_log2, elements, frame_bytes, out);
  return frame_bytes;
}

absl::StatusOr<std::vector<std::byte>> Compress(std::span<const std::byte> input,
                                                const CodecOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::vector<std::byte> frame(MaxCompressedSize(input.size(), options));
  absl::StatusOr<size_t> size = Compress(input, options, frame);
  if (!size.ok()) return size.status();
  frame.resize(*size);
  return frame;
}

absl::StatusOr<FrameHeader> ReadFrameHeader(std::span<const std::byte> frame) {
  return kvz::ParseFrameHeader(Bytes(frame), frame.size());
}

absl::Status Decompress(std::span<const std::byte> frame, std::span<std::byte> output,
                        const DecompressOptions& options) {
  absl::StatusOr<FrameHeader> h = ReadFrameHeader(frame);
  if (!h.ok()) return h.status();
  if (h->frame_bytes != frame.size()) {
    return absl::InvalidArgumentError(absl::StrCat("buffer of ", frame.size(),
                                                   " bytes holds a kvz frame of ", h->frame_bytes,
                                                   " bytes; pass exactly one frame"));
  }
  if (h->decompressed_bytes != output.size()) {
    return absl::InvalidArgumentError(absl::StrCat("output buffer of ", output.size(),
                                                   " bytes, the frame decompresses to ",
                                                   h->decompressed_bytes));
  }
  const ChunkLayout layout{static_cast<uint8_t>(h->dtype), h->chunk_log2};
  const uint8_t* const in = Bytes(frame);
  const uint8_t* const dir = in + kvz::kHeaderBytes;
  const uint8_t* const payload = dir + kvz::kDirEntryBytes * h->num_chunks;
  const uint8_t* const end = in + frame.size();
  const size_t payload_bytes = static_cast<size_t>(end - payload);
  const uint64_t chunk_elements = uint64_t{1} << h->chunk_log2;
  const size_t element_bytes = KvDtypeBytes(h->dtype);
  uint8_t* const out = Bytes(output);
  size_t start = 0;
  for (uint64_t c = 0; c < h->num_chunks; ++c) {
    const uint64_t first = c * chunk_elements;
    const uint32_t n = static_cast<uint32_t>(std::min(chunk_elements, h->element_count - first));
    const size_t chunk_end = kvz::LoadLe32(dir + kvz::kDirEntryBytes * c);
    if (chunk_end < start || chunk_end > payload_bytes || chunk_end % 4 != 0 ||
        chunk_end - start > kvz::RoundUp4(size_t{n} * element_bytes)) {
      return absl::DataLossError(absl::StrCat("kvz frame is damaged: directory entry ", c,
                                              " has an impossible end offset ", chunk_end));
    }
    const uint32_t check = kvz::LoadLe32(dir + kvz::kDirEntryBytes * c + 4);
    if (absl::Status s =
            kvz::DecodeChunk(layout, c, payload + start, chunk_end - start, end, n, check,
                             options.verify_checksums, out + first * element_bytes);
        !s.ok()) {
      return s;
    }
    start = chunk_end;
  }
  if (start != payload_bytes) {
    return absl::DataLossError("kvz frame is damaged: directory does not cover the payload");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::byte>> Decompress(std::span<const std::byte> frame,
                                                  const DecompressOptions& options) {
  absl::StatusOr<FrameHeader> h = ReadFrameHeader(frame);
  if (!h.ok()) return h.status();
  std::vector<std::byte> out(h->decompressed_bytes);
  if (absl::Status s = Decompress(frame, out, options); !s.ok()) return s;
  return out;
}

absl::Status CompressBatch(std::span<CompressJob> jobs, const CodecOptions& options, int threads) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  return ParallelFor(jobs.size(), threads, "job", [&](size_t i) -> absl::Status {
    absl::StatusOr<size_t> size = Compress(jobs[i].input, options, jobs[i].output);
    if (!size.ok()) return size.status();
    jobs[i].compressed_bytes = *size;
    return absl::OkStatus();
  });
}

absl::Status DecompressBatch(std::span<const DecompressJob> jobs, int threads,
                             const DecompressOptions& options) {
  return ParallelFor(jobs.size(), threads, "job",
                     [&](size_t i) { return Decompress(jobs[i].frame, jobs[i].output, options); });
}

}  // namespace kvtier
