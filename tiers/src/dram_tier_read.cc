// DramTier reads: lookups, presence, read leases (acquire, extend, release), pins, and
// Remove and SetPinned on cached blocks.
#include <algorithm>
#include <optional>
#include <utility>

#include "tiers/src/dram_tier_impl.h"

namespace kvtier::tiers {

size_t DramTier::Impl::LookupPrefix(NamespaceId ns_id, std::span<const BlockKey> keys) {
  absl::MutexLock lock(&mu_);
  Namespace* ns = FindNamespace(ns_id);
  size_t hit = 0;
  if (ns != nullptr) {
    const int64_t now = clock_->NowNanos();
    for (; hit < keys.size(); ++hit) {
      PrefetchAhead(*ns, keys, hit, /*policy=*/false);
      if (!FindLive(ns, keys[hit], now)) break;
    }
  }
  Count(ns, &TierCounters::lookups, 1);
  Count(ns, &TierCounters::lookup_keys, keys.size());
  Count(ns, &TierCounters::lookup_hit_keys, hit);
  return hit;
}

LeaseId DramTier::Impl::AddToReadLease(Lease* lease, LeaseId lease_id, OwnerId owner, int64_t now,
                                       std::vector<uint32_t> granted) {
  if (lease != nullptr) {
    lease->entries.insert(lease->entries.end(), granted.begin(), granted.end());
    return lease_id;
  }
  const LeaseId id = leases_.NextId();
  leases_.Add(id, owner, LeaseKind::kRead, now, std::move(granted));
  return id;
}

std::vector<absl::StatusCode> DramTier::Impl::SetPinned(NamespaceId ns_id,
                                                        std::span<const BlockKey> keys,
                                                        bool pinned) {
  std::vector<absl::StatusCode> codes(keys.size(), absl::StatusCode::kNotFound);
  absl::MutexLock lock(&mu_);
  Namespace* ns = FindNamespace(ns_id);
  if (ns == nullptr) return codes;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto it = ns->index.find(keys[i]);
    if (it == ns->index.end() || !it->second.committed) continue;
    Entry& e = entries_[it->second.entry];
    if (e.user_pinned != pinned) {
      e.user_pinned = pinned;
      if (pinned) {
        ++ns->pinned_blocks;
        policy_->Pin(it->second.entry);
      } else {
        --ns->pinned_blocks;
        policy_->Unpin(it->second.entry);
      }
    }
    codes[i] = absl::StatusCode::kOk;
  }
  return codes;
}

std::vector<bool> DramTier::Impl::Present(NamespaceId ns_id, std::span<const BlockKey> keys,
                                          bool touch) {
  std::vector<bool> present(keys.size(), false);
  absl::MutexLock lock(&mu_);
  Namespace* ns = FindNamespace(ns_id);
  if (ns == nullptr) return present;
  const int64_t now = clock_->NowNanos();
  for (size_t i = 0; i < keys.size(); ++i) {
    PrefetchAhead(*ns, keys, i, /*policy=*/false);
    const std::optional<uint32_t> found = FindLive(ns, keys[i], now);
    present[i] = found.has_value();
    if (found && touch) {
      entries_[*found].last_use_ns = now;
      policy_->OnAccess(*found);
    }
  }
  return present;
}

LeaseGrant DramTier::Impl::ExtendRead(OwnerId owner, LeaseId lease_id, NamespaceId ns_id,
                                      std::span<const BlockKey> keys) {
  LeaseGrant grant = UngrantedFor(keys.size(), absl::StatusCode::kNotFound);
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowNanos();
  Namespace* ns = FindNamespace(ns_id);
  Lease* lease = nullptr;
  if (lease_id != 0) {
    lease = leases_.Find(lease_id);
    if (lease == nullptr || lease->owner != owner || lease->kind != LeaseKind::kRead ||
        CheckExpired(*lease, now)) {
      return grant;
    }
  }
  if (ns == nullptr) return grant;
  std::vector<uint32_t> granted = leases_.TakeVector();
  PinCommitted(ns, keys, now, &grant, &granted);
  CountMissesAsHits(ns, granted.size());
  if (granted.empty()) {
    grant.lease_id = lease_id;
    return grant;
  }
  grant.lease_id = AddToReadLease(lease, lease_id, owner, now, std::move(granted));
  return grant;
}

LeaseGrant DramTier::Impl::AcquireRead(OwnerId owner, NamespaceId ns_id,
                                       std::span<const BlockKey> keys) {
  LeaseGrant grant = UngrantedFor(keys.size(), absl::StatusCode::kNotFound);
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowNanos();
  Namespace* ns = FindNamespace(ns_id);
  std::vector<uint32_t> granted = leases_.TakeVector();
  if (ns != nullptr) PinCommitted(ns, keys, now, &grant, &granted);
  Count(ns, &TierCounters::hits, granted.size());
  Count(ns, &TierCounters::misses, keys.size() - granted.size());
  if (!granted.empty()) {
    grant.lease_id = leases_.NextId();
    leases_.Add(grant.lease_id, owner, LeaseKind::kRead, now, std::move(granted));
  }
  return grant;
}

absl::StatusOr<bool> DramTier::Impl::Release(OwnerId owner, LeaseId lease_id) {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowNanos();
  Lease* lease = leases_.Find(lease_id);
  if (lease == nullptr || lease->owner != owner) return LeaseNotFound(lease_id);
  const bool expired = CheckExpired(*lease, now);
  EndLease(*lease);
  leases_.Erase(lease_id);
  return expired;
}

void DramTier::Impl::ReleaseOwner(OwnerId owner) {
  absl::MutexLock lock(&mu_);
  scratch_leases_.clear();
  leases_.LeasesOf(owner, &scratch_leases_);
  const int64_t now = clock_->NowNanos();
  for (LeaseId id : scratch_leases_) {
    Lease& lease = *leases_.Find(id);
    if (lease.kind == LeaseKind::kPut) {
      // A closed connection does not mean a dead process: a client whose connection the
      // daemon closed (a bad frame, say) may still be copying into these slots. So an
      // unfinished put is retired as if it had expired now -- out of the index at once,
      // slots reused only when its tombstone is purged one lease_timeout later. A put that
      // had expired already keeps its tombstone's schedule.
      leases_.ExpireNow(id, now, [this](LeaseId, Lease& l) { RetirePutEntries(l); });
      continue;
    }
    CheckExpired(lease, now);
    EndLease(lease);
    leases_.Erase(id);
  }
}

std::vector<absl::StatusCode> DramTier::Impl::Remove(NamespaceId ns_id,
                                                     std::span<const BlockKey> keys) {
  std::vector<absl::StatusCode> codes(keys.size(), absl::StatusCode::kNotFound);
  absl::MutexLock lock(&mu_);
  Namespace* ns = FindNamespace(ns_id);
  if (ns == nullptr) return codes;
  for (size_t i = 0; i < keys.size(); ++i) {
    PrefetchAhead(*ns, keys, i, /*policy=*/true);
    auto it = ns->index.find(keys[i]);
    if (it == ns->index.end()) continue;
    if (!it->second.committed) {
      // Being written (a put, or a promotion from NVMe): its commit is dropped (CommitPut
      // says kAborted for it), so that the block cannot appear once this remove has
      // returned. The key may be put again at once.
      entries_[it->second.entry].removed = true;
      ns->index.erase(it);
      continue;
    }
    const uint32_t id = it->second.entry;
    ns->index.erase(it);
    Uncache(id);
    Count(ns, &TierCounters::removes, 1);
    Entry& e = entries_[id];
    if (e.pins == 0) {
      FreeEntry(id);
    } else {
      e.removed = true;  // freed by the last Unpin
    }
    codes[i] = absl::StatusCode::kOk;
  }
  return codes;
}

void DramTier::Impl::PinCommitted(Namespace* ns, std::span<const BlockKey> keys, int64_t now,
                                  LeaseGrant* grant, std::vector<uint32_t>* granted) {
  for (size_t i = 0; i < keys.size(); ++i) {
    PrefetchAhead(*ns, keys, i, /*policy=*/false);
    const std::optional<uint32_t> found = FindLive(ns, keys[i], now);
    if (!found) continue;
    const uint32_t id = *found;
    grant->codes[i] = absl::StatusCode::kOk;
    grant->slots[i] = PinEntry(id, now);
    granted->push_back(id);
  }
}

SlotRef DramTier::Impl::PinEntry(uint32_t id, int64_t now) {
  Entry& e = entries_[id];
  ++e.pins;
  e.last_use_ns = now;
  if (e.hits < UINT16_MAX) ++e.hits;
  policy_->OnAccess(id);
  return RefOf(e);
}

void DramTier::Impl::CountMissesAsHits(Namespace* ns, uint64_t n) {
  Count(ns, &TierCounters::hits, n);
  counters_.misses -= std::min(counters_.misses, n);
  ns->counters.misses -= std::min(ns->counters.misses, n);
}

void DramTier::Impl::Unpin(uint32_t id) {
  Entry& e = entries_[id];
  if (--e.pins == 0 && e.removed) FreeEntry(id);
}

void DramTier::Impl::EndLease(Lease& lease) {
  if (lease.kind == LeaseKind::kRead) {
    for (uint32_t id : lease.entries) Unpin(id);
    lease.entries.clear();
  } else {
    EndPutLease(lease);
  }
}

}  // namespace kvtier::tiers
