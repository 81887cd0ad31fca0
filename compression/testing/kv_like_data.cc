#include "kv_like_data.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>

namespace kvtier::testing {
namespace {

uint32_t Bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}

// The 128 non-negative finite values of an fp8 format (index = code), NaN codes as -1.
std::array<float, 128> Fp8Table(KvDtype dtype) {
  std::array<float, 128> t{};
  const bool e4 = dtype == KvDtype::kFp8E4M3;
  const int mbits = e4 ? 3 : 2;
  const int bias = e4 ? 7 : 15;
  for (int c = 0; c < 128; ++c) {
    const int e = c >> mbits;
    const int m = c & ((1 << mbits) - 1);
    const bool nan = e4 ? (c == 0x7F) : (e == 31);  // e4m3fn: only S.1111.111; e5m2: IEEE-like
    if (nan) {
      t[c] = -1;
    } else if (e == 0) {
      t[c] = std::ldexp(static_cast<float>(m), 1 - bias - mbits);
    } else {
      t[c] = std::ldexp(static_cast<float>((1 << mbits) + m), e - bias - mbits);
    }
  }
  return t;
}

}  // namespace

uint16_t FloatToBf16(float f) {
  const uint32_t x = Bits(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

uint16_t FloatToFp16(float f) {
  uint32_t x = Bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  x &= 0x7FFFFFFF;
  if (x >= 0x7F800000) return sign | (x > 0x7F800000 ? 0x7E00 : 0x7C00);
  if (x >= 0x477FF000) return sign | 0x7C00;  // rounds to above 65504
  if (x < 0x38800000) {                       // below 2^-14: fp16 subnormal (or zero)
    return sign | static_cast<uint16_t>(std::nearbyint(std::fabs(f) * 16777216.0f));
  }
  x += 0xC8000FFFu + ((x >> 13) & 1);  // rebias 127 -> 15 and round to nearest even
  return sign | static_cast<uint16_t>(x >> 13);
}

uint8_t FloatToFp8(float f, KvDtype dtype) {
  static const std::array<float, 128> e4 = Fp8Table(KvDtype::kFp8E4M3);
  static const std::array<float, 128> e5 = Fp8Table(KvDtype::kFp8E5M2);
  const std::array<float, 128>& t = dtype == KvDtype::kFp8E4M3 ? e4 : e5;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const float a = std::fabs(f);
  const int max_code = dtype == KvDtype::kFp8E4M3 ? 0x7E : 0x7B;  // largest finite
  if (std::isnan(f)) return sign | 0x7F;
  if (a >= t[max_code]) return sign | static_cast<uint8_t>(max_code);
  // Values are increasing in the code; find the neighbours and round to nearest, ties to even.
  int hi = static_cast<int>(std::upper_bound(t.begin(), t.begin() + max_code + 1, a) - t.begin());
  const int lo = hi - 1;
  const float dlo = a - t[lo];
  const float dhi = t[hi] - a;
  const int code = (dlo < dhi || (dlo == dhi && (lo & 1) == 0)) ? lo : hi;
  return sign | static_cast<uint8_t>(code);
}

float Fp8ToFloat(uint8_t v, KvDtype dtype) {
  static const std::array<float, 128> e4 = Fp8Table(KvDtype::kFp8E4M3);
  static const std::array<float, 128> e5 = Fp8Table(KvDtype::kFp8E5M2);
  const float a = (dtype == KvDtype::kFp8E4M3 ? e4 : e5)[v & 0x7F];
  if (a < 0) return std::nanf("");
  return (v & 0x80) ? -a : a;
}

std::vector<std::byte> GenerateKvLike(const KvLikeOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const int channels = o.heads * o.head_dim;
  const double decades = o.keys ? o.channel_decades : o.channel_decades / 2;

  std::vector<float> scale(channels), mean(channels);
  for (int h = 0; h < o.heads; ++h) {
    for (int d = 0; d < o.head_dim; ++d) {
      const int c = h * o.head_dim + d;
      scale[c] = static_cast<float>(std::pow(10.0, decades * (uniform(rng) - 0.5)));
      mean[c] = o.keys ? 0.3f * normal(rng) : 0.0f;
    }
    if (o.keys) {
      const float top = static_cast<float>(std::pow(10.0, decades / 2));
      for (int k = 0; k < o.outlier_channels; ++k) {
        const int c = h * o.head_dim + static_cast<int>(rng() % o.head_dim);
        scale[c] = top * static_cast<float>(o.outlier_scale) * (0.5f + 0.5f * normal(rng) * 0.2f);
        mean[c] = 2.0f * (rng() % 2 ? 1 : -1);
      }
    }
  }

  const float rho = static_cast<float>(o.token_correlation);
  const float innovation = std::sqrt(1.0f - rho * rho);
  std::vector<float> z(channels);
  for (float& v : z) v = normal(rng);
  std::vector<float> x(static_cast<size_t>(o.tokens) * channels);
  for (int t = 0; t < o.tokens; ++t) {
    // Values vary in magnitude from token to token; keys much less.
    const float token_gain = o.keys ? 1.0f : static_cast<float>(std::exp(0.5 * normal(rng)));
    for (int c = 0; c < channels; ++c) {
      z[c] = rho * z[c] + innovation * normal(rng);
      x[static_cast<size_t>(t) * channels + c] =
          static_cast<float>(o.magnitude) * token_gain * scale[c] * (mean[c] + z[c]);
    }
    if (o.keys) {
      for (int h = 0; h < o.heads; ++h) {
        float* row = &x[static_cast<size_t>(t) * channels + h * o.head_dim];
        for (int i = 0; i + 1 < o.head_dim; i += 2) {
          const double theta = t * std::pow(10000.0, -static_cast<double>(i) / o.head_dim);
          const float cs = static_cast<float>(std::cos(theta));
          const float sn = static_cast<float>(std::sin(theta));
          const float a = row[i];
          const float b = row[i + 1];
          row[i] = a * cs - b * sn;
          row[i + 1] = a * sn + b * cs;
        }
      }
    }
  }

  const size_t elements = x.size();
  std::vector<std::byte> out(elements * KvDtypeBytes(o.dtype));
  if (o.dtype == KvDtype::kBf16 || o.dtype == KvDtype::kFp16) {
    for (size_t i = 0; i < elements; ++i) {
      const uint16_t v = o.dtype == KvDtype::kBf16 ? FloatToBf16(x[i]) : FloatToFp16(x[i]);
      std::memcpy(&out[2 * i], &v, 2);
    }
  } else {
    float max_abs = 0;
    for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
    // raw: symmetric int8 quantisation, the common non-float KV format.
    const float range = o.dtype == KvDtype::kFp8E4M3   ? 448.0f
                        : o.dtype == KvDtype::kFp8E5M2 ? 57344.0f
                                                       : 127.0f;
    const float s = max_abs > 0 ? range / max_abs : 1.0f;
    for (size_t i = 0; i < elements; ++i) {
      out[i] = static_cast<std::byte>(
          o.dtype == KvDtype::kRaw
              ? static_cast<uint8_t>(static_cast<int8_t>(std::nearbyint(x[i] * s)))
              : FloatToFp8(x[i] * s, o.dtype));
    }
  }
  return out;
}

std::vector<std::byte> GenerateKvBlock(KvDtype dtype, int layers, int tokens, int heads,
                                       int head_dim, uint64_t seed) {
  std::vector<std::byte> block;
  std::mt19937_64 rng(seed);
  for (int l = 0; l < layers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      KvLikeOptions o;
      o.dtype = dtype;
      o.keys = kv == 0;
      o.tokens = tokens;
      o.heads = heads;
      o.head_dim = head_dim;
      o.seed = rng();
      // Deeper layers have larger activations; spread the layers over ~1.5 decades.
      o.magnitude = std::pow(10.0, -0.5 + 1.5 * l / std::max(1, layers - 1));
      const std::vector<std::byte> part = GenerateKvLike(o);
      block.insert(block.end(), part.begin(), part.end());
    }
  }
  return block;
}

}  // namespace kvtier::testing
