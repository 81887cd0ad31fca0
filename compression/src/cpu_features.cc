#include "cpu_features.h"

#include <cstdlib>

namespace kvtier::kvz {
namespace {

bool Portable() { return std::getenv(kPortableEnv) != nullptr; }

}  // namespace

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
bool CpuHasAvx2() {
  static const bool has =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") && !Portable();
  return has;
}
bool CpuHasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw") && !Portable();
  return has;
}
#else
bool CpuHasAvx2() { return false; }
bool CpuHasAvx512() { return false; }
#endif

}  // namespace kvtier::kvz
