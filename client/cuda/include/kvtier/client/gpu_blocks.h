// kvtier::client::GpuBlockClient: puts KV blocks straight from GPU memory and gets them back
// into GPU memory, compressing on the GPU where the namespace asks for it.
//
// What it is: a thin layer over a Client (client.h) that moves block bytes between device
// memory and kvtierd's DRAM and runs the kvz codec on the GPU (gpu_codec.h):
//   PutFromDevice, COMPRESSION_KVZ namespace: compress every block on the GPU, then send each
//     frame (or the block itself where the frame does not shrink it) with its codec and raw
//     length. The daemon stores the frames as sent.
//   PutFromDevice, other namespaces: send the blocks as they are.
//   GetToDevice: fetch the blocks undecoded and copy each to the device: a stored block
//     straight into its destination, a kvz frame into device scratch, from where one decode
//     batch writes the destinations.
// How the bytes move:
//   Zero copy (a Unix-socket Client with the shared arena, and zero_copy on, the default): the
//     GPU's copy engines write and read the daemon's arena itself (Client::ReservePut and
//     CommitPut, StartGet and FinishGet), and every byte crosses PCIe once, with nothing copied
//     by the CPU. This process registers the arena with cudaHostRegister a 64 MiB granule at a
//     time, on first use, which pins that granule's pages (the daemon's DRAM tier, which it
//     fills anyway). Pieces under 128 KiB (kvz frames of small blocks) are copied by a kernel
//     whose threads reach the mapped memory (kernel_copies), since the copy engines pay
//     microseconds per transfer. Where registering fails the copies still run, from pageable
//     memory and slower.
//   Staged (TCP, or zero_copy off): through pinned staging buffers here, which the CPU copies
//     once more (Client::Put, Get).
// Blocks move in stages of about GpuBlockClientOptions::stage_bytes (and at most the daemon's
// max_keys_per_request blocks), so that the GPU work of one stage (compression, PCIe copies,
// decoding) overlaps the host work of the next or the previous one: the round trips that
// reserve and commit or quote and release the slots (zero copy), or the Put or Get and its
// memcpy (staged). Frames are identical to the CPU codec's, so blocks put here can be read
// with Client::Get (decoded on the CPU) and blocks put with Client::Put (cpu_compress or not)
// can be read here.
//
// Ownership: the Client is borrowed and must outlive the GpuBlockClient. The GpuBlockClient owns
// its two CUDA streams, its GpuCodec objects, a device scratch buffer for frames and pinned host
// staging buffers (staged path only); all grow to the largest batch seen so far and are reused,
// never shrunk. With zero copy it also holds a share of the arena's CUDA registration, which
// every GpuBlockClient of the process on the same Client shares; the last one unregisters.
// Callers own the device blocks and buffers; they are only read (puts) or written (gets) during
// the call.
//
// Thread safety: not thread-safe; use one GpuBlockClient per thread (it works on its own
// streams). Several may share one Client, whose calls are serialized internally.
//
// Device: the one current when Create ran. Every call switches the calling thread to it for
// the call's duration and restores the previous device afterwards; device pointers must belong
// to it.
//
// Blocking and ordering: both calls block until all their work is done. The GpuBlockClient's
// streams are non-blocking ones, not ordered with the caller's nor the legacy default stream:
// REQUIRES that the work writing the blocks of a PutFromDevice has finished (synchronize its stream
// or event first). When GetToDevice returns, the bytes are in device memory and visible to work on
// any stream.
//
// Errors: the call's status is an error only when the batch as a whole failed:
//   InvalidArgument  bad input (mismatched spans, an empty or oversized block, a null
//                    pointer, codecs in PutOptions), with a message saying what to fix;
//   Unavailable      no CUDA device (from Create), or the daemon is unreachable (Client);
//   ResourceExhausted the device or pinned memory for a batch cannot be allocated: use
//                    smaller batches;
//   other            CUDA errors (CudaErrorToStatus) and the Client's own errors.
// Per-block outcomes are reported per block, as Client::Put and Client::Get do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/client/client.h"
#include "kvtier/common/block_key.h"

namespace kvtier::client {

// A block to put: `bytes` bytes at `device_ptr` in device memory.
struct DeviceBlock {
  const void* device_ptr = nullptr;
  size_t bytes = 0;
};

// Where a got block goes: `bytes` bytes of device memory at `device_ptr`.
struct DeviceBuffer {
  void* device_ptr = nullptr;
  size_t bytes = 0;
};

// Options of GpuBlockClient::Create. Fixed for the life of the GpuBlockClient.
struct GpuBlockClientOptions {
  // Blocks move in stages of about this many bytes (at least one block each); smaller stages
  // overlap more but cost more round trips and smaller GPU batches. Default 16 MiB; >= 1.
  size_t stage_bytes = size_t{16} << 20;
  // log2 of the elements per kvz chunk of the frames PutFromDevice writes (kv_codec.h), in
  // [10, 16]. Default 14, the CPU codec's default. Gets decode whatever chunk size a frame's
  // header names.
  int chunk_log2 = 14;
  // Copy straight between device memory and the daemon's shared arena when the Client has it
  // (see above). Default true; false always stages in pinned host memory (for comparison).
  bool zero_copy = true;
  // Copy pieces under 128 KiB (kvz frames of small blocks, in scattered slots) with a kernel
  // whose threads read or write the mapped host memory, instead of one copy-engine transfer
  // each, which costs microseconds. Default true; used where the device can reach registered
  // host memory at its host address (cudaDevAttrCanUseHostPointerForRegisteredMem).
  bool kernel_copies = true;

  // InvalidArgument naming the offending field.
  absl::Status Validate() const;
};

// Counts of what the calls moved, since Create. Raw bytes are the blocks' original lengths;
// sent/received bytes what crossed PCIe and the socket or arena (frames where encoded).
// Invariants: put_kvz_blocks <= put_blocks, put_sent_bytes <= put_raw_bytes; the same for gets.
struct GpuTransferCounters {
  uint64_t put_blocks = 0;      // blocks handed to Client::Put (whatever their outcome)
  uint64_t put_kvz_blocks = 0;  // of those, sent as kvz frames
  uint64_t put_raw_bytes = 0;
  uint64_t put_sent_bytes = 0;
  uint64_t get_blocks = 0;      // blocks written to their device buffer
  uint64_t get_kvz_blocks = 0;  // of those, decoded on the GPU
  uint64_t get_raw_bytes = 0;
  uint64_t get_received_bytes = 0;
  // Blocks of puts and gets copied straight from or to the arena (zero_copy), and arena
  // granules this process registered or failed to register with CUDA.
  uint64_t zero_copy_blocks = 0;
  uint64_t arena_granules_registered = 0;
  uint64_t arena_granules_failed = 0;
};

class GpuBlockClient {
 public:
  // A GpuBlockClient for `client` (not owned, not null) on the current CUDA device.
  // Unavailable when there is no CUDA device; InvalidArgument for a null client or bad options.
  static absl::StatusOr<std::unique_ptr<GpuBlockClient>> Create(
      Client* client, const GpuBlockClientOptions& options = {});
  // Waits for the streams, then frees everything it owns.
  ~GpuBlockClient();

  GpuBlockClient(const GpuBlockClient&) = delete;
  GpuBlockClient& operator=(const GpuBlockClient&) = delete;

  // Stores blocks[i] (device memory) under keys[i] in `handle`'s namespace. REQUIRES
  // keys.size() == blocks.size(), each block non-null and 1 to handle.block_bytes bytes long,
  // and options.codecs / raw_lengths empty (this call encodes; other PutOptions apply). In a
  // COMPRESSION_KVZ namespace (dtype from handle.descriptor.dtype) a block goes as a kvz frame
  // where the frame is smaller; blocks that are not 16-byte aligned or not a whole number of
  // elements go as they are. Returns one status per block as Client::Put does (IsStored).
  // Blocks until done.
  absl::StatusOr<std::vector<absl::Status>> PutFromDevice(const NamespaceHandle& handle,
                                                          std::span<const BlockKey> keys,
                                                          std::span<const DeviceBlock> blocks,
                                                          const PutOptions& options = {});

  // Fetches keys[i] into out[i] (device memory). REQUIRES keys.size() == out.size() and
  // non-null buffers; each out[i] should be handle.block_bytes long. One GetResult per key, as
  // Client::Get with decoding on gives them: OK with `length` decoded bytes at the front of
  // out[i] (codec 0), NotFound for a miss, Unavailable for a copy voided by eviction,
  // InvalidArgument when out[i] is too small for the block or, for a kvz block, not 16-byte
  // aligned (the GPU decoder needs that; cudaMalloc memory is), DataLoss when a frame fails its
  // checks on the GPU (the buffer holds unspecified bytes; never wrong bytes reported OK).
  // Blocks until the bytes are in device memory.
  absl::StatusOr<std::vector<GetResult>> GetToDevice(const NamespaceHandle& handle,
                                                     std::span<const BlockKey> keys,
                                                     std::span<const DeviceBuffer> out);

  const GpuTransferCounters& counters() const { return counters_; }
  // Whether calls copy straight to and from the daemon's arena (zero_copy and a Client with
  // the shared arena).
  bool zero_copy() const;
  // The CUDA device this GpuBlockClient works on.
  int device() const { return device_; }

 private:
  struct State;
  GpuBlockClient(Client* client, const GpuBlockClientOptions& options, int device,
                 std::unique_ptr<State> state);

  Client* const client_;
  const GpuBlockClientOptions options_;
  const int device_;
  std::unique_ptr<State> state_;
  GpuTransferCounters counters_;
};

}  // namespace kvtier::client
