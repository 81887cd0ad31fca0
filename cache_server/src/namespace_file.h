// The namespace file: the registry's ids and descriptors, saved so that NVMe blocks (stored
// under namespace ids) are found under the same namespace after a restart.
//
// Layout: "KVTNSv01" (8 bytes), payload length (u32 LE), XXH64 of the payload (u64 LE, seed
// 0; libxxhash), payload = proto::PersistedNamespaces. Saved atomically: written to a
// temporary file, fsynced, renamed over the old one, and the directory fsynced, so a crash
// leaves either the old file or the new one.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "namespace_registry.h"

namespace kvtier::server {

// kNotFound when the file does not exist; kDataLoss (naming the file and what is wrong) when
// it is damaged; kUnavailable for I/O errors.
absl::StatusOr<std::vector<NamespaceInfo>> LoadNamespaceFile(const std::string& path);

// Replaces the file with `namespaces` (ids and descriptors; seeds are recomputed on load).
absl::Status SaveNamespaceFile(const std::string& path,
                               const std::vector<NamespaceInfo>& namespaces);

}  // namespace kvtier::server
