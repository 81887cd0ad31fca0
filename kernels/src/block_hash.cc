#include "kvtier/kernels/block_hash.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "sha256.h"

namespace kvtier {
namespace {

// Domain separation: no other kvtier hash input starts with these 13 bytes, and a chain input
// (32 key bytes, then tokens) cannot be mistaken for a seed input of a different version.
constexpr std::string_view kNamespaceDomain{"kvtier.ns.v1\0", 13};

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutBytes(std::string* out, std::string_view bytes) {
  PutU32(out, static_cast<uint32_t>(bytes.size()));
  out->append(bytes);
}

// Tokens are hashed as u32 little-endian. On little-endian hosts that is their memory image, so
// the span is hashed in place; big-endian hosts byte-swap through a bounded stack buffer.
BlockKey HashBlock(const BlockKey& parent, std::span<const uint32_t> tokens) {
  const std::span<const std::byte> parent_bytes = std::as_bytes(std::span(parent.bytes));
  if constexpr (std::endian::native == std::endian::little) {
    const std::array<std::span<const std::byte>, 2> parts = {parent_bytes, std::as_bytes(tokens)};
    return internal::Sha256(parts);
  } else {
    // Swapped in chunks hashed as consecutive parts of one message; SHA-256 over the parts
    // equals SHA-256 over their concatenation.
    constexpr size_t kChunk = 256;
    std::vector<std::array<uint32_t, kChunk>> buffers((tokens.size() + kChunk - 1) / kChunk);
    std::vector<std::span<const std::byte>> parts = {parent_bytes};
    for (size_t b = 0; b < buffers.size(); ++b) {
      const size_t begin = b * kChunk;
      const size_t n = std::min(kChunk, tokens.size() - begin);
      for (size_t i = 0; i < n; ++i) {
        const uint32_t t = tokens[begin + i];
        buffers[b][i] = (t >> 24) | ((t >> 8) & 0xff00) | ((t << 8) & 0xff0000) | (t << 24);
      }
      parts.push_back(std::as_bytes(std::span(buffers[b].data(), n)));
    }
    return internal::Sha256(parts);
  }
}

}  // namespace

std::string CanonicalNamespaceEncoding(const NamespaceDescriptor& d) {
  std::string out;
  out.reserve(kNamespaceDomain.size() + 3 * 4 + d.model_id.size() + d.dtype.size() +
              d.kv_layout.size() + 5 * 4 + 4 + d.tenant_salt.size() + 8);
  out.append(kNamespaceDomain);
  PutBytes(&out, d.model_id);
  PutBytes(&out, d.dtype);
  PutBytes(&out, d.kv_layout);
  PutU32(&out, d.block_tokens);
  PutU32(&out, d.tp_rank);
  PutU32(&out, d.tp_size == 0 ? 1 : d.tp_size);
  PutU32(&out, d.pp_rank);
  PutU32(&out, d.pp_size == 0 ? 1 : d.pp_size);
  PutBytes(&out, d.tenant_salt);
  PutU64(&out, d.block_bytes);
  return out;
}

BlockKey NamespaceSeed(const NamespaceDescriptor& d) {
  const std::string encoding = CanonicalNamespaceEncoding(d);
  const std::array<std::span<const std::byte>, 1> parts = {
      std::as_bytes(std::span(encoding.data(), encoding.size()))};
  return internal::Sha256(parts);
}

BlockKey ChainBlockKey(const BlockKey& parent, std::span<const uint32_t> block_tokens) {
  return HashBlock(parent, block_tokens);
}

size_t AppendBlockKeys(const BlockKey& parent, std::span<const uint32_t> tokens,
                       uint32_t block_tokens, std::vector<BlockKey>* out) {
  if (block_tokens == 0) return 0;
  const size_t blocks = tokens.size() / block_tokens;
  out->reserve(out->size() + blocks);
  BlockKey key = parent;
  for (size_t i = 0; i < blocks; ++i) {
    key = HashBlock(key, tokens.subspan(i * block_tokens, block_tokens));
    out->push_back(key);
  }
  return blocks;
}

std::vector<BlockKey> HashPrefix(const BlockKey& seed, std::span<const uint32_t> tokens,
                                 uint32_t block_tokens) {
  std::vector<BlockKey> keys;
  AppendBlockKeys(seed, tokens, block_tokens, &keys);
  return keys;
}

std::vector<BlockKey> HashPrefix(const NamespaceDescriptor& ns, std::span<const uint32_t> tokens) {
  return HashPrefix(NamespaceSeed(ns), tokens, ns.block_tokens);
}

size_t ExtendPrefixKeys(const BlockKey& seed, std::span<const uint32_t> tokens,
                        uint32_t block_tokens, std::vector<BlockKey>* keys) {
  if (block_tokens == 0) return 0;
  const size_t done = keys->size();
  if (done > tokens.size() / block_tokens) return 0;
  const BlockKey& parent = done == 0 ? seed : keys->back();
  // Copy the parent: AppendBlockKeys may reallocate *keys, invalidating the reference.
  const BlockKey parent_copy = parent;
  return AppendBlockKeys(parent_copy, tokens.subspan(done * block_tokens), block_tokens, keys);
}

}  // namespace kvtier
