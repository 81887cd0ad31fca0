#include "tiers/src/lease_table.h"

namespace kvtier::tiers::internal {
namespace {
// Enough pooled vectors for the leases a busy daemon opens between two releases; beyond that
// a vector is simply freed.
constexpr size_t kMaxPooledVectors = 256;
}  // namespace

std::vector<uint32_t> LeaseTable::TakeVector() {
  if (vector_pool_.empty()) return {};
  std::vector<uint32_t> v = std::move(vector_pool_.back());
  vector_pool_.pop_back();
  return v;
}

void LeaseTable::Add(LeaseId id, OwnerId owner, LeaseKind kind, int64_t now_ns,
                     std::vector<uint32_t> entries) {
  // Two pops per add keep the queues from accumulating released leases.
  TrimQueues(2);
  Lease& lease = leases_[id];
  lease.owner = owner;
  lease.kind = kind;
  lease.expired = false;
  lease.deadline_ns = now_ns + timeout_ns_;
  lease.entries = std::move(entries);
  by_owner_[owner].insert(id);
  live_queue_.emplace_back(lease.deadline_ns, id);
  ++live_;
}

Lease* LeaseTable::Find(LeaseId id) {
  auto it = leases_.find(id);
  return it == leases_.end() ? nullptr : &it->second;
}

void LeaseTable::Erase(LeaseId id) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  Lease& lease = it->second;
  if (!lease.expired) --live_;
  auto owner = by_owner_.find(lease.owner);
  if (owner != by_owner_.end()) {
    owner->second.erase(id);
    if (owner->second.empty()) by_owner_.erase(owner);
  }
  if (vector_pool_.size() < kMaxPooledVectors) {
    lease.entries.clear();
    vector_pool_.push_back(std::move(lease.entries));
  }
  leases_.erase(it);
}

void LeaseTable::LeasesOf(OwnerId owner, std::vector<LeaseId>* out) const {
  auto it = by_owner_.find(owner);
  if (it == by_owner_.end()) return;
  out->insert(out->end(), it->second.begin(), it->second.end());
}

void LeaseTable::TrimQueues(size_t max_pops) {
  for (size_t i = 0; i < max_pops && !live_queue_.empty(); ++i) {
    auto it = leases_.find(live_queue_.front().second);
    if (it != leases_.end() && !it->second.expired) break;
    live_queue_.pop_front();
  }
  for (size_t i = 0; i < max_pops && !tombstone_queue_.empty(); ++i) {
    if (leases_.contains(tombstone_queue_.front().second)) break;
    tombstone_queue_.pop_front();
  }
}

}  // namespace kvtier::tiers::internal
