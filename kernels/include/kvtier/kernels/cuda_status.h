// CUDA runtime errors as absl::Status, and device discovery that treats "no GPU" as a normal
// state. Every CUDA runtime call in kvtier goes through KVTIER_CUDA_RETURN_IF_ERROR, and so does
// cudaGetLastError() after every kernel launch (launch errors are only reported there).
//
// Thread safety: all of this is thread-safe (the CUDA runtime is).
#pragma once

#include <cuda_runtime_api.h>

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvtier {

// OK for cudaSuccess. Otherwise a status whose message holds the CUDA error's name and text and
// `context` (the failing expression and where it was called). Codes follow the kvtier
// conventions: cudaErrorMemoryAllocation -> ResourceExhausted (a full tier); no device, an
// insufficient driver or a busy/unavailable device -> Unavailable (retryable elsewhere);
// invalid arguments to the runtime -> InvalidArgument; anything else, including sticky errors
// such as an illegal address that poison the context, -> Internal.
absl::Status CudaErrorToStatus(cudaError_t error, std::string_view context);

// Number of CUDA devices this process can use. 0, not an error, when there is no device or no
// (or too old a) driver, so that callers and tests can turn GPU paths off cleanly. Any other
// runtime failure is returned as an error (see CudaErrorToStatus). Does not block beyond the
// runtime's one-time initialisation.
absl::StatusOr<int> CudaDeviceCount();

}  // namespace kvtier

// Evaluates a cudaError_t expression; if it is not cudaSuccess, returns the corresponding
// absl::Status (naming the expression, file and line) from the enclosing function.
#define KVTIER_CUDA_RETURN_IF_ERROR(expr)                                                        \
  do {                                                                                           \
    const cudaError_t kvtier_cuda_error_ = (expr);                                               \
    if (kvtier_cuda_error_ != cudaSuccess) {                                                     \
      return ::kvtier::CudaErrorToStatus(kvtier_cuda_error_,                                     \
                                         #expr " at " __FILE__ ":" KVTIER_CUDA_LINE_(__LINE__)); \
    }                                                                                            \
  } while (0)
#define KVTIER_CUDA_LINE_(line) KVTIER_CUDA_LINE_INNER_(line)
#define KVTIER_CUDA_LINE_INNER_(line) #line
