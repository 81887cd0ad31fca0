// Little-endian and big-endian loads and stores for the on-flash and index encodings, which must
// not depend on the host's byte order. Big-endian is used where byte order must sort
// numerically (RocksDB keys).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kvtier::tiers::nvme {

template <typename T>
inline void StoreLe(std::byte* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
template <typename T>
inline T LoadLe(const std::byte* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
template <typename T>
inline void StoreBe(std::byte* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    p[i] = static_cast<std::byte>(v >> (8 * (sizeof(T) - 1 - i)));
  }
}
template <typename T>
inline T LoadBe(const std::byte* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

inline void StoreLe16(std::byte* p, uint16_t v) { StoreLe(p, v); }
inline void StoreLe32(std::byte* p, uint32_t v) { StoreLe(p, v); }
inline void StoreLe64(std::byte* p, uint64_t v) { StoreLe(p, v); }
inline uint16_t LoadLe16(const std::byte* p) { return LoadLe<uint16_t>(p); }
inline uint32_t LoadLe32(const std::byte* p) { return LoadLe<uint32_t>(p); }
inline uint64_t LoadLe64(const std::byte* p) { return LoadLe<uint64_t>(p); }

}  // namespace kvtier::tiers::nvme
