// The daemon's choice of demotion encoder (config: nvme.demotion_encoder): the kvz CUDA codec
// on the daemon's GPU, or the CPU codec. Both write the same bytes, so the choice only moves
// the work (docs/compression.md, "In kvtierd").
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "kvtier/compression/batch_encoder.h"

namespace kvtier::server {

// `kind` "cpu": the CPU codec on `cpu_threads` threads. "gpu": the GPU batch encoder;
// FailedPrecondition when this build has no CUDA or the machine no usable GPU, saying so.
// "auto": the GPU's when there is one, else the CPU's (the reason is logged).
absl::StatusOr<std::shared_ptr<BatchEncoder>> NewDemotionEncoder(std::string_view kind,
                                                                 int cpu_threads);

}  // namespace kvtier::server
