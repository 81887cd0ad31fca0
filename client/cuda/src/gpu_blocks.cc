// GpuBlockClient: staging buffers, the stage pipeline and the codec batches behind
// gpu_blocks.h.
#include "kvtier/client/gpu_blocks.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <functional>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "arena_copies.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/compression/codec.h"
#include "kvtier/compression/gpu_codec.h"
#include "kvtier/compression/kv_codec.h"
#include "kvtier/kernels/cuda_buffers.h"
#include "kvtier/kernels/cuda_status.h"

namespace kvtier::client {
namespace {

// Host staging slots start on cache lines. Device frames start on 256 bytes: the codec needs
// 16, and whole DMA bursts keep the frame copies fast.
constexpr size_t kHostAlign = 64;
constexpr size_t kDeviceAlign = 256;
constexpr size_t kNoItem = ~size_t{0};
constexpr uint8_t kStored = static_cast<uint8_t>(CodecId::kStored);
constexpr uint8_t kKvz = static_cast<uint8_t>(CodecId::kKvz);

size_t RoundUp(size_t x, size_t to) { return (x + to - 1) / to * to; }
bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Makes `device` current on the calling thread for a scope, then restores the previous one.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    status_ = CudaErrorToStatus(cudaGetDevice(&previous_), "cudaGetDevice");
    if (status_.ok() && previous_ != device) {
      status_ = CudaErrorToStatus(cudaSetDevice(device), "cudaSetDevice");
      switched_ = status_.ok();
    }
  }
  ~DeviceScope() {
    if (switched_) cudaSetDevice(previous_);
  }
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
  int previous_ = 0;
  bool switched_ = false;
};

// A stage's keys go in one request (ReservePut and StartGet take no more).
size_t MaxKeysPerStage(const Client& client) {
  return std::max<size_t>(1, client.server_info().max_keys_per_request());
}

absl::Status BufferTooSmall(size_t index, uint64_t needed, size_t buffer) {
  return absl::InvalidArgumentError(absl::StrCat("out[", index, "] holds ", buffer,
                                                 " bytes but the block is ", needed,
                                                 " bytes; pass buffers of block_bytes"));
}

}  // namespace

absl::Status GpuBlockClientOptions::Validate() const {
  if (stage_bytes < 1) return absl::InvalidArgumentError("stage_bytes must be at least 1");
  const CodecOptions codec{.chunk_log2 = chunk_log2};
  if (absl::Status s = codec.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_log2: ", s.message()));
  }
  return absl::OkStatus();
}

struct GpuBlockClient::State {
  cudaStream_t compute = nullptr;   // codec kernels
  cudaStream_t copy = nullptr;      // PCIe copies
  std::vector<cudaEvent_t> events;  // per stage, created on demand
  // Grown only at the start of a call, when no copy or kernel can still use the old buffer.
  cuda_buffers::PinnedBuffer staging;  // one slot per block of a call
  cuda_buffers::DeviceBuffer frames;   // device frames, one slot per block
  cuda_buffers::PinnedBuffer results;  // frame sizes (puts) or decode error codes (gets)
  std::map<std::pair<KvDtype, int>, std::unique_ptr<GpuCodec>> codecs;
  std::shared_ptr<ArenaPins> pins;  // set when calls copy straight to and from the arena
  bool kernel_copies = false;       // small pieces by LaunchPieceCopy (CopyQueue)

  ~State() {
    Drain().IgnoreError();
    pins.reset();
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    if (compute != nullptr) cudaStreamDestroy(compute);
    if (copy != nullptr) cudaStreamDestroy(copy);
  }

  absl::Status ReserveEvents(size_t n) {
    while (events.size() < n) {
      cudaEvent_t e = nullptr;
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      events.push_back(e);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<GpuCodec*> Codec(KvDtype dtype, int chunk_log2) {
    std::unique_ptr<GpuCodec>& codec = codecs[{dtype, chunk_log2}];
    if (codec == nullptr) {
      KVTIER_ASSIGN_OR_RETURN(
          codec, GpuCodec::Create(CodecOptions{.dtype = dtype, .chunk_log2 = chunk_log2}));
    }
    return codec.get();
  }

  // Waits for both streams: every copy and kernel of the call has finished.
  absl::Status Drain() {
    if (compute != nullptr) KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(compute));
    if (copy != nullptr) KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(copy));
    return absl::OkStatus();
  }
};

namespace {

// Drains the streams when a call returns early, so that no queued copy outlives the call and
// writes into a staging buffer the next call reuses (or the caller's freed buffers).
struct DrainOnExit {
  std::function<absl::Status()> drain;
  ~DrainOnExit() { drain().IgnoreError(); }
};

}  // namespace

GpuBlockClient::GpuBlockClient(Client* client, const GpuBlockClientOptions& options, int device,
                               std::unique_ptr<State> state)
    : client_(client), options_(options), device_(device), state_(std::move(state)) {}

GpuBlockClient::~GpuBlockClient() {
  DeviceScope scope(device_);
  state_.reset();
}

absl::StatusOr<std::unique_ptr<GpuBlockClient>> GpuBlockClient::Create(
    Client* client, const GpuBlockClientOptions& options) {
  if (client == nullptr) {
    return absl::InvalidArgumentError("GpuBlockClient needs a Client; pass the one it should use");
  }
  KVTIER_RETURN_IF_ERROR(options.Validate());
  KVTIER_ASSIGN_OR_RETURN(const int devices, CudaDeviceCount());
  if (devices == 0) {
    return absl::UnavailableError(
        "no CUDA device: GpuBlockClient moves blocks between GPU memory and kvtierd; run where a "
        "GPU is visible (check CUDA_VISIBLE_DEVICES and the driver), or use Client::Put/Get with "
        "host memory");
  }
  int device = 0;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  auto state = std::make_unique<State>();
  KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&state->compute, cudaStreamNonBlocking));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&state->copy, cudaStreamNonBlocking));
  int host_pointers = 0;
  KVTIER_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&host_pointers, cudaDevAttrCanUseHostPointerForRegisteredMem, device));
  state->kernel_copies = options.kernel_copies && host_pointers != 0;
  if (options.zero_copy && client->shared_arena() && !client->arena_memory().empty()) {
    state->pins = ArenaPins::ForArena(client->arena_memory());
  }
  return std::unique_ptr<GpuBlockClient>(
      new GpuBlockClient(client, options, device, std::move(state)));
}

bool GpuBlockClient::zero_copy() const { return state_->pins != nullptr; }

absl::StatusOr<std::vector<absl::Status>> GpuBlockClient::PutFromDevice(
    const NamespaceHandle& handle, std::span<const BlockKey> keys,
    std::span<const DeviceBlock> blocks, const PutOptions& options) {
  if (keys.size() != blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat("PutFromDevice got ", keys.size(), " keys but ",
                                                   blocks.size(),
                                                   " blocks; pass one block per key"));
  }
  if (!options.codecs.empty() || !options.raw_lengths.empty()) {
    return absl::InvalidArgumentError(
        "PutFromDevice encodes the blocks itself; leave PutOptions::codecs and raw_lengths empty");
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].device_ptr == nullptr || blocks[i].bytes == 0 ||
        blocks[i].bytes > handle.block_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "block ", i, " is ", blocks[i].bytes, " bytes",
          blocks[i].device_ptr == nullptr ? " with no device pointer" : "",
          "; pass a device pointer and 1 to block_bytes (", handle.block_bytes, ") bytes"));
    }
  }
  const size_t n = blocks.size();
  if (n == 0) return std::vector<absl::Status>{};
  DeviceScope scope(device_);
  KVTIER_RETURN_IF_ERROR(scope.status());
  State& st = *state_;

  GpuCodec* codec = nullptr;
  size_t element_bytes = 1;
  if (handle.options.compression() == proto::COMPRESSION_KVZ) {
    absl::StatusOr<KvDtype> dtype = ParseKvDtype(handle.descriptor.dtype);
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the namespace is COMPRESSION_KVZ but its dtype is not one kvz knows: ",
                       dtype.status().message()));
    }
    KVTIER_ASSIGN_OR_RETURN(codec, st.Codec(*dtype, options_.chunk_log2));
    element_bytes = KvDtypeBytes(*dtype);
  }

  // Block i's staging slot is at host_offset[i]; when it is compressed (item[i] != kNoItem) its
  // frame goes to frame_offset[i] of the device scratch and its size to sizes[item[i]].
  std::vector<size_t> host_offset(n);
  std::vector<size_t> frame_offset(n, 0);
  std::vector<size_t> frame_capacity(n, 0);
  std::vector<size_t> item(n, kNoItem);
  size_t host_bytes = 0;
  size_t frame_bytes = 0;
  size_t items = 0;
  for (size_t i = 0; i < n; ++i) {
    host_offset[i] = host_bytes;
    host_bytes += RoundUp(blocks[i].bytes, kHostAlign);
    if (codec == nullptr || blocks[i].bytes % element_bytes != 0 ||
        !Aligned16(blocks[i].device_ptr)) {
      continue;  // goes as it is
    }
    item[i] = items++;
    frame_offset[i] = frame_bytes;
    frame_capacity[i] = RoundUp(MaxCompressedSize(blocks[i].bytes, codec->options()), kDeviceAlign);
    frame_bytes += frame_capacity[i];
  }
  if (st.pins == nullptr) KVTIER_RETURN_IF_ERROR(st.staging.Reserve(host_bytes));
  KVTIER_RETURN_IF_ERROR(st.frames.Reserve(frame_bytes));
  KVTIER_RETURN_IF_ERROR(st.results.Reserve(items * sizeof(uint64_t)));

  // Stages of about stage_bytes, at least one block each, and at most one request's keys.
  const size_t max_keys = MaxKeysPerStage(*client_);
  std::vector<size_t> stage_begin = {0};
  for (size_t i = 0, bytes = 0; i < n; ++i) {
    if (i > stage_begin.back() &&
        (bytes + blocks[i].bytes > options_.stage_bytes || i - stage_begin.back() >= max_keys)) {
      stage_begin.push_back(i);
      bytes = 0;
    }
    bytes += blocks[i].bytes;
  }
  stage_begin.push_back(n);
  const size_t stages = stage_begin.size() - 1;
  KVTIER_RETURN_IF_ERROR(st.ReserveEvents(2 * stages));
  cudaEvent_t* compressed = st.events.data();
  cudaEvent_t* copied = compressed + stages;
  DrainOnExit drain{[&st] { return st.Drain(); }};

  // 1. Queue every stage's compression: the GPU compresses stage s+1 while stage s's frames
  //    cross PCIe.
  auto* sizes = st.results.as<uint64_t>();
  std::byte* const frames = st.frames.as<std::byte>();
  if (codec != nullptr) {
    std::vector<GpuCompressItem> batch;
    for (size_t s = 0; s < stages; ++s) {
      batch.clear();
      size_t first = kNoItem;
      for (size_t i = stage_begin[s]; i < stage_begin[s + 1]; ++i) {
        if (item[i] == kNoItem) continue;
        if (first == kNoItem) first = item[i];
        batch.push_back(
            {blocks[i].device_ptr, blocks[i].bytes, frames + frame_offset[i], frame_capacity[i]});
      }
      if (!batch.empty()) {
        KVTIER_RETURN_IF_ERROR(codec->CompressAsync(batch, sizes + first, st.compute));
      }
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(compressed[s], st.compute));
    }
  }

  // 2. Per stage, once its frame sizes are known: copy frames (or blocks that did not shrink)
  //    to the host, and meanwhile Put the previous stage.
  std::vector<std::span<const std::byte>> staged(n);
  std::vector<uint8_t> codecs(n, kStored);
  std::vector<uint64_t> raw_lengths(n, 0);
  std::vector<absl::Status> results(n);
  auto put_stage = [&](size_t s) -> absl::Status {
    const size_t begin = stage_begin[s];
    const size_t count = stage_begin[s + 1] - begin;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(copied[s]));
    PutOptions put = options;
    if (codec != nullptr) {
      put.codecs = std::span<const uint8_t>(codecs).subspan(begin, count);
      put.raw_lengths = std::span<const uint64_t>(raw_lengths).subspan(begin, count);
    }
    KVTIER_ASSIGN_OR_RETURN(
        std::vector<absl::Status> r,
        client_->Put(handle, keys.subspan(begin, count),
                     std::span<const std::span<const std::byte>>(staged).subspan(begin, count),
                     put));
    std::move(r.begin(), r.end(), results.begin() + static_cast<ptrdiff_t>(begin));
    return absl::OkStatus();
  };
  // What block i sends, once its stage is compressed: its frame where that is smaller, else the
  // block itself.
  std::vector<const void*> source(n);
  std::vector<uint64_t> lengths(n);
  auto choose_sources = [&](size_t s) {
    for (size_t i = stage_begin[s]; i < stage_begin[s + 1]; ++i) {
      source[i] = blocks[i].device_ptr;
      lengths[i] = blocks[i].bytes;
      if (item[i] != kNoItem && sizes[item[i]] < blocks[i].bytes) {
        source[i] = frames + frame_offset[i];
        lengths[i] = sizes[item[i]];
        codecs[i] = kKvz;
        raw_lengths[i] = blocks[i].bytes;
        ++counters_.put_kvz_blocks;
      }
      ++counters_.put_blocks;
      counters_.put_raw_bytes += blocks[i].bytes;
      counters_.put_sent_bytes += lengths[i];
    }
  };
  if (st.pins != nullptr) {
    // Zero copy: per stage, reserve the slots, queue the copy engine's writes from the frames
    // or blocks in device memory, and commit the previous stage once its copies are done, so
    // that each stage's copies overlap the next stage's two round trips (and the GPU
    // compresses later stages meanwhile). A reservation left by an error is aborted.
    std::vector<ReservedPut> reserved(stages);
    size_t committed = 0;  // stages [0, committed) are done
    auto abort_open = [&](absl::Status status) {
      // Copies still in flight must land before their slots go back: the daemon may hand a
      // released slot to another put at once.
      st.Drain().IgnoreError();
      for (size_t s = committed; s < stages; ++s) client_->AbortPut(reserved[s]).IgnoreError();
      return status;
    };
    auto commit = [&](size_t s) -> absl::Status {
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(copied[s]));
      absl::StatusOr<std::vector<absl::Status>> r = client_->CommitPut(reserved[s]);
      if (!r.ok()) return r.status();
      std::move(r->begin(), r->end(), results.begin() + static_cast<ptrdiff_t>(stage_begin[s]));
      committed = s + 1;
      return absl::OkStatus();
    };
    for (size_t s = 0; s < stages; ++s) {
      if (codec != nullptr) {
        if (cudaError_t e = cudaEventSynchronize(compressed[s]); e != cudaSuccess) {
          return abort_open(CudaErrorToStatus(e, "cudaEventSynchronize"));
        }
      }
      choose_sources(s);
      const size_t begin = stage_begin[s];
      const size_t count = stage_begin[s + 1] - begin;
      PutOptions put = options;
      if (codec != nullptr) {
        put.codecs = std::span<const uint8_t>(codecs).subspan(begin, count);
        put.raw_lengths = std::span<const uint64_t>(raw_lengths).subspan(begin, count);
      }
      absl::StatusOr<ReservedPut> r = client_->ReservePut(
          handle, keys.subspan(begin, count), std::span(lengths).subspan(begin, count), put);
      if (!r.ok()) return abort_open(r.status());
      reserved[s] = *std::move(r);
      CopyQueue copies(cudaMemcpyDeviceToHost, st.copy, st.pins.get(), st.kernel_copies);
      absl::Status queued;
      for (size_t k = 0; k < count && queued.ok(); ++k) {
        const std::span<std::byte> slot = reserved[s].slots()[k];
        if (slot.empty()) continue;
        queued = copies.Add(slot.data(), source[begin + k], slot.size());
        ++counters_.zero_copy_blocks;
      }
      if (queued.ok()) queued = copies.Flush();
      if (queued.ok()) queued = CudaErrorToStatus(cudaEventRecord(copied[s], st.copy), "event");
      if (queued.ok() && s > 0) queued = commit(s - 1);
      if (!queued.ok()) return abort_open(queued);
    }
    if (absl::Status last = commit(stages - 1); !last.ok()) return abort_open(last);
    counters_.arena_granules_registered = st.pins->registered();
    counters_.arena_granules_failed = st.pins->failed();
    KVTIER_RETURN_IF_ERROR(st.Drain());
    return results;
  }
  for (size_t s = 0; s < stages; ++s) {
    if (codec != nullptr) KVTIER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(compressed[s]));
    choose_sources(s);
    // Staging is cudaMallocHost memory, which the device reaches too.
    CopyQueue copies(cudaMemcpyDeviceToHost, st.copy, nullptr, st.kernel_copies,
                     /*host_mapped=*/true);
    for (size_t i = stage_begin[s]; i < stage_begin[s + 1]; ++i) {
      std::byte* dst = st.staging.as<std::byte>() + host_offset[i];
      KVTIER_RETURN_IF_ERROR(copies.Add(dst, source[i], lengths[i]));
      staged[i] = {dst, lengths[i]};
    }
    KVTIER_RETURN_IF_ERROR(copies.Flush());
    KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(copied[s], st.copy));
    if (s > 0) KVTIER_RETURN_IF_ERROR(put_stage(s - 1));
  }
  KVTIER_RETURN_IF_ERROR(put_stage(stages - 1));
  KVTIER_RETURN_IF_ERROR(st.Drain());
  return results;
}

absl::StatusOr<std::vector<GetResult>> GpuBlockClient::GetToDevice(
    const NamespaceHandle& handle, std::span<const BlockKey> keys,
    std::span<const DeviceBuffer> out) {
  if (keys.size() != out.size()) {
    return absl::InvalidArgumentError(absl::StrCat("GetToDevice got ", keys.size(), " keys but ",
                                                   out.size(),
                                                   " buffers; pass one buffer per key"));
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].device_ptr == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("out[", i, "] has no device pointer; pass buffers of block_bytes (",
                       handle.block_bytes, ") in device memory"));
    }
  }
  const size_t n = keys.size();
  if (n == 0) return std::vector<GetResult>{};
  if (handle.block_bytes == 0) {
    return absl::InvalidArgumentError("the namespace handle has block_bytes 0; open it first");
  }
  DeviceScope scope(device_);
  KVTIER_RETURN_IF_ERROR(scope.status());
  State& st = *state_;

  // Block i lands in staging slot i on the host and, when it is a frame, in frame slot i on the
  // device; decodes[k] reports into errors[k].
  const size_t slot = RoundUp(handle.block_bytes, kDeviceAlign);
  if (st.pins == nullptr) KVTIER_RETURN_IF_ERROR(st.staging.Reserve(n * slot));
  KVTIER_RETURN_IF_ERROR(st.frames.Reserve(n * slot));
  KVTIER_RETURN_IF_ERROR(st.results.Reserve(n * sizeof(int32_t)));
  auto* errors = st.results.as<int32_t>();
  const size_t per_stage = std::min(std::max<size_t>(1, options_.stage_bytes / handle.block_bytes),
                                    MaxKeysPerStage(*client_));
  const size_t stages = (n + per_stage - 1) / per_stage;
  KVTIER_RETURN_IF_ERROR(st.ReserveEvents(stages));
  DrainOnExit drain{[&st] { return st.Drain(); }};

  struct Decode {
    size_t block;
    KvDtype dtype;
    int chunk_log2;
    GpuDecompressItem item;
  };
  std::vector<Decode> decodes;
  std::vector<GpuDecompressItem> batch;
  std::vector<GetResult> results(n);
  std::vector<bool> copied_stored(n, false);  // went straight to out[i]
  // Queues the copy of got block i, whose r.length bytes are at host address `src` (a staging
  // slot or the arena): a stored block straight to out[i], a kvz frame to its frame slot with
  // a decode into out[i]; or sets r.status when neither can be done.
  auto route = [&](size_t i, GetResult& r, const std::byte* src, CopyQueue& copies,
                   std::vector<Decode>& routed) -> absl::Status {
    if (r.codec == kStored) {
      if (r.length > out[i].bytes) {
        r.status = BufferTooSmall(i, r.length, out[i].bytes);
        return absl::OkStatus();
      }
      copied_stored[i] = true;
      return copies.Add(out[i].device_ptr, src, r.length);
    }
    // Reported as Client::Get with decoding on reports it: decoded, codec 0.
    const uint8_t codec = r.codec;
    const uint64_t frame_length = r.length;
    const uint64_t raw_length = r.raw_length;
    r.codec = kStored;
    r.raw_length = 0;
    r.length = raw_length;
    if (codec != kKvz) {
      r.status = absl::UnimplementedError(absl::StrCat(
          "block is encoded with codec ", codec, ", which GetToDevice cannot decode; upgrade it"));
      return absl::OkStatus();
    }
    if (raw_length > out[i].bytes) {
      r.status = BufferTooSmall(i, raw_length, out[i].bytes);
      return absl::OkStatus();
    }
    if (!Aligned16(out[i].device_ptr)) {
      r.status = absl::InvalidArgumentError(
          absl::StrCat("out[", i,
                       "] is not 16-byte aligned; kvz blocks decode on the GPU only into aligned "
                       "buffers (cudaMalloc memory is)"));
      return absl::OkStatus();
    }
    // The header says which codec options decode the frame; the kernels check the rest.
    absl::StatusOr<FrameHeader> header = ReadFrameHeader(std::span(src, frame_length));
    if (!header.ok() || header->frame_bytes != frame_length ||
        header->decompressed_bytes != raw_length) {
      r.status = absl::DataLossError(absl::StrCat(
          "the block's kvz frame header is damaged or disagrees with its lengths (",
          header.ok() ? absl::string_view("lengths differ") : header.status().message(),
          "); count it as a miss"));
      return absl::OkStatus();
    }
    std::byte* frame = st.frames.as<std::byte>() + i * slot;
    routed.push_back({i,
                      header->dtype,
                      header->chunk_log2,
                      {frame, frame_length, out[i].device_ptr, raw_length}});
    return copies.Add(frame, src, frame_length);
  };
  // Queues the decodes [first_decode, end) once their frames are in device memory (after
  // `ready` on the copy stream, or at once).
  auto queue_decodes = [&](size_t first_decode, cudaEvent_t ready) -> absl::Status {
    if (decodes.size() == first_decode) return absl::OkStatus();
    if (ready != nullptr) {
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(ready, st.copy));
      KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(st.compute, ready));
    }
    // One batch per (dtype, chunk size): almost always one, the namespace's.
    auto codec_of = [](const Decode& d) { return std::pair(d.dtype, d.chunk_log2); };
    std::stable_sort(decodes.begin() + static_cast<ptrdiff_t>(first_decode), decodes.end(),
                     [&](const Decode& a, const Decode& b) { return codec_of(a) < codec_of(b); });
    for (size_t k = first_decode; k < decodes.size();) {
      size_t end_k = k;
      batch.clear();
      while (end_k < decodes.size() && codec_of(decodes[end_k]) == codec_of(decodes[k])) {
        batch.push_back(decodes[end_k++].item);
      }
      KVTIER_ASSIGN_OR_RETURN(GpuCodec * codec, st.Codec(decodes[k].dtype, decodes[k].chunk_log2));
      KVTIER_RETURN_IF_ERROR(codec->DecompressAsync(batch, errors + k, st.compute));
      k = end_k;
    }
    return absl::OkStatus();
  };

  if (st.pins != nullptr) {
    // Zero copy: per stage, quote the hits' slots and queue the copy engine's reads of them
    // straight out of the arena; then finish the previous stage, whose copies are done (its
    // seqlock check and release), and queue its decodes. Each stage's copies overlap the next
    // stage's round trips and the previous stage's decodes. Gets left open by an error end
    // with their leases.
    struct Stage {
      StartedGet get;
      std::vector<GetResult> routed;  // route()'s view of each block, valid if the copy is
      std::vector<Decode> decodes;
    };
    std::vector<Stage> pending(stages);
    auto finish = [&](size_t s) -> absl::Status {
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(st.events[s]));
      KVTIER_ASSIGN_OR_RETURN(std::vector<GetResult> got, client_->FinishGet(pending[s].get));
      const size_t begin = s * per_stage;
      for (size_t k = 0; k < got.size(); ++k) {
        // A copy the seqlock voided keeps FinishGet's verdict; the others what route made of
        // them.
        results[begin + k] =
            got[k].status.ok() ? std::move(pending[s].routed[k]) : std::move(got[k]);
        if (results[begin + k].status.ok()) ++counters_.zero_copy_blocks;
      }
      const size_t first_decode = decodes.size();
      for (Decode& d : pending[s].decodes) {
        if (results[d.block].status.ok()) decodes.push_back(d);
      }
      pending[s] = Stage{};
      return queue_decodes(first_decode, nullptr);  // the frames are in device memory
    };
    for (size_t s = 0; s < stages; ++s) {
      const size_t begin = s * per_stage;
      const size_t count = std::min(n, begin + per_stage) - begin;
      KVTIER_ASSIGN_OR_RETURN(pending[s].get,
                              client_->StartGet(handle, keys.subspan(begin, count)));
      Stage& stage = pending[s];
      stage.routed.assign(stage.get.results().begin(), stage.get.results().end());
      CopyQueue copies(cudaMemcpyHostToDevice, st.copy, st.pins.get(), st.kernel_copies);
      for (size_t k = 0; k < count; ++k) {
        // route() reads each kvz frame's header from its arena slot: a cache miss per block,
        // in scattered slots. Starting the loads a few blocks ahead lets them overlap.
        constexpr size_t kAhead = 8;
        if (k + kAhead < count && !stage.get.slots()[k + kAhead].empty()) {
          __builtin_prefetch(stage.get.slots()[k + kAhead].data());
        }
        const std::span<const std::byte> slot = stage.get.slots()[k];
        if (slot.empty() || !stage.routed[k].status.ok()) continue;
        KVTIER_RETURN_IF_ERROR(
            route(begin + k, stage.routed[k], slot.data(), copies, stage.decodes));
      }
      KVTIER_RETURN_IF_ERROR(copies.Flush());
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(st.events[s], st.copy));
      if (s > 0) KVTIER_RETURN_IF_ERROR(finish(s - 1));
    }
    KVTIER_RETURN_IF_ERROR(finish(stages - 1));
    counters_.arena_granules_registered = st.pins->registered();
    counters_.arena_granules_failed = st.pins->failed();
  } else {
    std::vector<std::span<std::byte>> staging(n);
    for (size_t i = 0; i < n; ++i) {
      staging[i] = std::span(st.staging.as<std::byte>() + i * slot, handle.block_bytes);
    }
    // Each stage: Get into the staging slots (the host copies out of the arena while the GPU
    // still works on the previous stage), queue the copies to the device, then the decodes.
    for (size_t s = 0; s < stages; ++s) {
      const size_t begin = s * per_stage;
      const size_t end = std::min(n, begin + per_stage);
      KVTIER_ASSIGN_OR_RETURN(
          std::vector<GetResult> got,
          client_->Get(handle, keys.subspan(begin, end - begin),
                       std::span<const std::span<std::byte>>(staging).subspan(begin, end - begin),
                       GetOptions{.decode = false}));
      CopyQueue copies(cudaMemcpyHostToDevice, st.copy, nullptr, st.kernel_copies,
                       /*host_mapped=*/true);
      const size_t first_decode = decodes.size();
      for (size_t i = begin; i < end; ++i) {
        GetResult& r = results[i];
        r = std::move(got[i - begin]);
        if (!r.status.ok()) continue;
        KVTIER_RETURN_IF_ERROR(route(i, r, staging[i].data(), copies, decodes));
      }
      KVTIER_RETURN_IF_ERROR(copies.Flush());
      KVTIER_RETURN_IF_ERROR(queue_decodes(first_decode, st.events[s]));
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (!copied_stored[i] || !results[i].status.ok()) continue;
    ++counters_.get_blocks;
    counters_.get_raw_bytes += results[i].length;
    counters_.get_received_bytes += results[i].length;
  }
  KVTIER_RETURN_IF_ERROR(st.Drain());
  for (size_t k = 0; k < decodes.size(); ++k) {
    GetResult& r = results[decodes[k].block];
    if (errors[k] != 0) {
      // The daemon never changes bytes: a frame that fails its checks was damaged (or lied
      // about). A miss, never wrong bytes.
      r.status = absl::DataLossError(absl::StrCat(
          "the block's kvz frame failed to decode on the GPU (",
          GpuDecodeErrorToStatus(errors[k], decodes[k].block).message(), "); count it as a miss"));
      continue;
    }
    ++counters_.get_blocks;
    ++counters_.get_kvz_blocks;
    counters_.get_raw_bytes += decodes[k].item.output_bytes;
    counters_.get_received_bytes += decodes[k].item.frame_bytes;
  }
  return results;
}

}  // namespace kvtier::client
