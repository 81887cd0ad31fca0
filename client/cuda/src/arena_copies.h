// Internal to kvtier_client_cuda: the copies between device memory and host memory that
// GpuBlockClient queues, and the daemon's shared arena registered with CUDA for them (so that
// the copy engines reach it without a staging copy). Not thread-safe; one per GpuBlockClient.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/kernels/cuda_status.h"

namespace kvtier::client {

// The daemon's shared arena, registered with CUDA (cudaHostRegister) a granule at a time on
// first use, so that the copy engines reach it without a staging copy. Registering it whole at
// start would pin every page of the daemon's DRAM tier at once, used or not. Copies are cut at
// granule boundaries: a copy must lie within one registration to run as a pinned one. Only
// the granules registered here are unregistered on destruction.
class ArenaPins {
 public:
  static constexpr size_t kGranule = size_t{64} << 20;

  explicit ArenaPins(std::span<std::byte> arena)
      : arena_(arena), state_((arena.size() + kGranule - 1) / kGranule, kUnknown) {}
  ~ArenaPins() {
    for (size_t g = 0; g < state_.size(); ++g) {
      if (state_[g] == kOurs) cudaHostUnregister(arena_.data() + g * kGranule);
    }
  }
  ArenaPins(const ArenaPins&) = delete;
  ArenaPins& operator=(const ArenaPins&) = delete;

  bool Contains(const std::byte* p) const {
    return p >= arena_.data() && p < arena_.data() + arena_.size();
  }
  // REQUIRES Contains(p). Bytes from p to the end of its granule, and whether p starts one.
  size_t ToGranuleEnd(const std::byte* p) const {
    const size_t offset = static_cast<size_t>(p - arena_.data());
    return std::min((offset / kGranule + 1) * kGranule, arena_.size()) - offset;
  }
  bool AtGranuleStart(const std::byte* p) const {
    return static_cast<size_t>(p - arena_.data()) % kGranule == 0;
  }
  // Registers p's granule unless done (or tried) before. A granule that cannot be registered
  // is still copied, from pageable memory.
  void Ensure(const std::byte* p) {
    const size_t g = static_cast<size_t>(p - arena_.data()) / kGranule;
    if (state_[g] != kUnknown) return;
    std::byte* start = arena_.data() + g * kGranule;
    const cudaError_t e = cudaHostRegister(start, std::min(kGranule, arena_.size() - g * kGranule),
                                           cudaHostRegisterPortable);
    if (e == cudaSuccess) {
      state_[g] = kOurs;
      ++registered_;
    } else if (e == cudaErrorHostMemoryAlreadyRegistered) {
      cudaGetLastError();  // another GpuBlockClient of this process registered it
      state_[g] = kOthers;
    } else {
      cudaGetLastError();
      state_[g] = kFailed;
      ++failed_;
    }
  }
  uint64_t registered() const { return registered_; }
  uint64_t failed() const { return failed_; }

 private:
  enum State : uint8_t { kUnknown, kOurs, kOthers, kFailed };
  const std::span<std::byte> arena_;
  std::vector<uint8_t> state_;
  uint64_t registered_ = 0;
  uint64_t failed_ = 0;
};

// Queues copies on a stream; a copy that continues the previous one at both ends joins it, so
// that blocks laid out back to back move in one DMA transfer. With `pins`, copies whose host
// side lies in the arena are cut at its granule boundaries and their granules registered.
// Flush hands all copies to the driver in one cudaMemcpyBatchAsync: kvz frames land in
// scattered arena slots, and one cudaMemcpyAsync per frame cost more than the transfers.
class CopyQueue {
 public:
  CopyQueue(cudaMemcpyKind kind, cudaStream_t stream, ArenaPins* pins = nullptr)
      : kind_(kind), stream_(stream), pins_(pins) {}

  absl::Status Add(void* dst, const void* src, size_t bytes) {
    auto* d = static_cast<std::byte*>(dst);
    auto* s = static_cast<const std::byte*>(src);
    const std::byte* host = kind_ == cudaMemcpyDeviceToHost ? d : s;
    if (pins_ == nullptr || !pins_->Contains(host)) return AddPiece(d, s, bytes, false);
    while (bytes > 0) {
      const size_t piece = std::min(bytes, pins_->ToGranuleEnd(host));
      pins_->Ensure(host);
      KVTIER_RETURN_IF_ERROR(AddPiece(d, s, piece, pins_->AtGranuleStart(host)));
      d += piece;
      s += piece;
      host += piece;
      bytes -= piece;
    }
    return absl::OkStatus();
  }

  // Copies queued and not yet flushed (after joining).
  size_t queued() const { return sizes_.size(); }

  absl::Status Flush() {
    if (sizes_.empty()) return absl::OkStatus();
    cudaMemcpyAttributes attributes{};
    attributes.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    size_t first = 0;
    cudaError_t e = cudaMemcpyBatchAsync(dsts_.data(), srcs_.data(), sizes_.data(), sizes_.size(),
                                         &attributes, &first, 1, stream_);
    if (e != cudaSuccess) {
      // A driver without batched copies (before CUDA 12.8): one call per copy.
      cudaGetLastError();
      for (size_t k = 0; k < sizes_.size(); ++k) {
        KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dsts_[k], srcs_[k], sizes_[k], kind_, stream_));
      }
    }
    dsts_.clear();
    srcs_.clear();
    sizes_.clear();
    return absl::OkStatus();
  }

 private:
  absl::Status AddPiece(std::byte* d, const std::byte* s, size_t bytes, bool starts_granule) {
    if (!sizes_.empty() && !starts_granule &&
        d == static_cast<std::byte*>(dsts_.back()) + sizes_.back() &&
        s == static_cast<const std::byte*>(srcs_.back()) + sizes_.back()) {
      sizes_.back() += bytes;
      return absl::OkStatus();
    }
    dsts_.push_back(d);
    srcs_.push_back(s);
    sizes_.push_back(bytes);
    return absl::OkStatus();
  }

  const cudaMemcpyKind kind_;
  const cudaStream_t stream_;
  ArenaPins* const pins_;
  std::vector<void*> dsts_;
  std::vector<const void*> srcs_;
  std::vector<size_t> sizes_;
};

}  // namespace kvtier::client
