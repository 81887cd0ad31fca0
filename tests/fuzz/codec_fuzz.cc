// libFuzzer target for the kvz decoder (docs/format.md), which reads frames from disk, from
// peers and from GPUs: Decompress and InspectFrame on arbitrary bytes must return an error or
// succeed, never crash, read out of bounds or write outside their output (ASan checks that).
// Properties checked on every input:
// - a frame that decodes re-encodes (same dtype and chunk size) and decodes back to the same
//   elements;
// - InspectFrame accepts every frame Decompress accepts, with matching sizes;
// - the input, read as elements of the dtype its first byte picks, compresses and decodes back
//   bit for bit (the encoder on arbitrary data: stored, constant and Huffman chunks).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "kvtier/compression/frame_info.h"
#include "kvtier/compression/kv_codec.h"

namespace {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

using kvtier::CodecOptions;
using kvtier::KvDtype;

void CheckDecoder(std::span<const std::byte> frame) {
  absl::StatusOr<std::vector<std::byte>> out = kvtier::Decompress(frame);
  absl::StatusOr<kvtier::FrameInfo> info = kvtier::InspectFrame(frame);
  if (!out.ok()) {
    FUZZ_CHECK(out.status().code() == absl::StatusCode::kDataLoss ||
               out.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(info.ok());
  FUZZ_CHECK(info->header.decompressed_bytes == out->size());
  FUZZ_CHECK(info->header.frame_bytes == frame.size());
  const CodecOptions options{.dtype = info->header.dtype, .chunk_log2 = info->header.chunk_log2};
  absl::StatusOr<std::vector<std::byte>> again = kvtier::Compress(*out, options);
  FUZZ_CHECK(again.ok());
  absl::StatusOr<std::vector<std::byte>> back = kvtier::Decompress(*again);
  FUZZ_CHECK(back.ok() && *back == *out);
}

void CheckEncoder(std::span<const std::byte> data) {
  if (data.empty()) return;
  const auto selector = static_cast<uint8_t>(data[0]);
  const CodecOptions options{.dtype = static_cast<KvDtype>(selector % 5),
                             .chunk_log2 = 10 + (selector / 5) % 7};
  std::span<const std::byte> elements = data.subspan(1);
  elements =
      elements.first(elements.size() - elements.size() % kvtier::KvDtypeBytes(options.dtype));
  absl::StatusOr<std::vector<std::byte>> frame = kvtier::Compress(elements, options);
  FUZZ_CHECK(frame.ok());
  FUZZ_CHECK(frame->size() <= kvtier::MaxCompressedSize(elements.size(), options));
  absl::StatusOr<std::vector<std::byte>> back = kvtier::Decompress(*frame);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(back->size() == elements.size() &&
             std::equal(back->begin(), back->end(), elements.begin()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  CheckDecoder(bytes);
  CheckEncoder(bytes);
  return 0;
}
