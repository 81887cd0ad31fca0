#include "namespace_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kvtier/kernels/block_hash.h"

namespace kvtier::server {

absl::StatusOr<NamespaceInfo> NamespaceRegistry::Open(const NamespaceDescriptor& d,
                                                      const proto::NamespaceOptions& options,
                                                      bool* created) {
  const BlockKey seed = NamespaceSeed(d);
  absl::MutexLock lock(&mu_);
  if (auto it = by_seed_.find(seed); it != by_seed_.end()) {
    *created = false;
    const NamespaceInfo& info = by_id_.at(it->second);
    if (info.options.compression() != options.compression()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "namespace ", info.id, " is open with compression ",
          proto::Compression_Name(info.options.compression()), ", not ",
          proto::Compression_Name(options.compression()),
          "; a namespace's options are fixed when it is created: open it with the same options, "
          "or change the descriptor (e.g. the tenant salt) for a new namespace"));
    }
    return info;
  }
  if (by_id_.size() >= kMaxNamespaces) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the daemon has ", kMaxNamespaces,
        " namespaces open already; reuse descriptors (model, dtype, layout, ranks, salt)"));
  }
  NamespaceInfo info{next_id_++, d, seed, options};
  by_id_.emplace(info.id, info);
  by_seed_.emplace(seed, info.id);
  *created = true;
  return info;
}

absl::Status NamespaceRegistry::Restore(uint32_t id, const NamespaceDescriptor& d,
                                        const proto::NamespaceOptions& options) {
  if (id == 0) return absl::InvalidArgumentError("namespace id 0 is reserved");
  const BlockKey seed = NamespaceSeed(d);
  absl::MutexLock lock(&mu_);
  if (by_id_.contains(id) || by_seed_.contains(seed)) {
    return absl::AlreadyExistsError(
        absl::StrCat("namespace id ", id, " or its descriptor is registered twice"));
  }
  if (by_id_.size() >= kMaxNamespaces) {
    return absl::ResourceExhaustedError(absl::StrCat("more than ", kMaxNamespaces, " namespaces"));
  }
  by_id_.emplace(id, NamespaceInfo{id, d, seed, options});
  by_seed_.emplace(seed, id);
  next_id_ = std::max(next_id_, id + 1);
  return absl::OkStatus();
}

void NamespaceRegistry::ReserveIdsUpTo(uint32_t id) {
  absl::MutexLock lock(&mu_);
  next_id_ = std::max(next_id_, id + 1);
}

std::optional<NamespaceInfo> NamespaceRegistry::Get(uint32_t id) const {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  return it->second;
}

std::vector<NamespaceInfo> NamespaceRegistry::List() const {
  std::vector<NamespaceInfo> out;
  {
    absl::MutexLock lock(&mu_);
    out.reserve(by_id_.size());
    for (const auto& [id, info] : by_id_) out.push_back(info);
  }
  std::sort(out.begin(), out.end(),
            [](const NamespaceInfo& a, const NamespaceInfo& b) { return a.id < b.id; });
  return out;
}

}  // namespace kvtier::server
