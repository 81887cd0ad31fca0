// Internal: the raw CUDA launchers behind GpuCodec (gpu_codec.cc), kept free of Abseil so that
// nvcc compiles only the kernels' own translation units. Arguments are validated by the caller.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace kvtier::kvz::gpu {

// One frame of a batch, in device memory (uploaded by the host for each batch).
struct ItemDesc {
  const uint8_t* in = nullptr;  // encode: elements; decode: the frame
  uint8_t* out = nullptr;       // encode: the frame; decode: elements
  uint64_t in_bytes = 0;        // encode: input bytes; decode: frame bytes
  uint64_t out_bytes = 0;       // encode: capacity; decode: decompressed bytes
  uint64_t elements = 0;
  uint64_t num_chunks = 0;
  uint64_t first_unit = 0;  // index of the item's first work unit in the batch
  uint64_t reserved = 0;
};

// The write kernel encodes a chunk with this many warps, warp s taking the s-th quarter of the
// chunk's elements and thus a contiguous segment of every lane's bitstream; the plan counts each
// lane's bits per segment so that a warp knows where its segment starts.
inline constexpr int kSegments = 4;

// What the encoder's planning kernel decides for one chunk.
struct ChunkPlan {
  uint32_t body_bytes = 0;
  uint32_t check = 0;
  uint32_t offset = 0;  // of the body in the payload, set by the scan
  uint8_t kind = 0;     // 0 stored, kKindHuffman, kKindConstant
  uint8_t min_symbol = 0;
  uint8_t max_symbol = 0;
  uint8_t reserved = 0;
  uint16_t lane_words[32] = {};
  // Bits of lane l in segment s (at most 2^16 / kSegments / 32 symbols of 11 bits: fits).
  uint16_t segment_bits[kSegments][32] = {};
  // Huffman only: the canonical code of every symbol (bit-reversed, as written) | its length << 16.
  uint32_t entries[256] = {};
};

// Error codes a decode reports per item (0 = OK). The highest code seen wins.
inline constexpr int32_t kErrorDataLoss = 1;         // damaged frame or checksum mismatch
inline constexpr int32_t kErrorInvalidArgument = 2;  // not a kvz frame, or not the expected one

struct BatchView {
  const ItemDesc* items = nullptr;  // device
  uint32_t num_items = 0;
  uint64_t num_units = 0;  // encode: chunks; decode: chunks + 1 per empty item
  uint8_t dtype = 0;
  int chunk_log2 = 0;
  ChunkPlan* plans = nullptr;  // encode, three-kernel path: num_units entries (device)
  // Encode, fused path: num_units + 2 words (device), the chunks' look-back states, the counter
  // that hands out chunks and the count of finished blocks; zeroed by the caller before its
  // first batch, and cleared again by each batch's last block.
  uint64_t* lookback = nullptr;
  // Encode, fused path, when set: the word (device) that the last block of the batch before
  // this one on `lookback` sets to that batch's epoch once it has cleared the words. Each block
  // waits for `wait_epoch` there before it takes a chunk, and this batch's last block sets it to
  // `epoch`. Batches that may overlap (`programmatic`) alternate between two sets of words, so
  // a batch reuses the words of the one before the one before it.
  uint64_t* epoch_done = nullptr;
  uint64_t wait_epoch = 0;
  uint64_t epoch = 0;
  // Host only: launch with programmatic stream serialization, so that the kernel may start on
  // SMs the previous kernel on the stream (this encoder's previous batch: the caller's promise)
  // leaves idle while its last chunks finish (Hopper's programmatic dependent launch).
  bool programmatic = false;
  uint64_t* frame_sizes = nullptr;  // encode: num_items entries (device)
  int32_t* errors = nullptr;        // decode: num_items entries (device), zeroed by the caller
  // Decode: when set, the warp that finishes last copies `errors` here (the caller's pinned
  // memory, mapped), so that no copy step follows the kernel, and then zeroes `errors` and
  // `warps_done` again for the next batch; `warps_done` (device, zeroed by the caller before
  // its first batch) counts the finished warps.
  int32_t* errors_out = nullptr;
  uint32_t* warps_done = nullptr;
  // Decode: hash each quarter of a Huffman chunk for its check as soon as it is written, rather
  // than the whole chunk at its end (set by LaunchDecode, see there).
  bool hash_quarters = false;
  int sm_count = 0;  // decode: the device's SMs (GpuCodec queries them once)
};

// Chunks of 16 to 32 KiB are encoded by one fused kernel that reads each chunk once into shared
// memory; others by three kernels (plan, scan, write). Larger chunks do not fit four blocks per
// SM; with smaller ones the fused kernel's fixed cost per chunk (histogram, code, look-back)
// weighs more than the second read it saves: bf16 with 2^12-element chunks encodes 20% slower
// fused (docs/compression.md).
inline constexpr uint32_t kFusedMinChunkBytes = 16 * 1024;
inline constexpr uint32_t kFusedMaxChunkBytes = 32 * 1024;

// Whether LaunchEncode takes the fused path for chunks of 2^chunk_log2 elements of
// `element_bytes` (the caller then passes `lookback`, else `plans`).
inline bool UsesFusedEncoder(int chunk_log2, int element_bytes) {
  const uint64_t chunk_bytes = (uint64_t{1} << chunk_log2) * element_bytes;
  return chunk_bytes >= kFusedMinChunkBytes && chunk_bytes <= kFusedMaxChunkBytes;
}

// Batches of up to this many items can pass their descriptors to a kernel as its parameter
// (host_items below) rather than upload them: CUDA 12.1 allows 32 KiB of kernel parameters.
inline constexpr uint32_t kMaxParamItems = 480;  // 30 KiB of descriptors

// Queues the encoder on `stream` (fused, or plan, scan and write); returns the first error.
// With `host_items` (the fused path only, batch.num_items <= kMaxParamItems of them, in host
// memory), the descriptors go to the kernel as its parameter and batch.items is ignored.
// REQUIRES: num_items >= 1; inputs and outputs 16-byte aligned; capacities checked.
cudaError_t LaunchEncode(const BatchView& batch, cudaStream_t stream,
                         const ItemDesc* host_items = nullptr);

// The fused path of LaunchEncode (kvz_encode_fused.cu). REQUIRES: UsesFusedEncoder, as above.
cudaError_t LaunchFusedEncode(const BatchView& batch, cudaStream_t stream,
                              const ItemDesc* host_items);

// Queues the decoder on `stream`. REQUIRES: num_units >= 1; pointers 16-byte aligned.
// Ignores batch.hash_quarters: it hashes quarters for batches of at least 8 chunks per SM (of
// batch.sm_count; half the decoder's warps) of at least 2^14 elements, where spreading the check's
// read-back over the decoding hides it behind other warps (+9-10% at 64 and 256 MiB of bf16 on an
// H100), and the whole chunk at its end otherwise, where fewer loads in flight per warp would show
// (1-8 MiB batches and 2^12-element chunks decoded 7-12% slower with quarters).
// With `host_items` (batch.num_items <= kMaxParamItems of them, in host memory), the
// descriptors go to the kernel as its parameter and batch.items is ignored: no upload precedes
// the kernel on the stream.
cudaError_t LaunchDecode(const BatchView& batch, cudaStream_t stream,
                         const ItemDesc* host_items = nullptr);

}  // namespace kvtier::kvz::gpu
