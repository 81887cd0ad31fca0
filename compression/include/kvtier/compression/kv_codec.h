// The kvz lossless codec for KV-cache tensors on the CPU: the daemon's path (demotion to NVMe,
// TCP clients) and the reference that the CUDA codec (gpu_codec.h) matches byte for byte.
//
// A buffer of bf16/fp16/fp8 elements (or plain bytes) becomes one self-describing kvz frame
// (docs/format.md): per-chunk canonical Huffman tables for the exponent byte, sign and mantissa
// kept raw, stored fallback per chunk, per-chunk XXH64 checks of the original bytes. Bit-exact:
// NaN payloads, -0 and denormals survive. Compressing the same input with the same options
// gives the same bytes on every machine, thread count and GPU.
//
// Memory: the caller owns all buffers; the codec writes into the caller's output buffer and
// allocates only per-thread scratch (a few tens of KiB, reused).
// Thread safety: all functions are thread-safe and may run concurrently on different buffers.
// Performance: one call runs on the calling thread (see docs/benchmarks.md, "Compression", for
// per-core rates); CompressBatch/DecompressBatch spread many blocks over threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvtier {

// Element types. The numeric values are the frame header's dtype byte and never change.
enum class KvDtype : uint8_t {
  kRaw = 0,      // bytes: every byte entropy-coded (int8, quantised data, anything else)
  kBf16 = 1,     // exponent byte coded, sign + 7 mantissa bits raw
  kFp16 = 2,     // 5 exponent + 3 mantissa bits coded, sign + 7 mantissa bits raw
  kFp8E4M3 = 3,  // whole byte coded
  kFp8E5M2 = 4,  // whole byte coded
};

// "raw", "bf16", "fp16", "fp8e4m3", "fp8e5m2"; "unknown" for other values.
std::string_view KvDtypeName(KvDtype dtype);
// Inverse of KvDtypeName; InvalidArgument listing the valid names for anything else.
absl::StatusOr<KvDtype> ParseKvDtype(std::string_view name);
// Bytes per element: 2 for bf16/fp16, 1 otherwise.
size_t KvDtypeBytes(KvDtype dtype);

// What a frame is made of. Both encoders give identical bytes for identical options.
struct CodecOptions {
  // Element type of the input. Default bf16, the common KV-cache dtype.
  KvDtype dtype = KvDtype::kBf16;
  // log2 of the elements per chunk, in [10, 16]. Default 14: 16384 elements (32 KiB of bf16),
  // big enough that the 8-byte directory entry, ~20-byte table and 64-byte lane table cost
  // under 0.5%, small enough that a 1 MiB batch still gives a GPU 32 chunks to work on. Each
  // chunk has its own code table, so smaller chunks also follow changing statistics (e.g. one
  // layer's K slice) more closely.
  int chunk_log2 = 14;

  // OK, or InvalidArgument naming the bad field.
  absl::Status Validate() const;
};

// Largest frame that Compress can write for `input_bytes` bytes of input: the input plus 32
// bytes of header, 8 bytes per chunk and at most 3 bytes of padding. Allocate this much.
// REQUIRES: options.Validate().ok().
size_t MaxCompressedSize(size_t input_bytes, const CodecOptions& options);

// Compresses `input` into `output` and returns the frame's size (<= MaxCompressedSize). Errors:
// InvalidArgument if the options are invalid, input.size() is not a multiple of the element
// size or exceeds 2 GiB (split larger inputs into several frames), or output is smaller than
// MaxCompressedSize(input.size(), options). Blocks for the duration of the work (about 1 ms
// per MiB per core).
absl::StatusOr<size_t> Compress(std::span<const std::byte> input, const CodecOptions& options,
                                std::span<std::byte> output);

// Convenience form that allocates the frame.
absl::StatusOr<std::vector<std::byte>> Compress(std::span<const std::byte> input,
                                                const CodecOptions& options);

// A frame's header fields.
struct FrameHeader {
  KvDtype dtype = KvDtype::kRaw;
  int chunk_log2 = 0;
  uint64_t element_count = 0;
  uint64_t frame_bytes = 0;         // the whole frame, header included
  uint64_t decompressed_bytes = 0;  // element_count * KvDtypeBytes(dtype)
  uint64_t num_chunks = 0;
};

// Parses and checks the 32-byte header at the start of `frame` (magic, version, fields, header
// check, frame_bytes <= frame.size()). `frame` may be longer than the frame (frames are often
// concatenated). InvalidArgument if it is not a kvz frame or is shorter than 32 bytes, DataLoss
// if it looks like one but is damaged. Does not look past the header.
absl::StatusOr<FrameHeader> ReadFrameHeader(std::span<const std::byte> frame);

// Options for decoding.
struct DecompressOptions {
  // Verify every chunk's check against the decoded bytes (about 5% of decode time). Default
  // on; turn off only when the bytes have already been verified by other means.
  bool verify_checksums = true;
};

// Decodes the frame that starts `frame` (exactly frame_bytes long) into `output`, which must be
// exactly the decompressed size. InvalidArgument if `frame` is not a kvz frame or the sizes do
// not match; DataLoss for a damaged frame (structure or checksum). Never reads outside `frame`
// or writes outside `output`; on error `output` holds unspecified bytes. Blocking.
absl::Status Decompress(std::span<const std::byte> frame, std::span<std::byte> output,
                        const DecompressOptions& options = {});

// Convenience form that allocates the output.
absl::StatusOr<std::vector<std::byte>> Decompress(std::span<const std::byte> frame,
                                                  const DecompressOptions& options = {});

// Many blocks at once, one frame per block, as the daemon and the client see them.
struct CompressJob {
  std::span<const std::byte> input;
  std::span<std::byte> output;  // at least MaxCompressedSize(input.size(), options)
  size_t compressed_bytes = 0;  // set on success
};
struct DecompressJob {
  std::span<const std::byte> frame;  // exactly one frame
  std::span<std::byte> output;       // exactly its decompressed size
};

// Compresses every job with the same options, using up to `threads` threads (the caller's
// included; 1 = on the calling thread). Output bytes do not depend on `threads`. Returns the
// first error in job order, prefixed with the job index; jobs without errors are complete.
absl::Status CompressBatch(std::span<CompressJob> jobs, const CodecOptions& options,
                           int threads = 1);
// Same for decoding.
absl::Status DecompressBatch(std::span<const DecompressJob> jobs, int threads = 1,
                             const DecompressOptions& options = {});

}  // namespace kvtier
