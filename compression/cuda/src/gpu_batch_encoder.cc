// The GPU batch encoder: groups of jobs flow through two slots, each with its own stream,
// pinned and device buffers and GpuCodec, so that while the GPU copies, encodes and returns
// one group's frames the host packs the next and unpacks the one before. The host's two
// memcpys per group (into pinned memory, out of it) are then the whole cost; the transfers and
// the kernels hide behind them.
#include "kvtier/compression/gpu_batch_encoder.h"

#include <cuda_runtime_api.h>

#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "format.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/compression/gpu_codec.h"
#include "kvtier/kernels/cuda_buffers.h"
#include "kvtier/kernels/cuda_status.h"

namespace kvtier {
namespace {

size_t Align16(size_t x) { return (x + 15) & ~size_t{15}; }

// One group in flight: where its jobs' inputs and frames lie in the slot's buffers.
struct Slot {
  cudaStream_t stream = nullptr;
  cuda_buffers::PinnedBuffer host_in;
  cuda_buffers::PinnedBuffer host_out;
  cuda_buffers::PinnedBuffer host_sizes;
  cuda_buffers::DeviceBuffer device_in;
  cuda_buffers::DeviceBuffer device_out;
  std::vector<std::pair<CodecOptions, std::unique_ptr<GpuCodec>>> codecs;
  std::span<CompressJob> jobs;  // the group in flight; empty when idle
  std::vector<size_t> out_offset;
};

class GpuBatchEncoder final : public BatchEncoder {
 public:
  GpuBatchEncoder(const GpuBatchEncoderOptions& options, std::string name)
      : options_(options), name_(std::move(name)) {}
  ~GpuBatchEncoder() override {
    for (Slot& slot : slots_) {
      if (slot.stream != nullptr) cudaStreamDestroy(slot.stream);
    }
  }

  absl::Status Init() {
    for (Slot& slot : slots_) {
      KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&slot.stream, cudaStreamNonBlocking));
    }
    return absl::OkStatus();
  }

  absl::Status Compress(std::span<CompressJob> jobs, const CodecOptions& options) override {
    KVTIER_RETURN_IF_ERROR(options.Validate());
    const size_t element_bytes = KvDtypeBytes(options.dtype);
    for (size_t i = 0; i < jobs.size(); ++i) {
      const CompressJob& job = jobs[i];
      if (job.input.size() % element_bytes != 0 || job.input.size() > kvz::kMaxFrameInputBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("job ", i, ": ", job.input.size(), " bytes is not a whole number of ",
                         element_bytes, "-byte elements up to 2 GiB"));
      }
      if (job.output.size() < MaxCompressedSize(job.input.size(), options)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "job ", i, ": output of ", job.output.size(),
            " bytes is below MaxCompressedSize = ", MaxCompressedSize(job.input.size(), options)));
      }
    }
    absl::MutexLock lock(&mu_);
    absl::Status status;
    size_t next = 0;
    // After an error nothing new starts; the groups in flight are still waited for, so that no
    // stream is left writing into buffers the next call reuses.
    for (size_t group = 0; (status.ok() && next < jobs.size()) || InFlight(); ++group) {
      Slot& slot = slots_[group % slots_.size()];
      // The slot's previous group is done once its stream is: its frames go out first.
      if (absl::Status s = Finish(slot); status.ok()) status = s;
      if (next == jobs.size() || !status.ok()) continue;
      size_t end = next;
      size_t bytes = 0;
      do {
        bytes += Align16(jobs[end].input.size());
        ++end;
      } while (end < jobs.size() && bytes + jobs[end].input.size() <= options_.group_bytes);
      status = Start(slot, jobs.subspan(next, end - next), options);
      next = end;
    }
    return status;
  }

  std::string Describe() const override { return name_; }

 private:
  bool InFlight() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const Slot& slot : slots_) {
      if (!slot.jobs.empty()) return true;
    }
    return false;
  }

  static absl::StatusOr<GpuCodec*> CodecFor(Slot& slot, const CodecOptions& options) {
    for (auto& [o, codec] : slot.codecs) {
      if (o.dtype == options.dtype && o.chunk_log2 == options.chunk_log2) return codec.get();
    }
    KVTIER_ASSIGN_OR_RETURN(std::unique_ptr<GpuCodec> codec, GpuCodec::Create(options));
    slot.codecs.emplace_back(options, std::move(codec));
    return slot.codecs.back().second.get();
  }

  // Packs the group's inputs into the slot's pinned memory and queues on its stream: the copy
  // to the GPU, the encoding, and the copy back of every frame's whole capacity (the sizes are
  // not known to the host yet; PCIe is not what limits this path).
  static absl::Status Start(Slot& slot, std::span<CompressJob> jobs, const CodecOptions& options) {
    std::vector<size_t> in_offset(jobs.size());
    slot.out_offset.resize(jobs.size());
    size_t in_bytes = 0;
    size_t out_bytes = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
      in_offset[i] = in_bytes;
      slot.out_offset[i] = out_bytes;
      in_bytes += Align16(jobs[i].input.size());
      out_bytes += Align16(MaxCompressedSize(jobs[i].input.size(), options));
    }
    KVTIER_ASSIGN_OR_RETURN(GpuCodec * codec, CodecFor(slot, options));
    KVTIER_RETURN_IF_ERROR(slot.host_in.Reserve(in_bytes));
    KVTIER_RETURN_IF_ERROR(slot.device_in.Reserve(in_bytes));
    KVTIER_RETURN_IF_ERROR(slot.device_out.Reserve(out_bytes));
    KVTIER_RETURN_IF_ERROR(slot.host_out.Reserve(out_bytes));
    KVTIER_RETURN_IF_ERROR(slot.host_sizes.Reserve(jobs.size() * sizeof(uint64_t)));
    for (size_t i = 0; i < jobs.size(); ++i) {
      std::memcpy(slot.host_in.as<std::byte>() + in_offset[i], jobs[i].input.data(),
                  jobs[i].input.size());
    }
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(slot.device_in.as<void>(), slot.host_in.as<void>(),
                                                in_bytes, cudaMemcpyHostToDevice, slot.stream));
    std::vector<GpuCompressItem> items(jobs.size());
    for (size_t i = 0; i < jobs.size(); ++i) {
      items[i] =
          GpuCompressItem{.input = slot.device_in.as<std::byte>() + in_offset[i],
                          .input_bytes = jobs[i].input.size(),
                          .output = slot.device_out.as<std::byte>() + slot.out_offset[i],
                          .output_capacity = MaxCompressedSize(jobs[i].input.size(), options)};
    }
    KVTIER_RETURN_IF_ERROR(
        codec->CompressAsync(items, slot.host_sizes.as<uint64_t>(), slot.stream));
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(slot.host_out.as<void>(),
                                                slot.device_out.as<void>(), out_bytes,
                                                cudaMemcpyDeviceToHost, slot.stream));
    slot.jobs = jobs;
    return absl::OkStatus();
  }

  // Waits for the slot's group, if any, and hands its frames to its jobs.
  static absl::Status Finish(Slot& slot) {
    if (slot.jobs.empty()) return absl::OkStatus();
    const std::span<CompressJob> jobs = std::exchange(slot.jobs, {});
    KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(slot.stream));
    const uint64_t* sizes = slot.host_sizes.as<uint64_t>();
    for (size_t i = 0; i < jobs.size(); ++i) {
      std::memcpy(jobs[i].output.data(), slot.host_out.as<std::byte>() + slot.out_offset[i],
                  sizes[i]);
      jobs[i].compressed_bytes = sizes[i];
    }
    return absl::OkStatus();
  }

  const GpuBatchEncoderOptions options_;
  const std::string name_;
  absl::Mutex mu_;
  std::array<Slot, 2> slots_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<BatchEncoder>> NewGpuBatchEncoder(
    const GpuBatchEncoderOptions& options) {
  KVTIER_ASSIGN_OR_RETURN(const int devices, CudaDeviceCount());
  if (devices == 0) return absl::UnavailableError("no CUDA device for the GPU batch encoder");
  int device = 0;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  auto encoder = std::make_unique<GpuBatchEncoder>(options, absl::StrCat("gpu (", prop.name, ")"));
  KVTIER_RETURN_IF_ERROR(encoder->Init());
  return encoder;
}

}  // namespace kvtier
