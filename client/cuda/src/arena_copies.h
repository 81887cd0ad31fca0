// Internal to kvtier_client_cuda: the copies between device memory and host memory that
// GpuBlockClient queues, and the daemon's shared arena registered with CUDA for them (so that
// the copy engines reach it without a staging copy). Not thread-safe; one per GpuBlockClient.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/kernels/cuda_status.h"
#include "piece_copy.h"

namespace kvtier::client {

// The daemon's shared arena, registered with CUDA (cudaHostRegister) a granule at a time on
// first use, so that the copy engines reach it without a staging copy. Registering it whole at
// start would pin every page of the daemon's DRAM tier at once, used or not. Copies are cut at
// granule boundaries: a copy must lie within one registration to run as a pinned one.
//
// CUDA's registrations belong to the process, so one ArenaPins serves every GpuBlockClient of
// the process that uses the same mapping (ForArena), and the last one to let go unregisters
// the granules: a registration must not vanish under another user's copy or kernel. Granules
// that something else in the process registered are used by the copy engines but never by
// device threads (see Ensure), since their owner may unregister them at any time. Thread-safe.
class ArenaPins {
 public:
  static constexpr size_t kGranule = size_t{64} << 20;

  // The pins of the mapping `arena`, shared with every other holder of the same mapping.
  static std::shared_ptr<ArenaPins> ForArena(std::span<std::byte> arena) {
    static std::mutex mu;
    static std::map<std::pair<const std::byte*, size_t>, std::weak_ptr<ArenaPins>> live;
    std::lock_guard lock(mu);
    std::weak_ptr<ArenaPins>& slot = live[{arena.data(), arena.size()}];
    std::shared_ptr<ArenaPins> pins = slot.lock();
    if (pins == nullptr) {
      pins = std::make_shared<ArenaPins>(arena);
      slot = pins;
    }
    return pins;
  }

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
  // Registers p's granule unless done (or tried) before, and returns whether device threads
  // may read and write it at p: registered here, so alive as long as this object. A granule
  // that cannot be registered is still copied by the engines, from pageable memory.
  bool Ensure(const std::byte* p) {
    const size_t g = static_cast<size_t>(p - arena_.data()) / kGranule;
    std::lock_guard lock(mu_);
    if (state_[g] == kUnknown) {
      std::byte* start = arena_.data() + g * kGranule;
      const cudaError_t e = cudaHostRegister(
          start, std::min(kGranule, arena_.size() - g * kGranule), cudaHostRegisterPortable);
      if (e == cudaSuccess) {
        state_[g] = kOurs;
        ++registered_;
      } else if (e == cudaErrorHostMemoryAlreadyRegistered) {
        cudaGetLastError();  // registered by something else in the process
        state_[g] = kOthers;
      } else {
        cudaGetLastError();
        state_[g] = kFailed;
        ++failed_;
      }
    }
    return state_[g] == kOurs;
  }
  uint64_t registered() const {
    std::lock_guard lock(mu_);
    return registered_;
  }
  uint64_t failed() const {
    std::lock_guard lock(mu_);
    return failed_;
  }

 private:
  enum State : uint8_t { kUnknown, kOurs, kOthers, kFailed };
  const std::span<std::byte> arena_;
  mutable std::mutex mu_;
  std::vector<uint8_t> state_;
  uint64_t registered_ = 0;
  uint64_t failed_ = 0;
};

// Queues copies between device and host memory on a stream; a copy that continues the previous
// one at both ends joins it, so that blocks laid out back to back move in one transfer. With
// `pins`, copies whose host side lies in the arena are cut at its granule boundaries and their
// granules registered. Flush hands the copies to the copy engines in one cudaMemcpyBatchAsync,
// except pieces under kKernelCopyBytes whose host side the device can reach (`host_mapped` for
// host memory outside the arena, registration for the arena) when `kernel_copies` is on: those
// go to LaunchPieceCopy, since the copy engines pay microseconds per copy and kvz frames, in
// scattered slots, come in thousands of small pieces for small blocks.
class CopyQueue {
 public:
  static constexpr size_t kKernelCopyBytes = size_t{128} << 10;

  CopyQueue(cudaMemcpyKind kind, cudaStream_t stream, ArenaPins* pins = nullptr,
            bool kernel_copies = false, bool host_mapped = false)
      : kind_(kind),
        stream_(stream),
        pins_(pins),
        kernel_copies_(kernel_copies),
        host_mapped_(host_mapped) {}

  absl::Status Add(void* dst, const void* src, size_t bytes) {
    auto* d = static_cast<std::byte*>(dst);
    auto* s = static_cast<const std::byte*>(src);
    const std::byte* host = kind_ == cudaMemcpyDeviceToHost ? d : s;
    if (pins_ == nullptr || !pins_->Contains(host)) {
      AddPiece(d, s, bytes, false, host_mapped_);
      return absl::OkStatus();
    }
    while (bytes > 0) {
      const size_t piece = std::min(bytes, pins_->ToGranuleEnd(host));
      const bool mapped = pins_->Ensure(host);
      AddPiece(d, s, piece, pins_->AtGranuleStart(host), mapped);
      d += piece;
      s += piece;
      host += piece;
      bytes -= piece;
    }
    return absl::OkStatus();
  }

  // Copies queued and not yet flushed (after joining), and of those, the ones for the kernel.
  size_t queued() const { return copies_.size(); }
  size_t queued_for_kernel() const {
    size_t n = 0;
    for (const Copy& c : copies_) n += ForKernel(c);
    return n;
  }

  absl::Status Flush() {
    std::vector<void*> dsts;
    std::vector<const void*> srcs;
    std::vector<size_t> sizes;
    std::vector<CopyPiece> pieces;
    for (const Copy& c : copies_) {
      if (ForKernel(c)) {
        pieces.push_back({c.src, c.dst, c.bytes});
      } else {
        dsts.push_back(c.dst);
        srcs.push_back(c.src);
        sizes.push_back(c.bytes);
      }
    }
    copies_.clear();
    for (size_t k = 0; k < pieces.size(); k += kPiecesPerLaunch) {
      const int n = static_cast<int>(std::min<size_t>(kPiecesPerLaunch, pieces.size() - k));
      if (LaunchPieceCopy(pieces.data() + k, n, stream_) != cudaSuccess) {
        cudaGetLastError();  // e.g. a driver without large kernel parameters: the copy engines
        for (int i = 0; i < n; ++i) {
          dsts.push_back(pieces[k + i].dst);
          srcs.push_back(pieces[k + i].src);
          sizes.push_back(pieces[k + i].bytes);
        }
      }
    }
    if (sizes.empty()) return absl::OkStatus();
    cudaMemcpyAttributes attributes{};
    attributes.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    size_t first = 0;
    if (cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), sizes.size(), &attributes,
                             &first, 1, stream_) != cudaSuccess) {
      // A driver without batched copies (before CUDA 12.8): one call per copy.
      cudaGetLastError();
      for (size_t k = 0; k < sizes.size(); ++k) {
        KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dsts[k], srcs[k], sizes[k], kind_, stream_));
      }
    }
    return absl::OkStatus();
  }

 private:
  struct Copy {
    void* dst;
    const void* src;
    size_t bytes;
    bool mapped;  // the host side is reachable from the device
  };
  bool ForKernel(const Copy& c) const {
    return kernel_copies_ && c.mapped && c.bytes < kKernelCopyBytes;
  }
  void AddPiece(std::byte* d, const std::byte* s, size_t bytes, bool starts_granule, bool mapped) {
    if (!copies_.empty() && !starts_granule && copies_.back().mapped == mapped) {
      Copy& last = copies_.back();
      if (d == static_cast<std::byte*>(last.dst) + last.bytes &&
          s == static_cast<const std::byte*>(last.src) + last.bytes) {
        last.bytes += bytes;
        return;
      }
    }
    copies_.push_back({d, s, bytes, mapped});
  }

  const cudaMemcpyKind kind_;
  const cudaStream_t stream_;
  ArenaPins* const pins_;
  const bool kernel_copies_;
  const bool host_mapped_;
  std::vector<Copy> copies_;
};

}  // namespace kvtier::client
