// Internal: which of the codec's x86 vector paths this process runs. Each is decided once, from
// the CPU and the environment: set KVTIER_KVZ_PORTABLE (to anything) to keep the codec on its
// portable paths on every CPU. The tests run once with it and once without, so that both paths
// are exercised on a CPU that has the vector ones.
#pragma once

namespace kvtier::kvz {

inline constexpr char kPortableEnv[] = "KVTIER_KVZ_PORTABLE";

// x86-64 with AVX2 and BMI2: lane_decoder_avx2.h.
bool CpuHasAvx2();
// x86-64 with AVX-512 F, DQ, VL and BW: slice_digests_avx512.h, symbol_count_avx512.h.
bool CpuHasAvx512();

}  // namespace kvtier::kvz
