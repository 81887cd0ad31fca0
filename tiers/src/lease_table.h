// LeaseTable: the DRAM tier's leases -- who holds which entries, of what kind, until when.
//
// A lease is live until its deadline (creation + timeout), then expired. An expired lease is
// kept as a tombstone for one more timeout so that the owner's late Release/CommitPut can be
// told "expired" rather than "unknown", and -- for put leases -- so that the tier can keep the
// slots of an expired put out of circulation while a slow client may still be writing them
// (see dram_tier_impl.h). After that the tombstone is purged.
//
// Deadlines come from one monotonic clock and one fixed timeout, so they are created in order:
// two FIFO queues (live deadlines, tombstone purge times) give O(1) amortized expiry with no
// heap. Released leases leave stale queue entries that are skipped (and trimmed on Add), so
// the queues stay near the number of leases.
//
// The table only tracks leases; the caller decides what expiring or ending one means (the
// callbacks). Lease ids start at 1 and are never reused. Not thread-safe: the tier calls it
// under its lock.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "kvtier/tiers/dram_tier.h"

namespace kvtier::tiers::internal {

enum class LeaseKind : uint8_t { kRead, kPut };

struct Lease {
  OwnerId owner = 0;
  LeaseKind kind = LeaseKind::kRead;
  bool expired = false;
  // Live: when it expires. Expired: when the tombstone is purged.
  int64_t deadline_ns = 0;
  std::vector<uint32_t> entries;  // the tier's entry ids, in grant order
};

class LeaseTable {
 public:
  explicit LeaseTable(int64_t timeout_ns) : timeout_ns_(timeout_ns) {}

  // Reserves the id of the next lease, so that the caller can stamp entries with it before
  // the lease exists. An id reserved but never Add()ed is simply skipped.
  LeaseId NextId() { return next_id_++; }

  // An empty vector with spare capacity from the pool, to fill and pass to Add().
  std::vector<uint32_t> TakeVector();

  // Adds a live lease `id` (from NextId) expiring at now + timeout.
  void Add(LeaseId id, OwnerId owner, LeaseKind kind, int64_t now_ns,
           std::vector<uint32_t> entries);

  // The lease, live or tombstone; nullptr if unknown (never added, ended, or purged).
  // The pointer is valid until the next Add or Erase.
  Lease* Find(LeaseId id);

  // Forgets a lease (live or tombstone) and recycles its entries vector.
  void Erase(LeaseId id);

  // Expires every live lease whose deadline is <= now_ns: calls on_expire(id, lease), which
  // may change lease.entries, then turns it into a tombstone purged at now_ns + timeout.
  // Returns how many expired.
  template <typename F>
  size_t ExpireDue(int64_t now_ns, F&& on_expire);

  // Expires the live lease `id` at once, as ExpireDue would at its deadline: calls
  // on_expire(id, lease) and turns it into a tombstone purged at now_ns + timeout. Returns
  // false (and does nothing) for an unknown lease or a tombstone.
  template <typename F>
  bool ExpireNow(LeaseId id, int64_t now_ns, F&& on_expire);

  // Purges every tombstone whose time is <= now_ns: calls on_purge(id, lease), then erases it.
  template <typename F>
  void PurgeDue(int64_t now_ns, F&& on_purge);

  // Appends the ids of every lease (live or tombstone) of `owner`.
  void LeasesOf(OwnerId owner, std::vector<LeaseId>* out) const;

  size_t live() const { return live_; }
  size_t tombstones() const { return leases_.size() - live_; }
  int64_t timeout_ns() const { return timeout_ns_; }

 private:
  // Drops queue heads that name leases no longer in the state the queue is for.
  void TrimQueues(size_t max_pops);

  const int64_t timeout_ns_;
  LeaseId next_id_ = 1;
  size_t live_ = 0;
  absl::flat_hash_map<LeaseId, Lease> leases_;
  absl::flat_hash_map<OwnerId, absl::flat_hash_set<LeaseId>> by_owner_;
  std::deque<std::pair<int64_t, LeaseId>> live_queue_;       // (deadline, id), ascending
  std::deque<std::pair<int64_t, LeaseId>> tombstone_queue_;  // (purge time, id), ascending
  std::vector<std::vector<uint32_t>> vector_pool_;
};

template <typename F>
size_t LeaseTable::ExpireDue(int64_t now_ns, F&& on_expire) {
  size_t expired = 0;
  while (!live_queue_.empty() && live_queue_.front().first <= now_ns) {
    const LeaseId id = live_queue_.front().second;
    live_queue_.pop_front();
    auto it = leases_.find(id);
    if (it == leases_.end() || it->second.expired) continue;  // ended early
    Lease& lease = it->second;
    on_expire(id, lease);
    lease.expired = true;
    lease.deadline_ns = now_ns + timeout_ns_;
    tombstone_queue_.emplace_back(lease.deadline_ns, id);
    --live_;
    ++expired;
  }
  return expired;
}

template <typename F>
bool LeaseTable::ExpireNow(LeaseId id, int64_t now_ns, F&& on_expire) {
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.expired) return false;
  // Its entry in live_queue_ stays behind and is skipped as "ended early" when reached.
  Lease& lease = it->second;
  on_expire(id, lease);
  lease.expired = true;
  lease.deadline_ns = now_ns + timeout_ns_;
  tombstone_queue_.emplace_back(lease.deadline_ns, id);
  --live_;
  return true;
}

template <typename F>
void LeaseTable::PurgeDue(int64_t now_ns, F&& on_purge) {
  while (!tombstone_queue_.empty() && tombstone_queue_.front().first <= now_ns) {
    const LeaseId id = tombstone_queue_.front().second;
    tombstone_queue_.pop_front();
    auto it = leases_.find(id);
    if (it == leases_.end()) continue;  // released after it expired
    on_purge(id, it->second);
    Erase(id);
  }
}

}  // namespace kvtier::tiers::internal
