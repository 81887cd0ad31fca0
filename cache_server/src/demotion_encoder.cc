#include "demotion_encoder.h"

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#if KVTIER_HAVE_CUDA
#include "kvtier/compression/gpu_batch_encoder.h"
#endif

namespace kvtier::server {
namespace {

absl::StatusOr<std::unique_ptr<BatchEncoder>> NewGpuEncoder() {
#if KVTIER_HAVE_CUDA
  return NewGpuBatchEncoder();
#else
  return absl::UnavailableError("this kvtierd was built without CUDA");
#endif
}

}  // namespace

absl::StatusOr<std::shared_ptr<BatchEncoder>> NewDemotionEncoder(std::string_view kind,
                                                                 int cpu_threads) {
  if (kind == "cpu") return std::shared_ptr<BatchEncoder>(NewCpuBatchEncoder(cpu_threads));
  absl::StatusOr<std::unique_ptr<BatchEncoder>> gpu = NewGpuEncoder();
  if (gpu.ok()) return std::shared_ptr<BatchEncoder>(std::move(*gpu));
  if (kind == "gpu") {
    return absl::FailedPreconditionError(
        absl::StrCat("nvme.demotion_encoder = \"gpu\", but the GPU cannot be used (",
                     gpu.status().ToString(), "); set it to \"auto\" or \"cpu\""));
  }
  spdlog::info("demotion encoder: no GPU ({}), using the CPU codec", gpu.status().ToString());
  return std::shared_ptr<BatchEncoder>(NewCpuBatchEncoder(cpu_threads));
}

}  // namespace kvtier::server
