// Canonical, length-limited Huffman codes as docs/format.md ("Encoder rules") prescribes them.
// The CPU encoder and the CUDA kernels both call these functions, which is what makes their
// tables, and therefore their bytes, identical. Device-compatible (KVTIER_HD), no allocation.
#pragma once

#include <cstdint>

#include "format.h"

namespace kvtier::kvz {

// A symbol's sort key: count in the high bits, symbol in the low 8, so that ascending keys are
// ascending (count, symbol) and all keys are distinct. Counts are at most 2^16 (one chunk).
KVTIER_HD constexpr uint32_t SortKey(uint32_t count, int symbol) {
  return (count << 8) | static_cast<uint32_t>(symbol);
}

// Phase 1 of Moffat-Katajainen for `n` >= 2 sorted keys: combines the two lightest nodes n - 1
// times (a leaf wins a tie with an internal node), leaving in parents[i], i < n - 2, the index of
// the internal node that took internal node i; node n - 2 is the root, of weight
// weights[n - 2]. `parents` and `weights` hold n values each. The heads of both queues stay in
// registers (leaf weights read from `keys` one step ahead, internal weights kept in `weights`),
// so a step waits on no memory access of its own: the GPU encoder runs this on one lane while
// the block's other warps wait, and the textbook in-place form's chain of dependent loads and
// stores through shared memory cost a sixth of a chunk's time (docs/compression.md).
KVTIER_HD void HuffmanParents(const uint32_t* keys, int n, uint32_t* parents, uint32_t* weights) {
  constexpr uint32_t kNone = 0xFFFFFFFFu;  // above every weight (counts are at most 2^16)
  auto leaf_weight = [&](int i) { return i < n ? keys[i] >> 8 : kNone; };
  weights[0] = leaf_weight(0) + leaf_weight(1);
  uint32_t leaf_w = leaf_weight(2);  // the next leaf's weight
  uint32_t leaf_after = leaf_weight(3);
  int leaf = 2;
  int root = 0;                  // the next internal node not yet taken
  uint32_t root_w = weights[0];  // its weight (nodes [root, next) exist)
  auto take_leaf = [&]() {
    const uint32_t w = leaf_w;
    ++leaf;
    leaf_w = leaf_after;
    leaf_after = leaf_weight(leaf + 1);
    return w;
  };
  for (int next = 1; next < n - 1; ++next) {
    uint32_t sum;
    // A leaf wins a tie; at least one internal node exists here.
    if (leaf >= n || root_w < leaf_w) {
      sum = root_w;
      parents[root++] = static_cast<uint32_t>(next);
      root_w = root < next ? weights[root] : kNone;
    } else {
      sum = take_leaf();
    }
    if (leaf >= n || (root < next && root_w < leaf_w)) {
      sum += root_w;
      parents[root++] = static_cast<uint32_t>(next);
      root_w = root < next ? weights[root] : kNone;
    } else {
      sum += take_leaf();
    }
    weights[next] = sum;
    if (root == next) root_w = sum;
  }
}

// JPEG Annex K.3 Adjust_BITS on the code counts per length bl_count[0..31] of a Huffman code
// `max_depth` deep: moves the deepest pairs up until nothing is longer than kMaxCodeLength,
// keeping the code complete, and returns the new longest length. A shallower leaf to split
// always exists because at most 256 < 2^kMaxCodeLength symbols are coded.
template <typename Count>
KVTIER_HD int LimitLengths(Count* bl_count, int max_depth) {
  for (int i = max_depth; i > kMaxCodeLength; --i) {
    while (bl_count[i] > 0) {
      int j = i - 2;
      while (j > 0 && bl_count[j] == 0) --j;
      bl_count[i] -= 2;
      bl_count[i - 1] += 1;
      bl_count[j + 1] += 2;
      bl_count[j] -= 1;
    }
  }
  return max_depth > kMaxCodeLength ? kMaxCodeLength : max_depth;
}

// Code lengths for `n` >= 2 present symbols given their sort keys in ascending order: Huffman
// lengths by Moffat-Katajainen, limited to kMaxCodeLength by JPEG's Adjust_BITS, handed out so
// that the least frequent symbols get the longest codes. Sets lengths[symbol] for the n symbols
// (other entries are left alone) and returns the longest length. `work` holds n values.
// REQUIRES: 2 <= n <= 256, keys strictly ascending, counts summing to at most 2^16.
// (The GPU encoder's LengthsFromSortedWarp computes the same lengths with a warp.)
KVTIER_HD int LengthsFromSorted(const uint32_t* keys, int n, uint32_t* work, uint8_t* lengths) {
  uint32_t* a = work;
  uint32_t weights[256];
  HuffmanParents(keys, n, a, weights);
  // Phase 2: internal node depths.
  a[n - 2] = 0;
  for (int next = n - 3; next >= 0; --next) a[next] = a[a[next]] + 1;
  // Phase 3: leaf depths, a[0] deepest.
  int avbl = 1;
  int used = 0;
  uint32_t depth = 0;
  int root = n - 2;
  int next = n - 1;
  while (avbl > 0) {
    while (root >= 0 && a[root] == depth) {
      ++used;
      --root;
    }
    while (avbl > used) {
      a[next--] = depth;
      --avbl;
    }
    avbl = 2 * used;
    ++depth;
    used = 0;
  }
  // Code counts per length. With at most 2^16 occurrences a Huffman code is at most 23 deep
  // (a deeper one needs Fibonacci(26) > 2^16 occurrences), so 32 slots suffice.
  uint16_t bl_count[32] = {};
  int max_depth = 0;
  for (int i = 0; i < n; ++i) {
    const int d = static_cast<int>(a[i]) < 31 ? static_cast<int>(a[i]) : 31;
    ++bl_count[d];
    if (d > max_depth) max_depth = d;
  }
  max_depth = LimitLengths(bl_count, max_depth);
  int pos = 0;
  for (int len = max_depth; len >= 1; --len) {
    for (int k = 0; k < bl_count[len]; ++k) lengths[keys[pos++] & 0xFF] = static_cast<uint8_t>(len);
  }
  return max_depth;
}

// Reverses the low `len` bits of `code`: canonical codes are defined most significant bit
// first, and lanes are written least significant bit first.
KVTIER_HD uint32_t ReverseBits(uint32_t code, int len) {
#if defined(__CUDA_ARCH__)
  return __brev(code) >> (32 - len);
#else
  uint32_t r = 0;
  for (int i = 0; i < len; ++i) r |= ((code >> i) & 1u) << (len - 1 - i);
  return r;
#endif
}

// Canonical codes (RFC 1951 3.2.2) for lengths[256] (0 = absent), already bit-reversed for
// LSB-first emission: codes[s] holds lengths[s] bits. REQUIRES: lengths <= kMaxCodeLength.
KVTIER_HD void CanonicalCodes(const uint8_t* lengths, uint16_t* codes) {
  uint32_t bl_count[kMaxCodeLength + 1] = {};
  for (int s = 0; s < 256; ++s) ++bl_count[lengths[s]];
  bl_count[0] = 0;
  uint32_t next_code[kMaxCodeLength + 1] = {};
  uint32_t code = 0;
  for (int len = 1; len <= kMaxCodeLength; ++len) {
    code = (code + bl_count[len - 1]) << 1;
    next_code[len] = code;
  }
  for (int s = 0; s < 256; ++s) {
    const int len = lengths[s];
    codes[s] = len == 0 ? 0 : static_cast<uint16_t>(ReverseBits(next_code[len]++, len));
  }
}

}  // namespace kvtier::kvz
