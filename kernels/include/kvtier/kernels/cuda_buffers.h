// Device and pinned host allocations that grow to the largest size asked for and are reused:
// the GPU codec's workspace, the GPU batch encoder's staging, GpuBlockClient's buffers.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>

#include "absl/status/status.h"
#include "kvtier/kernels/cuda_status.h"

namespace kvtier::cuda_buffers {

// cudaMalloc (kPinned false) or cudaMallocHost (kPinned true) memory. Reserve keeps nothing of
// the old contents when it grows.
template <bool kPinned>
class GrowingBuffer {
 public:
  GrowingBuffer() = default;
  ~GrowingBuffer() { Free(); }
  GrowingBuffer(const GrowingBuffer&) = delete;
  GrowingBuffer& operator=(const GrowingBuffer&) = delete;

  absl::Status Reserve(size_t bytes) {
    if (bytes <= size_) return absl::OkStatus();
    // cudaFree and cudaFreeHost wait for the device, so work still using the old buffer is
    // complete.
    KVTIER_CUDA_RETURN_IF_ERROR(Free());
    const size_t grown = std::max(bytes, size_ + size_ / 2);
    size_ = 0;
    KVTIER_CUDA_RETURN_IF_ERROR(kPinned ? cudaMallocHost(&ptr_, grown) : cudaMalloc(&ptr_, grown));
    size_ = grown;
    return absl::OkStatus();
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  cudaError_t Free() {
    if (ptr_ == nullptr) return cudaSuccess;
    const cudaError_t e = kPinned ? cudaFreeHost(ptr_) : cudaFree(ptr_);
    ptr_ = nullptr;
    return e;
  }

  void* ptr_ = nullptr;
  size_t size_ = 0;
};

using DeviceBuffer = GrowingBuffer<false>;
using PinnedBuffer = GrowingBuffer<true>;

}  // namespace kvtier::cuda_buffers
