// HugePageMap: the tiers' key indexes, a flat_hash_map whose slot arrays live on huge pages
// (kvtier/common/huge_page_allocator.h). Each lookup of a million-block index touches a random
// page; on 2 MiB pages that page's translation is far more often already cached.
#pragma once

#include <functional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "kvtier/common/huge_page_allocator.h"

namespace kvtier::tiers::internal {

template <typename K, typename V>
using HugePageMap = absl::flat_hash_map<K, V, absl::Hash<K>, std::equal_to<K>,
                                        HugePageAllocator<std::pair<const K, V>>>;

}  // namespace kvtier::tiers::internal
