// The kvz codec on a CUDA GPU: the client's path before bytes leave the GPU (compress, then
// copy fewer bytes to the host) and after they arrive (copy, then decompress). It writes the
// same bytes as the CPU codec (kv_codec.h) for the same input and options, whatever the batch
// and launch configuration, and each decodes the other's frames (docs/format.md).
//
// A batch is many independent frames (one per KV block), compressed or decompressed by one to
// three kernel launches with a block of warps per chunk. Sizes and errors come back to host
// memory. Measured on an H100 (bf16 KV-like data, 1 MiB items, docs/benchmarks.md, 2026-11-22):
// about 520 GB/s compress and 690 GB/s decompress for a 256-MiB batch alone, 435 / 630 GB/s at
// 64 MiB, and 506 / 710 GB/s for 64-MiB batches queued back to back with
// GpuBatchOptions::follows_previous_batch; but only 35 / 18 GB/s for a 1-MiB batch, where one
// chunk's latency is the whole time.
//
// Ownership: the caller owns every input and output buffer (device memory, 16-byte aligned)
// and keeps them alive until the stream has passed the work. The GpuCodec owns its device
// workspace (about 340 bytes per chunk of the largest batch so far, grown on demand) and a
// little pinned host memory.
// Thread safety: a GpuCodec is not thread-safe; use one per thread/stream. Calls on the same
// stream are ordered; calls on different streams need different GpuCodec objects.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier {

struct GpuCompressItem {
  const void* input = nullptr;  // device, 16-byte aligned
  size_t input_bytes = 0;       // a multiple of the element size, at most 2 GiB
  void* output = nullptr;       // device, 16-byte aligned
  size_t output_capacity = 0;   // >= MaxCompressedSize(input_bytes, options)
};

struct GpuDecompressItem {
  const void* frame = nullptr;  // device, 16-byte aligned
  size_t frame_bytes = 0;       // exactly the frame's size
  void* output = nullptr;       // device, 16-byte aligned
  size_t output_bytes = 0;      // exactly the frame's decompressed size
};

// How a batch is queued.
struct GpuBatchOptions {
  // The caller's promise that nothing was queued on the stream since this codec's previous
  // call of the same kind (CompressAsync, or DecompressAsync) on it. The batch's kernel may then
  // start on the SMs that the previous batch's last chunks leave idle instead of after them
  // (Hopper's programmatic dependent launch): a stream of 64-MiB batches queued back to back gains
  // the time each batch spends finishing its last chunks. Ignored where the codec cannot overlap
  // safely (another stream, a call of the other kind or a copy of sizes or errors in between, more
  // than 480 items, results in pageable memory). Breaking the promise (a kernel that writes this
  // batch's input, queued in between) lets the batch read its input before that kernel has written
  // it.
  bool follows_previous_batch = false;
};

class GpuCodec {
 public:
  // A codec for frames with `options` on the current device. InvalidArgument for bad options;
  // Unavailable when there is no usable CUDA device; other CUDA errors as CudaErrorToStatus.
  static absl::StatusOr<std::unique_ptr<GpuCodec>> Create(const CodecOptions& options);
  ~GpuCodec();
  GpuCodec(const GpuCodec&) = delete;
  GpuCodec& operator=(const GpuCodec&) = delete;

  const CodecOptions& options() const { return options_; }

  // Queues compression of every item on `stream` and returns without waiting for the GPU: it
  // blocks only to grow its workspace (to the largest batch so far), or when eight earlier
  // calls' batches are still queued unstarted. compressed_sizes[i] (host memory, items.size()
  // entries) holds item i's frame size once the stream has passed this point: pinned memory is
  // written by the kernel itself, pageable memory gets a copy (which may make the call wait).
  // InvalidArgument for a bad item (its index is in the message), before anything is queued;
  // launch errors as CudaErrorToStatus.
  absl::Status CompressAsync(std::span<const GpuCompressItem> items, uint64_t* compressed_sizes,
                             cudaStream_t stream, const GpuBatchOptions& batch = {});
  // Same, then waits for `stream`; returns the frame sizes.
  absl::StatusOr<std::vector<uint64_t>> Compress(std::span<const GpuCompressItem> items,
                                                 cudaStream_t stream);

  // Queues decompression of every item on `stream`. errors[i] (host memory, items.size()
  // entries) holds 0 or an error code for item i once the stream has passed this point (pinned
  // memory is written by the kernel, pageable memory gets a copy); GpuDecodeErrorToStatus
  // explains it. Argument errors as for CompressAsync.
  absl::Status DecompressAsync(std::span<const GpuDecompressItem> items, int32_t* errors,
                               cudaStream_t stream, const GpuBatchOptions& batch = {});
  // Same, then waits: OK, or the first failing item's error (DataLoss for a damaged frame,
  // InvalidArgument for a frame that is not a kvz frame with this codec's options and sizes).
  absl::Status Decompress(std::span<const GpuDecompressItem> items, cudaStream_t stream);

 private:
  struct Workspace;
  GpuCodec(const CodecOptions& options, std::unique_ptr<Workspace> workspace);

  CodecOptions options_;
  std::unique_ptr<Workspace> ws_;
};

// OK for 0; DataLoss or InvalidArgument naming item `index` for the codes DecompressAsync
// reports.
absl::Status GpuDecodeErrorToStatus(int32_t code, size_t index);

}  // namespace kvtier
