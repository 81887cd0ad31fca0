// The kvz v1 frame layout (docs/format.md) as constants and bit-level helpers. Shared by the CPU
// codec and the CUDA kernels, so it is plain C++17 with no Abseil and every function is usable
// on the device (KVTIER_HD).
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define KVTIER_HD __host__ __device__ __forceinline__
#else
#define KVTIER_HD inline
#endif
// Lets the GPU keep several iterations' loads in flight; the CPU compilers decide themselves.
#if defined(__CUDA_ARCH__)
#define KVTIER_UNROLL4 _Pragma("unroll 4")
#else
#define KVTIER_UNROLL4
#endif

namespace kvtier::kvz {

inline constexpr uint8_t kMagic[4] = {0x89, 'K', 'V', 'Z'};
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderBytes = 32;
inline constexpr size_t kDirEntryBytes = 8;
inline constexpr int kLanesLog2 = 5;
inline constexpr int kLanes = 1 << kLanesLog2;
inline constexpr int kMaxCodeLength = 11;
inline constexpr int kMinChunkLog2 = 10;
inline constexpr int kMaxChunkLog2 = 16;
inline constexpr int kDefaultChunkLog2 = 14;
// Original bytes per frame; keeps every payload offset in a u32.
inline constexpr uint64_t kMaxFrameInputBytes = uint64_t{1} << 31;

// Byte 0 of a coded chunk body.
inline constexpr uint8_t kKindHuffman = 1;
inline constexpr uint8_t kKindConstant = 2;

// A Huffman body: 4-byte prefix, lane-size table, raw plane, nibbles, lanes. The raw plane sits
// at a fixed offset so that an encoder can write it while splitting, before it knows the table.
inline constexpr size_t kHuffmanPrefixBytes = 4;
inline constexpr size_t kLaneTableBytes = 2 * kLanes;
inline constexpr size_t kHuffmanRawOffset = kHuffmanPrefixBytes + kLaneTableBytes;
// A constant body: 4-byte prefix, raw plane.
inline constexpr size_t kConstantRawOffset = 4;

// Values of the header's dtype byte; the public KvDtype enum uses the same numbers.
inline constexpr uint8_t kDtypeRaw = 0;
inline constexpr uint8_t kDtypeBf16 = 1;
inline constexpr uint8_t kDtypeFp16 = 2;
inline constexpr uint8_t kDtypeFp8E4M3 = 3;
inline constexpr uint8_t kDtypeFp8E5M2 = 4;
inline constexpr uint8_t kNumDtypes = 5;

KVTIER_HD constexpr size_t RoundUp4(size_t x) { return (x + 3) & ~size_t{3}; }

// Bytes per element: 2 for the 16-bit floats, 1 otherwise.
KVTIER_HD constexpr int ElementBytes(uint8_t dtype) {
  return (dtype == kDtypeBf16 || dtype == kDtypeFp16) ? 2 : 1;
}
// Raw-plane bytes per element: the 16-bit floats keep sign and 7 mantissa bits raw; the 1-byte
// types code the whole byte.
KVTIER_HD constexpr int RawBytesPerElement(uint8_t dtype) { return ElementBytes(dtype) - 1; }

// 16-bit split (bf16 and fp16 alike): coded = bits 7..14, raw = sign << 7 | bits 0..6.
KVTIER_HD constexpr uint8_t CodedByte16(uint16_t x) { return static_cast<uint8_t>(x >> 7); }
KVTIER_HD constexpr uint8_t RawByte16(uint16_t x) {
  return static_cast<uint8_t>(((x >> 8) & 0x80) | (x & 0x7F));
}
KVTIER_HD constexpr uint16_t Join16(uint8_t coded, uint8_t raw) {
  return static_cast<uint16_t>(((raw & 0x80) << 8) | (coded << 7) | (raw & 0x7F));
}

// Number of symbols lane `lane` holds in a chunk of n elements.
KVTIER_HD constexpr uint32_t LaneSymbols(uint32_t n, int lane) {
  return (n + kLanes - 1 - lane) / kLanes;
}

// Bytes of the code-length nibbles for symbols min..max, padded to 4.
KVTIER_HD constexpr size_t NibbleBytes(int min_symbol, int max_symbol) {
  return RoundUp4((static_cast<size_t>(max_symbol - min_symbol) + 2) / 2);
}

// Little-endian stores and loads, byte by byte so they work at any alignment on any target.
KVTIER_HD void StoreLe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}
KVTIER_HD void StoreLe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
KVTIER_HD void StoreLe64(uint8_t* p, uint64_t v) {
  StoreLe32(p, static_cast<uint32_t>(v));
  StoreLe32(p + 4, static_cast<uint32_t>(v >> 32));
}
KVTIER_HD uint16_t LoadLe16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
KVTIER_HD uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
KVTIER_HD uint64_t LoadLe64(const uint8_t* p) {
  return uint64_t{LoadLe32(p)} | uint64_t{LoadLe32(p + 4)} << 32;
}

}  // namespace kvtier::kvz
