// Synthetic KV-cache tensors for tests and benchmarks, modelled on what is published about real
// KV caches (no pretrained weights can be downloaded where kvtier is built and tested):
//
// - per-channel scales spread over orders of magnitude: keys' channels differ by up to ~100x in
//   magnitude and keep their scale across tokens (KIVI, KVQuant: "per-channel outliers");
// - a few outlier channels per head with much larger values (and a non-zero mean);
// - RoPE-rotated keys: channel pairs (2i, 2i+1) rotated by position * 10000^(-2i/head_dim);
// - correlation along tokens: an AR(1) process per channel (neighbouring tokens look alike);
// - values: smaller channel spread, per-token magnitude variation, no RoPE.
// The result is quantised to bf16 / fp16 (round to nearest even), fp8 e4m3 / e5m2 (per-tensor
// scale to the format's range, saturating, as fp8 KV caches do) or, for raw, symmetric int8.
// Layout [token][head][dim].
// docs/compression.md describes the data and what the codec achieves on it.
//
// Thread safety: pure functions of their arguments. Deterministic for a given seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kvtier/compression/kv_codec.h"

namespace kvtier::testing {

struct KvLikeOptions {
  KvDtype dtype = KvDtype::kBf16;  // bf16, fp16, fp8e4m3, fp8e5m2, or raw (int8)
  bool keys = true;                // keys (RoPE, outlier channels) or values
  int tokens = 256;
  int heads = 8;
  int head_dim = 128;
  uint64_t seed = 1;
  double channel_decades = 2.0;    // log10 spread of key channel scales (values: half)
  int outlier_channels = 2;        // per head, keys only
  double outlier_scale = 20.0;     // outlier channel magnitude relative to the largest normal
  double token_correlation = 0.9;  // AR(1) coefficient along tokens
  double magnitude = 1.0;          // overall scale of the tensor (before fp8 rescaling)
};

// tokens * heads * head_dim elements of `dtype`, little-endian.
std::vector<std::byte> GenerateKvLike(const KvLikeOptions& options);

// A [layers][2][tokens][heads][dim] cache (K then V per layer; each layer with its own seed and
// magnitude), i.e. what one block of a paged KV cache holds for all layers.
std::vector<std::byte> GenerateKvBlock(KvDtype dtype, int layers, int tokens, int heads,
                                       int head_dim, uint64_t seed);

// Conversions used by the generator (exposed for tests): round to nearest even; fp8 saturates
// to the largest finite value, fp16 overflows to infinity.
uint16_t FloatToBf16(float f);
uint16_t FloatToFp16(float f);
uint8_t FloatToFp8(float f, KvDtype fp8_dtype);
float Fp8ToFloat(uint8_t v, KvDtype fp8_dtype);

}  // namespace kvtier::testing
