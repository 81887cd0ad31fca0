// NamespaceDescriptor: everything that must match for KV blocks to be reusable.
//
// Blocks of different namespaces never match: the namespace seeds the chained block hash
// (docs/keys.md) and the daemon keeps each namespace's blocks apart. A namespace has one fixed
// block size in bytes. Plain value type; the wire form is proto::NamespaceDescriptor.
#pragma once

#include <cstdint>
#include <string>

namespace kvtier {

struct NamespaceDescriptor {
  std::string model_id;       // e.g. "meta-llama/Llama-3.1-8B-Instruct"
  std::string dtype;          // "bf16", "fp16", "fp8e4m3", "fp8e5m2", ...
  std::string kv_layout;      // engine-defined layout name, e.g. "vllm-nhd"
  uint32_t block_tokens = 0;  // tokens per block, >= 1
  uint32_t tp_rank = 0;
  uint32_t tp_size = 1;
  uint32_t pp_rank = 0;
  uint32_t pp_size = 1;
  std::string tenant_salt;   // raw bytes, at most 64; different salts never share KV
  uint64_t block_bytes = 0;  // bytes of one block of this namespace, >= 1

  friend bool operator==(const NamespaceDescriptor&, const NamespaceDescriptor&) = default;
};

}  // namespace kvtier
