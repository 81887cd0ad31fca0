// GpuCodec: argument checks, workspace, descriptor upload and the launches of kvz_kernels.h.
#include "kvtier/compression/gpu_codec.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "format.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "kvtier/kernels/cuda_buffers.h"
#include "kvtier/kernels/cuda_status.h"
#include "kvz_kernels.h"

namespace kvtier {
namespace {

using cuda_buffers::DeviceBuffer;
using kvz::gpu::BatchView;
using kvz::gpu::ChunkPlan;
using kvz::gpu::ItemDesc;

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

uint64_t NumChunks(uint64_t elements, int chunk_log2) {
  return (elements + (uint64_t{1} << chunk_log2) - 1) >> chunk_log2;
}

// The descriptor of one frame whose work units start at `first_unit`, built whole so that the
// pinned staging slot is written once.
ItemDesc Describe(const void* in, uint64_t in_bytes, void* out, uint64_t out_bytes,
                  uint64_t elements, int chunk_log2, uint64_t first_unit) {
  return ItemDesc{.in = static_cast<const uint8_t*>(in),
                  .out = static_cast<uint8_t*>(out),
                  .in_bytes = in_bytes,
                  .out_bytes = out_bytes,
                  .elements = elements,
                  .num_chunks = NumChunks(elements, chunk_log2),
                  .first_unit = first_unit};
}

absl::Status CheckUnits(uint64_t units) {
  if (units <= INT32_MAX) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("a batch has at most 2^31 chunks, this one ", units, "; split it"));
}

// A batch's stream steps are its upload, its kernels and, where needed, a copy of results back.
// The zeros its kernels start from (the fused encoder's look-back states and chunk counter, the
// decoder's error codes and count of finished warps) ride along in the descriptors' upload
// rather than in a memset of their own, up to this size (beyond it a host memset of the staging
// would cost more than the step); and frame sizes and error codes go straight into the caller's
// pinned memory, with no copy back. Each step the stream waits for cost a few µs on the GPU:
// together 20-30 µs a batch, a fifth of a 64 MiB encode (docs/benchmarks.md, "Kernel time
// against batch time").
constexpr size_t kMaxUploadedZeros = size_t{256} << 10;

// Where the zeros start in the upload: after the descriptors, on a 256-byte boundary.
size_t ZerosOffset(size_t items) { return (items * sizeof(ItemDesc) + 255) / 256 * 256; }

// The device address of `p` when it is pinned host memory the device can write, else null.
void* MappedDevicePointer(void* p) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    cudaGetLastError();  // clears the error: pageable memory is an answer, not a failure
    return nullptr;
  }
  return attributes.type == cudaMemoryTypeHost ? attributes.devicePointer : nullptr;
}

// Batches whose descriptors can wait in pinned staging for their upload at once. A caller
// that queues several batches in a row (GpuBlockClient queues every stage's compression
// before it copies the first) must not wait for the GPU between them: with one staging
// buffer, queuing batch k waited until batch k-1's upload had run, i.e. until batch k-2's
// kernels had finished (docs/benchmarks.md, "Queuing the encoder").
constexpr size_t kStagingSlots = 8;

// decode_state: two sets (as encode_state's, see there) of kMaxParamItems error codes and the
// count of finished warps, then each set's epoch.
constexpr size_t kDecodeStateCodesBytes = kvz::gpu::kMaxParamItems * sizeof(int32_t);
constexpr size_t kDecodeSetBytes = kDecodeStateCodesBytes + sizeof(uint64_t);
constexpr size_t kDecodeStateBytes = 2 * kDecodeSetBytes + 2 * sizeof(uint64_t);

// Whose turn it is among one kind of batch (compressions, or decompressions) whose per-batch
// device words (look-back states, error codes, counters) come in two sets: batches take the
// sets in turns, and each waits on the device for the epoch its set's last user, the batch two
// before it, publishes once it has cleared the set (kvz_device.cuh, WaitForEpoch). Also whether
// the next batch may overlap the last one (GpuBatchOptions::follows_previous_batch).
struct BatchTurns {
  uint64_t epoch = 2;             // the next batch's; its set's last user is epoch - 2
  cudaStream_t stream = nullptr;  // where the last batch of this kind was queued
  bool kernel_last = false;       // and nothing of the codec's was queued after its kernel

  uint64_t set() const { return epoch % 2; }
  // The epochs the two sets' words start from, as their last users would have left them.
  void StartEpochs(uint64_t epochs[2]) const {
    epochs[set()] = epoch - 2;
    epochs[1 - set()] = epoch - 1;
  }
  // Points the batch at its set's epoch word, `epoch_words` being the two sets' words.
  void Assign(std::byte* epoch_words, BatchView* b) const {
    b->epoch_done = reinterpret_cast<uint64_t*>(epoch_words) + set();
    b->wait_epoch = epoch - 2;
    b->epoch = epoch;
  }
  // Whether a batch asked to follow the last may overlap it: only where the stream's last step
  // is known to be that batch's kernel.
  bool MayFollow(const GpuBatchOptions& options, cudaStream_t s) const {
    return options.follows_previous_batch && kernel_last && stream == s;
  }
  // The batch's kernel is queued on `s`; `last` when nothing is queued after it.
  void Queued(cudaStream_t s, bool last) {
    ++epoch;  // only once the batch is queued: its set's next user waits for it
    stream = s;
    kernel_last = last;
  }
};

}  // namespace

struct GpuCodec::Workspace {
  // The uploaded descriptors, then (at ZerosOffset) the batch's zeroed words: the fused
  // encoder's look-back states and chunk counter, or the decoder's error codes.
  DeviceBuffer items;
  DeviceBuffer plans;    // the three-kernel encoder's chunk plans
  DeviceBuffer results;  // frame sizes, where the caller's memory is not pinned
  // The decoder's error codes and count of finished warps for batches whose descriptors go as
  // the kernel's parameter, in two sets as encode_state: zeroed once at Create, and again by
  // each batch's last warp.
  DeviceBuffer decode_state;
  BatchTurns decode_turns;
  // The same for the fused encoder, in two sets that batches use in turns: each set's look-back
  // states, chunk counter and count of finished blocks (`encode_state_bytes`, zeroed when the
  // buffer grows and by each batch's last block), then per set the epoch of the last batch
  // done with it. Two sets let a batch start while the one before it finishes
  // (GpuBatchOptions::follows_previous_batch); a batch waits on the device until the batch
  // before the one before it has cleared its set.
  DeviceBuffer encode_state;
  size_t encode_state_bytes = 0;  // per set
  BatchTurns encode_turns;
  std::vector<ItemDesc> param_items;  // descriptors passed as a kernel parameter, on the host
  // Pinned staging for the item descriptors, used round robin. A slot's `uploaded` is recorded
  // after its upload, so that a later call does not overwrite it while the copy may still read
  // it; the device buffer `items` needs no such care, since calls on one stream are ordered.
  struct StagingSlot {
    ItemDesc* descs = nullptr;
    size_t capacity_bytes = 0;
    cudaEvent_t uploaded = nullptr;
  };
  std::array<StagingSlot, kStagingSlots> slots;
  size_t next_slot = 0;  // the slot the next ReserveStaging hands out
  int sm_count = 0;      // of the device current at Create
  // Pinned results of the synchronous forms.
  void* host_results = nullptr;
  size_t host_results_bytes = 0;

  ~Workspace() {
    cudaFreeHost(host_results);
    for (StagingSlot& slot : slots) {
      cudaFreeHost(slot.descs);
      if (slot.uploaded != nullptr) cudaEventDestroy(slot.uploaded);
    }
  }

  absl::Status CreateEvents() {
    for (StagingSlot& slot : slots) {
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&slot.uploaded, cudaEventDisableTiming));
    }
    return absl::OkStatus();
  }

  // Room for `n` descriptors in the next slot, once that slot's previous upload has run (a
  // wait only when kStagingSlots batches are still queued ahead of it), followed by
  // `zero_bytes` of zeros (at most kMaxUploadedZeros). Upload sends both.
  absl::StatusOr<ItemDesc*> ReserveStaging(size_t n, size_t zero_bytes) {
    StagingSlot& slot = slots[next_slot];
    KVTIER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(slot.uploaded));
    const size_t bytes = ZerosOffset(n) + zero_bytes;
    if (bytes > slot.capacity_bytes) {
      const size_t grown = std::max(bytes, slot.capacity_bytes * 3 / 2);
      KVTIER_CUDA_RETURN_IF_ERROR(cudaFreeHost(slot.descs));
      slot.descs = nullptr;
      slot.capacity_bytes = 0;
      void* p = nullptr;
      KVTIER_CUDA_RETURN_IF_ERROR(cudaMallocHost(&p, grown));
      slot.descs = static_cast<ItemDesc*>(p);
      slot.capacity_bytes = grown;
    }
    // Earlier, larger batches left descriptors where this one's zeros go.
    std::memset(reinterpret_cast<std::byte*>(slot.descs) + ZerosOffset(n), 0, zero_bytes);
    return slot.descs;
  }

  absl::Status ReserveHostResults(size_t bytes) {
    if (bytes <= host_results_bytes) return absl::OkStatus();
    KVTIER_CUDA_RETURN_IF_ERROR(cudaFreeHost(host_results));
    host_results = nullptr;
    host_results_bytes = 0;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMallocHost(&host_results, bytes));
    host_results_bytes = bytes;
    return absl::OkStatus();
  }

  // Where a batch's `n` descriptors are written: host memory passed as the kernel's parameter
  // (`as_param`), or the next staging slot with `zero_bytes` of zeros after them.
  absl::StatusOr<ItemDesc*> Descriptors(size_t n, bool as_param, size_t zero_bytes) {
    if (!as_param) return ReserveStaging(n, zero_bytes);
    param_items.resize(n);
    return param_items.data();
  }

  // The next batch's set of encode_state (at least `bytes`, zero once the batch waited for
  // its epoch) in b->lookback, and its epochs (BatchTurns::Assign). Sets *queued when it had
  // to queue a step of its own on `stream` (the buffer grew).
  absl::Status EncodeState(size_t bytes, cudaStream_t stream, BatchView* b, bool* queued) {
    *queued = false;
    if (bytes > encode_state_bytes) {
      const size_t set_bytes = (bytes + 15) / 16 * 16;
      KVTIER_RETURN_IF_ERROR(encode_state.Reserve(2 * set_bytes + 16));  // waits for the device
      KVTIER_CUDA_RETURN_IF_ERROR(
          cudaMemsetAsync(encode_state.as<void>(), 0, 2 * set_bytes, stream));
      uint64_t epochs[2];
      encode_turns.StartEpochs(epochs);
      KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(encode_state.as<std::byte>() + 2 * set_bytes,
                                                  epochs, sizeof(epochs), cudaMemcpyHostToDevice,
                                                  stream));
      KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // `epochs` is on the stack
      encode_state_bytes = set_bytes;
      *queued = true;
    }
    std::byte* const base = encode_state.as<std::byte>();
    b->lookback = reinterpret_cast<uint64_t*>(base + encode_turns.set() * encode_state_bytes);
    encode_turns.Assign(base + 2 * encode_state_bytes, b);
    return absl::OkStatus();
  }

  // Copies the `n` descriptors and `zero_bytes` of zeros staged by the last ReserveStaging to
  // the device on `stream`, then clears `memset_bytes` more after them on the device (zeros too
  // many to stage). Returns the device address of the zeros.
  absl::StatusOr<std::byte*> Upload(size_t n, size_t zero_bytes, size_t memset_bytes,
                                    cudaStream_t stream) {
    StagingSlot& slot = slots[next_slot];
    const size_t zeros_at = ZerosOffset(n);
    KVTIER_RETURN_IF_ERROR(items.Reserve(zeros_at + zero_bytes + memset_bytes));
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(items.as<void>(), slot.descs, zeros_at + zero_bytes,
                                                cudaMemcpyHostToDevice, stream));
    KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(slot.uploaded, stream));
    next_slot = (next_slot + 1) % kStagingSlots;
    std::byte* const zeros = items.as<std::byte>() + zeros_at;
    if (memset_bytes > 0) {
      KVTIER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(zeros + zero_bytes, 0, memset_bytes, stream));
    }
    return zeros;
  }
};

GpuCodec::GpuCodec(const CodecOptions& options, std::unique_ptr<Workspace> workspace)
    : options_(options), ws_(std::move(workspace)) {}

GpuCodec::~GpuCodec() = default;

absl::StatusOr<std::unique_ptr<GpuCodec>> GpuCodec::Create(const CodecOptions& options) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  KVTIER_ASSIGN_OR_RETURN(const int devices, CudaDeviceCount());
  if (devices == 0) return absl::UnavailableError("no CUDA device for the GPU codec");
  auto ws = std::make_unique<Workspace>();
  KVTIER_RETURN_IF_ERROR(ws->CreateEvents());
  int device = 0;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  KVTIER_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&ws->sm_count, cudaDevAttrMultiProcessorCount, device));
  KVTIER_RETURN_IF_ERROR(ws->decode_state.Reserve(kDecodeStateBytes));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaMemset(ws->decode_state.as<void>(), 0, kDecodeStateBytes));
  uint64_t epochs[2];
  ws->decode_turns.StartEpochs(epochs);
  KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpy(ws->decode_state.as<std::byte>() + 2 * kDecodeSetBytes,
                                         epochs, sizeof(epochs), cudaMemcpyHostToDevice));
  return std::unique_ptr<GpuCodec>(new GpuCodec(options, std::move(ws)));
}

absl::Status GpuCodec::CompressAsync(std::span<const GpuCompressItem> items,
                                     uint64_t* compressed_sizes, cudaStream_t stream,
                                     const GpuBatchOptions& batch_options) {
  if (items.empty()) return absl::OkStatus();
  if (compressed_sizes == nullptr) {
    return absl::InvalidArgumentError("compressed_sizes must point to items.size() entries");
  }
  const size_t element_bytes = KvDtypeBytes(options_.dtype);
  const bool fused =
      kvz::gpu::UsesFusedEncoder(options_.chunk_log2, static_cast<int>(element_bytes));
  // The fused encoder's look-back states, chunk counter and count of finished blocks start at
  // zero: a word per chunk and two more. A fused batch of up to kMaxParamItems items passes its
  // descriptors as the kernel's parameter and keeps those words in encode_state, which its last
  // block leaves zeroed: the kernel is then its only step on the stream (with pinned sizes).
  // Otherwise the zeros are staged with the uploaded descriptors up to kMaxUploadedZeros. The
  // staging is sized before the descriptors are written, so the chunks are counted here from
  // the items' sizes (the descriptors below count the same; a batch with a bad item is refused
  // before its upload).
  uint64_t chunks = 0;
  for (const GpuCompressItem& item : items) {
    chunks += NumChunks(item.input_bytes / element_bytes, options_.chunk_log2);
  }
  const bool as_param = fused && items.size() <= kvz::gpu::kMaxParamItems;
  const size_t zero_words = fused ? (chunks + 2) * sizeof(uint64_t) : 0;
  const size_t staged_zeros = !as_param && zero_words <= kMaxUploadedZeros ? zero_words : 0;
  KVTIER_ASSIGN_OR_RETURN(ItemDesc* const staging,
                          ws_->Descriptors(items.size(), as_param, staged_zeros));
  uint64_t units = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const GpuCompressItem& item = items[i];
    if (item.input_bytes % element_bytes != 0 || item.input_bytes > kvz::kMaxFrameInputBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("item ", i, ": input_bytes ", item.input_bytes, " is not a whole number of ",
                       AbslView(KvDtypeName(options_.dtype)), " elements up to 2 GiB"));
    }
    if (item.output_capacity < MaxCompressedSize(item.input_bytes, options_)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "item ", i, ": output_capacity ", item.output_capacity,
          " is below MaxCompressedSize = ", MaxCompressedSize(item.input_bytes, options_)));
    }
    if ((item.input_bytes > 0 && (item.input == nullptr || !Aligned16(item.input))) ||
        item.output == nullptr || !Aligned16(item.output)) {
      return absl::InvalidArgumentError(
          absl::StrCat("item ", i, ": input and output must be 16-byte aligned device pointers"));
    }
    staging[i] = Describe(item.input, item.input_bytes, item.output, item.output_capacity,
                          item.input_bytes / element_bytes, options_.chunk_log2, units);
    units += staging[i].num_chunks;
  }
  KVTIER_RETURN_IF_ERROR(CheckUnits(units));
  BatchView b;
  bool queued_steps = !as_param;  // the upload precedes the kernel
  if (as_param) {
    KVTIER_RETURN_IF_ERROR(ws_->EncodeState(zero_words, stream, &b, &queued_steps));
  } else {
    KVTIER_ASSIGN_OR_RETURN(std::byte * zeros, ws_->Upload(items.size(), staged_zeros,
                                                           zero_words - staged_zeros, stream));
    b.lookback = reinterpret_cast<uint64_t*>(zeros);
  }
  if (!fused) {
    KVTIER_RETURN_IF_ERROR(ws_->plans.Reserve(std::max<uint64_t>(units, 1) * sizeof(ChunkPlan)));
  }
  auto* const mapped_sizes = static_cast<uint64_t*>(MappedDevicePointer(compressed_sizes));
  if (mapped_sizes == nullptr) {
    KVTIER_RETURN_IF_ERROR(ws_->results.Reserve(items.size() * sizeof(uint64_t)));
  }
  b.items = ws_->items.as<ItemDesc>();
  b.num_items = static_cast<uint32_t>(items.size());
  b.num_units = units;
  b.dtype = static_cast<uint8_t>(options_.dtype);
  b.chunk_log2 = options_.chunk_log2;
  b.plans = ws_->plans.as<ChunkPlan>();
  b.frame_sizes = mapped_sizes != nullptr ? mapped_sizes : ws_->results.as<uint64_t>();
  b.programmatic = as_param && !queued_steps && ws_->encode_turns.MayFollow(batch_options, stream);
  ws_->encode_turns.kernel_last = false;
  ws_->decode_turns.kernel_last = false;  // a decompression after this one follows no other
  KVTIER_CUDA_RETURN_IF_ERROR(
      kvz::gpu::LaunchEncode(b, stream, as_param ? ws_->param_items.data() : nullptr));
  if (as_param) ws_->encode_turns.Queued(stream, /*last=*/mapped_sizes != nullptr);
  if (mapped_sizes == nullptr) {
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(compressed_sizes, b.frame_sizes,
                                                items.size() * sizeof(uint64_t),
                                                cudaMemcpyDeviceToHost, stream));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> GpuCodec::Compress(std::span<const GpuCompressItem> items,
                                                         cudaStream_t stream) {
  KVTIER_RETURN_IF_ERROR(ws_->ReserveHostResults(items.size() * sizeof(uint64_t)));
  auto* sizes = static_cast<uint64_t*>(ws_->host_results);
  KVTIER_RETURN_IF_ERROR(CompressAsync(items, sizes, stream));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return std::vector<uint64_t>(sizes, sizes + items.size());
}

absl::Status GpuCodec::DecompressAsync(std::span<const GpuDecompressItem> items, int32_t* errors,
                                       cudaStream_t stream, const GpuBatchOptions& batch) {
  if (items.empty()) return absl::OkStatus();
  ws_->encode_turns.kernel_last = false;  // a compression after this one follows no other
  if (errors == nullptr) {
    return absl::InvalidArgumentError("errors must point to items.size() entries");
  }
  const size_t element_bytes = KvDtypeBytes(options_.dtype);
  int32_t* const errors_out = static_cast<int32_t*>(MappedDevicePointer(errors));
  // A batch of up to kMaxParamItems items whose codes go to pinned memory passes its
  // descriptors as the kernel's parameter, and its codes and count of finished warps live in
  // decode_state, which the kernel's last warp leaves zeroed: the kernel is the batch's only
  // step on the stream. Otherwise the descriptors are uploaded, and the codes and the count
  // start at zero staged with them up to kMaxUploadedZeros.
  const bool as_param = items.size() <= kvz::gpu::kMaxParamItems && errors_out != nullptr;
  const size_t codes_bytes = (items.size() * sizeof(int32_t) + 7) / 8 * 8;
  const size_t error_bytes = codes_bytes + sizeof(uint64_t);
  const size_t staged_zeros = !as_param && error_bytes <= kMaxUploadedZeros ? error_bytes : 0;
  KVTIER_ASSIGN_OR_RETURN(ItemDesc* const staging,
                          ws_->Descriptors(items.size(), as_param, staged_zeros));
  uint64_t units = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const GpuDecompressItem& item = items[i];
    if (item.output_bytes % element_bytes != 0 || item.output_bytes > kvz::kMaxFrameInputBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "item ", i, ": output_bytes ", item.output_bytes, " is not a whole number of ",
          AbslView(KvDtypeName(options_.dtype)), " elements up to 2 GiB"));
    }
    if (item.frame == nullptr || !Aligned16(item.frame) ||
        (item.output_bytes > 0 && (item.output == nullptr || !Aligned16(item.output)))) {
      return absl::InvalidArgumentError(
          absl::StrCat("item ", i, ": frame and output must be 16-byte aligned device pointers"));
    }
    staging[i] = Describe(item.frame, item.frame_bytes, item.output, item.output_bytes,
                          item.output_bytes / element_bytes, options_.chunk_log2, units);
    // An empty frame still has its header checked.
    units += std::max<uint64_t>(staging[i].num_chunks, 1);
  }
  KVTIER_RETURN_IF_ERROR(CheckUnits(units));
  BatchView b;
  b.num_items = static_cast<uint32_t>(items.size());
  b.num_units = units;
  b.dtype = static_cast<uint8_t>(options_.dtype);
  b.chunk_log2 = options_.chunk_log2;
  b.errors_out = errors_out;
  b.sm_count = ws_->sm_count;
  BatchTurns& turns = ws_->decode_turns;
  b.programmatic = as_param && turns.MayFollow(batch, stream);
  turns.kernel_last = false;
  if (as_param) {
    std::byte* const base = ws_->decode_state.as<std::byte>();
    std::byte* const words = base + turns.set() * kDecodeSetBytes;
    b.errors = reinterpret_cast<int32_t*>(words);
    b.warps_done = reinterpret_cast<uint32_t*>(words + kDecodeStateCodesBytes);
    turns.Assign(base + 2 * kDecodeSetBytes, &b);
    KVTIER_CUDA_RETURN_IF_ERROR(kvz::gpu::LaunchDecode(b, stream, staging));
    turns.Queued(stream, /*last=*/true);
    return absl::OkStatus();
  }
  KVTIER_ASSIGN_OR_RETURN(std::byte* const zeros, ws_->Upload(items.size(), staged_zeros,
                                                              error_bytes - staged_zeros, stream));
  b.items = ws_->items.as<ItemDesc>();
  b.errors = reinterpret_cast<int32_t*>(zeros);
  b.warps_done = reinterpret_cast<uint32_t*>(zeros + codes_bytes);
  KVTIER_CUDA_RETURN_IF_ERROR(kvz::gpu::LaunchDecode(b, stream));
  if (b.errors_out == nullptr) {
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(errors, b.errors, items.size() * sizeof(int32_t),
                                                cudaMemcpyDeviceToHost, stream));
  }
  return absl::OkStatus();
}

absl::Status GpuCodec::Decompress(std::span<const GpuDecompressItem> items, cudaStream_t stream) {
  KVTIER_RETURN_IF_ERROR(ws_->ReserveHostResults(items.size() * sizeof(int32_t)));
  auto* errors = static_cast<int32_t*>(ws_->host_results);
  KVTIER_RETURN_IF_ERROR(DecompressAsync(items, errors, stream));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  for (size_t i = 0; i < items.size(); ++i) {
    KVTIER_RETURN_IF_ERROR(GpuDecodeErrorToStatus(errors[i], i));
  }
  return absl::OkStatus();
}

absl::Status GpuDecodeErrorToStatus(int32_t code, size_t index) {
  switch (code) {
    case 0:
      return absl::OkStatus();
    case kvz::gpu::kErrorDataLoss:
      return absl::DataLossError(
          absl::StrCat("item ", index, ": kvz frame is damaged (structure or checksum)"));
    case kvz::gpu::kErrorInvalidArgument:
      return absl::InvalidArgumentError(
          absl::StrCat("item ", index,
                       ": not a kvz frame with this codec's dtype and chunk size, or its sizes "
                       "differ from frame_bytes/output_bytes"));
    default:
      return absl::InternalError(absl::StrCat("item ", index, ": unknown GPU error code ", code));
  }
}

}  // namespace kvtier
