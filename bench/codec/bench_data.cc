#include "bench_data.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <random>

#include "kv_like_data.h"

namespace kvtier::bench {

std::vector<Dataset> StandardDatasets(size_t target_bytes) {
  constexpr int kTokens = 256, kHeads = 8, kDim = 128;
  std::vector<Dataset> out;
  for (KvDtype dtype : {KvDtype::kBf16, KvDtype::kFp16, KvDtype::kFp8E4M3, KvDtype::kFp8E5M2}) {
    const size_t per_layer = 2 * size_t{kTokens} * kHeads * kDim * KvDtypeBytes(dtype);
    const int layers = static_cast<int>(std::max<size_t>(1, target_bytes / per_layer));
    out.push_back({std::string(KvDtypeName(dtype)) + " kv-like", dtype,
                   testing::GenerateKvBlock(dtype, layers, kTokens, kHeads, kDim, 7)});
  }
  Dataset random{"bf16 random bits", KvDtype::kBf16, std::vector<std::byte>(target_bytes)};
  std::mt19937_64 rng(3);
  for (size_t i = 0; i + 8 <= random.bytes.size(); i += 8) {
    const uint64_t v = rng();
    for (int k = 0; k < 8; ++k) random.bytes[i + k] = static_cast<std::byte>(v >> (8 * k));
  }
  out.push_back(std::move(random));
  return out;
}

absl::StatusOr<Dataset> FileDataset(const std::string& dtype_name, const std::string& path,
                                    size_t max_bytes) {
  absl::StatusOr<KvDtype> dtype = ParseKvDtype(dtype_name);
  if (!dtype.ok()) return dtype.status();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t eb = KvDtypeBytes(*dtype);
  const size_t n = std::min(bytes.size(), max_bytes) / eb * eb;
  if (n == 0) return absl::InvalidArgumentError(path + " holds no whole element");
  Dataset d{path.substr(path.find_last_of('/') + 1), *dtype, std::vector<std::byte>(n)};
  std::copy_n(reinterpret_cast<const std::byte*>(bytes.data()), n, d.bytes.begin());
  return d;
}

double Order0Bound(const Dataset& d, int chunk_log2) {
  const size_t eb = KvDtypeBytes(d.dtype);
  const size_t n = d.bytes.size() / eb;
  const size_t chunk = size_t{1} << chunk_log2;
  double bits = 0;
  for (size_t first = 0; first < n; first += chunk) {
    const size_t m = std::min(chunk, n - first);
    uint32_t hist[256] = {};
    for (size_t i = first; i < first + m; ++i) {
      uint8_t coded;
      if (eb == 2) {
        const auto lo = static_cast<uint16_t>(d.bytes[2 * i]);
        const auto hi = static_cast<uint16_t>(d.bytes[2 * i + 1]);
        coded = static_cast<uint8_t>((lo | hi << 8) >> 7);
      } else {
        coded = static_cast<uint8_t>(d.bytes[i]);
      }
      ++hist[coded];
    }
    for (uint32_t h : hist) {
      if (h > 0) bits -= h * std::log2(static_cast<double>(h) / m);
    }
    bits += 8.0 * m * (eb - 1);  // raw bytes
  }
  return bits == 0 ? 0 : 8.0 * d.bytes.size() / bits;
}

}  // namespace kvtier::bench
