// The main() of the GPU tests (label gpu): runs them where a CUDA device can be used and exits
// 77, which ctest reports as SKIP, where none can (CI, the build machine). An error querying
// the devices is a failure, not a skip.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "kvtier/kernels/cuda_status.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  const std::string name = std::filesystem::path(argv[0]).filename().string();
  const absl::StatusOr<int> devices = kvtier::CudaDeviceCount();
  if (!devices.ok()) {
    std::fprintf(stderr, "%s: cannot query CUDA devices: %s\n", name.c_str(),
                 devices.status().ToString().c_str());
    return 1;
  }
  if (*devices == 0) {
    std::printf("SKIPPED: no CUDA device or driver on this machine; run on a GPU host\n");
    return 77;
  }
  return RUN_ALL_TESTS();
}
