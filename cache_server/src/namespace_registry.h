// NamespaceRegistry: the namespaces the daemon has opened, by id and by identity.
//
// A namespace's identity is its key seed (docs/keys.md): SHA-256 over the whole descriptor,
// so two descriptors share an id exactly when every field matches. Ids are small integers
// valid for the life of the process. Bounded: at most kMaxNamespaces. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kvtier/common/block_key.h"
#include "kvtier/common/namespace_descriptor.h"

namespace kvtier::server {

struct NamespaceInfo {
  uint32_t id = 0;
  NamespaceDescriptor descriptor;
  BlockKey seed;
};

class NamespaceRegistry {
 public:
  static constexpr size_t kMaxNamespaces = 4096;

  // Returns the existing namespace with this descriptor or registers a new one (`*created`
  // says which). kResourceExhausted past kMaxNamespaces.
  absl::StatusOr<NamespaceInfo> Open(const NamespaceDescriptor& d, bool* created);
  std::optional<NamespaceInfo> Get(uint32_t id) const;
  std::vector<NamespaceInfo> List() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<NamespaceInfo> by_id_ ABSL_GUARDED_BY(mu_);  // index = id - 1
  absl::flat_hash_map<BlockKey, uint32_t> by_seed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvtier::server
