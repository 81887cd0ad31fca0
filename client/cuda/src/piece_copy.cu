// The piece-copy kernel of piece_copy.h.
#include "piece_copy.h"

namespace kvtier::client {
namespace {

struct Pieces {
  CopyPiece piece[kPiecesPerLaunch];
};

constexpr int kThreads = 256;

// Block b copies piece b: 16-byte vectors where both ends are 16-byte aligned (the usual case:
// arena slots and device frame slots are), 4-byte words where they are 4-byte aligned, bytes
// otherwise. Four vectors per thread in flight, since host memory is a PCIe round trip away.
__global__ void __launch_bounds__(kThreads) PieceCopyKernel(const __grid_constant__ Pieces pieces) {
  const CopyPiece& p = pieces.piece[blockIdx.x];
  const auto* src = static_cast<const unsigned char*>(p.src);
  auto* dst = static_cast<unsigned char*>(p.dst);
  const uint64_t bytes = p.bytes;
  const uintptr_t alignment = reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst);
  uint64_t done = 0;
  if (alignment % 16 == 0) {
    const auto* s = reinterpret_cast<const uint4*>(src);
    auto* d = reinterpret_cast<uint4*>(dst);
    const uint64_t vectors = bytes / 16;
    constexpr int kUnroll = 4;
    uint64_t i = threadIdx.x;
    for (; i + (kUnroll - 1) * kThreads < vectors; i += kUnroll * kThreads) {
      uint4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) v[u] = s[i + u * kThreads];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) d[i + u * kThreads] = v[u];
    }
    for (; i < vectors; i += kThreads) d[i] = s[i];
    done = vectors * 16;
  } else if (alignment % 4 == 0) {
    const auto* s = reinterpret_cast<const uint32_t*>(src);
    auto* d = reinterpret_cast<uint32_t*>(dst);
    const uint64_t words = bytes / 4;
    for (uint64_t i = threadIdx.x; i < words; i += kThreads) d[i] = s[i];
    done = words * 4;
  }
  for (uint64_t i = done + threadIdx.x; i < bytes; i += kThreads) dst[i] = src[i];
}

}  // namespace

cudaError_t LaunchPieceCopy(const CopyPiece* pieces, int n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (n > kPiecesPerLaunch) return cudaErrorInvalidValue;
  Pieces p;
  for (int i = 0; i < n; ++i) p.piece[i] = pieces[i];
  PieceCopyKernel<<<n, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvtier::client
