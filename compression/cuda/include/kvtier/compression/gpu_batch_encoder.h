// The GPU BatchEncoder (batch_encoder.h): host blocks are packed into pinned memory a group at a
// time, copied to the GPU, encoded there by GpuCodec, and the frames copied back; two groups are
// in flight, so the transfers and kernels of one overlap the host's packing and unpacking of the
// others. Its frames are the CPU codec's bytes.
//
// It is kvtierd's demotion encoder when the machine has a GPU ([nvme] demotion_encoder): the
// daemon's cores stay free for requests, and one thread encodes what several would on the CPU
// (docs/compression.md, "In kvtierd"; bench_demotion_encoder).
//
// Resources: two CUDA streams, GpuCodec workspaces (per stream and per CodecOptions seen), and
// pinned and device staging of about four times the largest group (grown on demand).
#pragma once

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "kvtier/compression/batch_encoder.h"

namespace kvtier {

struct GpuBatchEncoderOptions {
  // Input bytes per group (a larger block makes a group of its own). Default 4 MiB: small
  // enough that a 32 MiB demotion batch keeps both groups in flight busy.
  size_t group_bytes = size_t{4} << 20;
};

// An encoder on the current CUDA device. Unavailable when there is none (or the driver cannot
// be used); other CUDA errors as CudaErrorToStatus.
absl::StatusOr<std::unique_ptr<BatchEncoder>> NewGpuBatchEncoder(
    const GpuBatchEncoderOptions& options = {});

}  // namespace kvtier
