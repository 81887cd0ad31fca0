// Backend: one connection to a key-value store, as the throughput mode drives it, so kvtier,
// Redis and memcached are measured by the same loop, the same keys and the same bytes.
//
// A batch goes to the store in the store's natural batched form: kvtier one Put/Get request
// per batch (shared arena over a Unix socket, inline frames over TCP); Redis one MSET / MGET
// per batch (one round trip); memcached one multi-get per batch and one set per block
// (libmemcached has no multi-set; the sets of a batch are sent back to back). Bytes land in
// the caller's buffers in every case. One Backend per thread: not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "kvtier/common/block_key.h"

namespace kvtier::bench {

class Backend {
 public:
  virtual ~Backend() = default;
  // Stores blocks[i] under keys[i]; returns how many the store accepted (for kvtier, stored
  // or already present). Errors: the request as a whole failed (connection lost, ...).
  virtual absl::StatusOr<size_t> Put(std::span<const BlockKey> keys,
                                     std::span<const std::span<const std::byte>> blocks) = 0;
  // Reads keys[i] into out[i]; returns the number of hits. A hit whose stored length differs
  // from out[i].size() counts as a miss.
  virtual absl::StatusOr<size_t> Get(std::span<const BlockKey> keys,
                                     std::span<const std::span<std::byte>> out) = 0;
  // How bytes travel, for reports: "shared-arena", "inline-unix", "inline-tcp", "tcp".
  virtual std::string transport() const = 0;
};

struct BackendOptions {
  std::string kind = "kvtier";  // kvtier | redis | memcached
  std::string uri;              // kvtier: client URI; redis/memcached: tcp://host:port
  std::string auth_token;       // kvtier only
  uint64_t block_bytes = 0;
};

// Whether this binary was built with the Redis / memcached client libraries.
bool BackendAvailable(const std::string& kind);

// Opens one connection. InvalidArgument for an unknown or unavailable kind; Unavailable when
// the store cannot be reached.
absl::StatusOr<std::unique_ptr<Backend>> OpenBackend(const BackendOptions& options);

// Per-kind constructors, defined in their own files.
absl::StatusOr<std::unique_ptr<Backend>> OpenKvtierBackend(const BackendOptions& options);
absl::StatusOr<std::unique_ptr<Backend>> OpenRedisBackend(const BackendOptions& options);
absl::StatusOr<std::unique_ptr<Backend>> OpenMemcachedBackend(const BackendOptions& options);

}  // namespace kvtier::bench
