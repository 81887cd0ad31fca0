// BatchEncoder: encodes a batch of blocks in host memory into kvz frames, on the CPU or on a
// GPU. It is how kvtierd encodes the blocks it demotes to NVMe (cache_server/nvme_placement.h):
// with a GPU, the blocks cross PCIe to it and the frames come back, and the daemon's cores stay
// free. Every encoder writes the CPU codec's bytes (kv_codec.h), so which one ran never shows
// in what is stored.
//
// Thread safety: implementations serialise concurrent calls; one caller at a time is the
// intended use (the demotion thread).
#pragma once

#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier {

class BatchEncoder {
 public:
  virtual ~BatchEncoder() = default;

  // Compresses every job with `options`, exactly as CompressBatch does (kv_codec.h): each
  // output holds at least MaxCompressedSize(input) bytes; compressed_bytes is set on success.
  // Returns the first error; InvalidArgument for a bad job, naming its index.
  virtual absl::Status Compress(std::span<CompressJob> jobs, const CodecOptions& options) = 0;

  // "cpu" or "gpu", and for a GPU its name, for logs and stats.
  virtual std::string Describe() const = 0;
};

// The CPU codec on `threads` threads (the caller's included), as CompressBatch.
std::unique_ptr<BatchEncoder> NewCpuBatchEncoder(int threads);

}  // namespace kvtier
