// Internal: KVTIER_CODEC_CLONES marks the codec's hot loops to be compiled twice, for baseline
// x86-64 and for x86-64-v3 (AVX2, BMI2: one-instruction variable shifts, wider vectors), with
// the loader picking the best at start-up (GCC function multi-versioning through an ifunc).
// kvtier is built for baseline x86-64, which would otherwise leave every shift-by-register at
// three micro-ops in the Huffman lanes. Elsewhere (clang, sanitizer builds, other CPUs) it is
// empty and the loops are compiled once.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define KVTIER_CODEC_CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
#else
#define KVTIER_CODEC_CLONES
#endif
