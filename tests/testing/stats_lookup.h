// Finding one tier's or one namespace's entry in a kvtierd StatsReply, for tests. Test-only.
#pragma once

#include <cstdint>

#include "kvtier.pb.h"

namespace kvtier::testing {

// The reply's entry for `tier`, or null when the daemon does not run that tier.
inline const proto::TierStats* FindTierStats(const proto::StatsReply& stats, proto::Tier tier) {
  for (const proto::TierStats& t : stats.tiers()) {
    if (t.tier() == tier) return &t;
  }
  return nullptr;
}

// The reply's entry for namespace `id`, or null when it is not open.
inline const proto::NamespaceStats* FindNamespaceStats(const proto::StatsReply& stats,
                                                       uint32_t id) {
  for (const proto::NamespaceStats& n : stats.namespaces()) {
    if (n.namespace_id() == id) return &n;
  }
  return nullptr;
}

}  // namespace kvtier::testing
