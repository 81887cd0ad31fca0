#include "kvtier/kernels/cuda_status.h"

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"

namespace kvtier {

absl::Status CudaErrorToStatus(cudaError_t error, std::string_view context) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string message = absl::StrCat(cudaGetErrorName(error), " (", cudaGetErrorString(error),
                                           "): ", AbslView(context));
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorLaunchTimeout:
      return absl::UnavailableError(message);
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevice:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidResourceHandle:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver) {
    // Not sticky: clear it so that a later unrelated cudaGetLastError() does not report it.
    (void)cudaGetLastError();
    return 0;
  }
  KVTIER_CUDA_RETURN_IF_ERROR(error);
  return count;
}

}  // namespace kvtier
