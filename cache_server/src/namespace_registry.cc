#include "namespace_registry.h"

#include "absl/strings/str_cat.h"
#include "kvtier/kernels/block_hash.h"

namespace kvtier::server {

absl::StatusOr<NamespaceInfo> NamespaceRegistry::Open(const NamespaceDescriptor& d, bool* created) {
  const BlockKey seed = NamespaceSeed(d);
  absl::MutexLock lock(&mu_);
  if (auto it = by_seed_.find(seed); it != by_seed_.end()) {
    *created = false;
    return by_id_[it->second - 1];
  }
  if (by_id_.size() >= kMaxNamespaces) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the daemon has ", kMaxNamespaces,
        " namespaces open already; reuse descriptors (model, dtype, layout, ranks, salt)"));
  }
  NamespaceInfo info{static_cast<uint32_t>(by_id_.size() + 1), d, seed};
  by_id_.push_back(info);
  by_seed_.emplace(seed, info.id);
  *created = true;
  return info;
}

std::optional<NamespaceInfo> NamespaceRegistry::Get(uint32_t id) const {
  absl::MutexLock lock(&mu_);
  if (id == 0 || id > by_id_.size()) return std::nullopt;
  return by_id_[id - 1];
}

std::vector<NamespaceInfo> NamespaceRegistry::List() const {
  absl::MutexLock lock(&mu_);
  return by_id_;
}

}  // namespace kvtier::server
