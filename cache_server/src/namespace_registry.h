// NamespaceRegistry: the namespaces the daemon has opened, by id and by identity.
//
// A namespace's identity is its key seed (docs/keys.md): SHA-256 over the whole descriptor,
// so two descriptors share an id exactly when every field matches. Ids are small integers,
// never 0, never reused within a registry. With the NVMe tier on, the daemon saves the
// registry (namespace_file.h) and Restore()s it at start, so that the ids under which NVMe
// blocks are stored keep meaning the same namespace across restarts. Bounded: at most
// kMaxNamespaces. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kvtier.pb.h"
#include "kvtier/common/block_key.h"
#include "kvtier/common/namespace_descriptor.h"

namespace kvtier::server {

struct NamespaceInfo {
  uint32_t id = 0;
  NamespaceDescriptor descriptor;
  BlockKey seed;
  proto::NamespaceOptions options;  // fixed by the open that created it
};

class NamespaceRegistry {
 public:
  static constexpr size_t kMaxNamespaces = 4096;

  // Returns the existing namespace with this descriptor or registers a new one with `options`
  // (`*created` says which). kFailedPrecondition when it exists with other options;
  // kResourceExhausted past kMaxNamespaces.
  absl::StatusOr<NamespaceInfo> Open(const NamespaceDescriptor& d,
                                     const proto::NamespaceOptions& options, bool* created);
  // Registers a namespace under a known id (from a saved registry). kAlreadyExists when the id
  // or the descriptor is registered already; kInvalidArgument for id 0. Later Opens hand out
  // ids above every id seen.
  absl::Status Restore(uint32_t id, const NamespaceDescriptor& d,
                       const proto::NamespaceOptions& options = {});
  // Ids of namespaces that exist elsewhere (the NVMe tier's) without a descriptor here: never
  // handed out, so that blocks stored under them cannot surface in a new namespace.
  void ReserveIdsUpTo(uint32_t id);
  std::optional<NamespaceInfo> Get(uint32_t id) const;
  // Sorted by id.
  std::vector<NamespaceInfo> List() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint32_t, NamespaceInfo> by_id_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<BlockKey, uint32_t> by_seed_ ABSL_GUARDED_BY(mu_);
  uint32_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace kvtier::server
