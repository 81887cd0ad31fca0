// Internal to kvtier_client_cuda: many small copies in one kernel. The copy engines pay a few
// microseconds per copy (~17 GB/s for 64 KiB copies issued one by one on an H100 host), so
// kvz frames of small blocks, which sit in scattered arena slots, moved at a few GB/s as DMA
// copies. SM threads reading or writing host memory that CUDA has mapped (registered with
// cudaHostRegister, or cudaMallocHost memory, on a device that can use host pointers for it)
// move such pieces at PCIe speed instead. Plain C++ header: the kernel is in piece_copy.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace kvtier::client {

struct CopyPiece {
  const void* src = nullptr;
  void* dst = nullptr;
  uint64_t bytes = 0;
};

// Pieces per launch: they travel in the kernel's parameters (24 KiB; CUDA 12.1+ and Volta+
// allow 32 KiB), so the caller's array may be reused as soon as the launch returns.
inline constexpr int kPiecesPerLaunch = 1000;

// Copies pieces[0, n), n <= kPiecesPerLaunch, on `stream`, one thread block per piece. Every
// pointer must be usable on the device (device memory, or mapped host memory).
cudaError_t LaunchPieceCopy(const CopyPiece* pieces, int n, cudaStream_t stream);

}  // namespace kvtier::client
