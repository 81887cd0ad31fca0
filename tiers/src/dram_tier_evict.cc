// DramTier eviction and expiry: slot allocation with one recency order across size classes
// (a slab reclaimed from an older class), quota victims, evicting and freeing blocks, TTL
// expiry and lease expiry.
#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "tiers/src/dram_tier_impl.h"

namespace kvtier::tiers {

size_t DramTier::Impl::ExpireLeases() {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowNanos();
  ReapExpiredBlocks(now);
  return ExpireLocked(now);
}

std::optional<SlotHandle> DramTier::Impl::AllocateSlot(ClassId cls, uint32_t tag) {
  // A few rounds at most: a reclaim can fail when a get pins one of its blocks just as its
  // copies end, or when a new slab takes the free space next to its slabs meanwhile.
  for (int round = 0; round < 4; ++round) {
    if (auto slot = allocator_.Allocate(cls, tag)) return slot;
    if (allocator_.slab_count(cls) > 0) {
      if (std::optional<EntryId> victim = policy_->PickVictim(cls, policy_evictable_)) {
        // While another reclaim copies, evict within the class rather than wait for it.
        const uint64_t unlocks = unlocks_;
        if (!reclaiming_ && ReclaimOlderSlab(cls, RankOf(*victim))) {
          NoteReclaimDemand(cls);
          if (auto slot = allocator_.Allocate(cls, tag)) return slot;
          continue;
        }
        // A reclaim that failed halfway let go of the lock: the victim may be gone.
        if (unlocks != unlocks_) continue;
        Evict(static_cast<uint32_t>(*victim));
        if (auto slot = allocator_.Allocate(cls, tag)) return slot;
        continue;
      }
    }
    // The class has no slab to evict from (or all of its blocks are pinned): take whole slabs
    // from other classes, once no other reclaim is copying.
    if (reclaiming_) {
      AwaitNoReclaim();
      continue;
    }
    scratch_tags_.clear();
    if (!allocator_.FindReclaim(cls, slot_evictable_, &scratch_tags_)) return std::nullopt;
    NoteReclaimDemand(cls);
    if (EmptyForReclaim()) {
      if (auto slot = allocator_.Allocate(cls, tag)) return slot;
    }
  }
  return std::nullopt;
}

void DramTier::Impl::NoteReclaimDemand(ClassId cls) {
  if (reclaim_demand_ns_.size() <= cls) {
    reclaim_demand_ns_.resize(cls + 1, std::numeric_limits<int64_t>::min());
  }
  reclaim_demand_ns_[cls] = clock_->NowNanos();
}

DramTier::AheadResult DramTier::Impl::ReclaimAhead() {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowNanos();
  // The class that needed a slab most recently, within the window.
  std::optional<ClassId> cls;
  int64_t latest = now - DramTier::kReclaimDemandWindowNs;
  for (ClassId c = 0; c < reclaim_demand_ns_.size(); ++c) {
    if (reclaim_demand_ns_[c] > latest) {
      cls = c;
      latest = reclaim_demand_ns_[c];
    }
  }
  if (!cls) return DramTier::AheadResult::kIdle;
  if (reclaiming_ || allocator_.slab_count(*cls) == 0 || allocator_.HasRoomForSlab(*cls) ||
      2 * allocator_.free_slot_count(*cls) >= allocator_.slots_per_slab(*cls)) {
    return DramTier::AheadResult::kWaiting;
  }
  std::optional<EntryId> victim = policy_->PickVictim(*cls, policy_evictable_);
  if (!victim) return DramTier::AheadResult::kWaiting;
  // Counted with the reclaim itself (EmptyForReclaim), which lets go of the lock: a snapshot
  // taken meanwhile must not see a reclaim that looks like a put's.
  reclaim_is_ahead_ = true;
  const bool reclaimed = ReclaimOlderSlab(*cls, RankOf(*victim));
  reclaim_is_ahead_ = false;
  return reclaimed ? DramTier::AheadResult::kReclaimed : DramTier::AheadResult::kWaiting;
}

void DramTier::Impl::AwaitNoReclaim() {
  ++unlocks_;
  mu_.Await(absl::Condition(
      +[](bool* reclaiming) { return !*reclaiming; }, &reclaiming_));
}

DramTier::Impl::VictimRank DramTier::Impl::RankOf(EntryId id) const {
  const Entry& e = entries_[id];
  const Namespace& ns = *e.ns;
  const bool over_quota = ns.max_slot_bytes != 0 && ns.slot_bytes > ns.max_slot_bytes;
  const int state = IsExpired(e, clock_->NowNanos()) ? 0 : over_quota ? 1 : 2;
  return VictimRank{state, state == 2 ? ns.limits.priority : 0,
                    state == 2 ? policy_->SegmentOf(id) : 0, e.last_use_ns};
}

bool DramTier::Impl::ReclaimOlderSlab(ClassId cls, const VictimRank& own) {
  scratch_victims_.clear();
  for (ClassId d = 0; d < allocator_.class_count(); ++d) {
    if (d == cls || allocator_.slab_count(d) == 0) continue;
    std::optional<EntryId> v = policy_->PickVictim(d, policy_evictable_);
    if (!v) continue;
    const VictimRank rank = RankOf(*v);
    if (rank < own) scratch_victims_.push_back({rank, d, static_cast<uint32_t>(*v)});
  }
  std::sort(scratch_victims_.begin(), scratch_victims_.end(),
            [](const ClassVictim& a, const ClassVictim& b) { return a.rank < b.rank; });
  for (const ClassVictim& c : scratch_victims_) {
    scratch_tags_.clear();
    if (allocator_.ReclaimSlab(cls, entries_[c.entry].slot.slab, slot_evictable_, &scratch_tags_) ||
        allocator_.FindReclaim(cls, slot_evictable_, &scratch_tags_, c.cls)) {
      return EmptyForReclaim();
    }
  }
  return false;
}

bool DramTier::Impl::EmptyForReclaim() {
  ++slab_reclaims_;
  if (reclaim_is_ahead_) ++reclaims_ahead_;
  scratch_slabs_.clear();
  for (uint64_t tag : scratch_tags_) {
    const SlabId slab = entries_[tag].slot.slab;
    if (std::find(scratch_slabs_.begin(), scratch_slabs_.end(), slab) == scratch_slabs_.end()) {
      scratch_slabs_.push_back(slab);
    }
  }
  // Youngest first: free slots elsewhere in a class go to the blocks most worth keeping, and an
  // old block is not moved only to be evicted as the victim that makes room for a younger one.
  // Ranks are taken once (each reads the clock), not per comparison.
  scratch_ranked_.clear();
  for (uint64_t tag : scratch_tags_) {
    scratch_ranked_.push_back({RankOf(static_cast<EntryId>(tag)), static_cast<uint32_t>(tag)});
  }
  std::sort(scratch_ranked_.begin(), scratch_ranked_.end(),
            [](const RankedEntry& a, const RankedEntry& b) { return b.rank < a.rank; });
  scratch_moves_.clear();
  for (const RankedEntry& r : scratch_ranked_) {
    const uint32_t id = r.entry;
    // Gone already: evicted by NewSlotOutside to make room for another block of these slabs.
    if (entries_[id].state != EntryState::kCommitted) continue;
    if (std::optional<SlotHandle> to = NewSlotOutside(id)) {
      Entry& e = entries_[id];
      e.moving = true;
      scratch_moves_.push_back({id, e.slot, *to, e.offset, allocator_.Offset(*to), e.length});
      continue;
    }
    Evict(id);
  }
  if (scratch_moves_.empty()) return true;

  // The copies, without the lock. The old slots stay allocated and their slabs hand out no
  // slot, so the bytes read stay put; the new slots are the moves' own.
  for (SlabId slab : scratch_slabs_) allocator_.SetDraining(slab, true);
  reclaiming_ = true;
  ++unlocks_;
  mu_.Unlock();
  std::byte* const base = arena_->base();
  for (const Move& m : scratch_moves_) {
    std::memcpy(base + m.to_offset, base + m.from_offset, m.length);
  }
  if (options_.on_reclaim_copy) options_.on_reclaim_copy();
  mu_.Lock();
  reclaiming_ = false;

  bool emptied = true;
  for (const Move& m : scratch_moves_) {
    Entry& e = entries_[m.entry];
    // Still the same block where it was (an entry that went meanwhile may hold another block
    // now, which is never marked moving), and no get reads its old place: switch.
    if (!e.moving || !(e.slot == m.from)) {
      allocator_.Free(m.to);  // the block went meanwhile; its old slot went with it
      continue;
    }
    e.moving = false;
    if (e.pins > 0) {
      allocator_.Free(m.to);
      emptied = false;
      continue;
    }
    e.slot = m.to;
    e.offset = m.to_offset;
    arena_->BumpGeneration(m.from_offset);
    allocator_.Free(m.from);
    ++blocks_moved_;
  }
  for (SlabId slab : scratch_slabs_) allocator_.SetDraining(slab, false);
  return emptied;
}

std::optional<SlotHandle> DramTier::Impl::NewSlotOutside(uint32_t id) {
  const VictimRank rank = RankOf(id);
  const ClassId cls = allocator_.ClassOf(entries_[id].slot);
  for (;;) {
    if (std::optional<SlotHandle> slot = allocator_.AllocateExisting(cls, id, scratch_slabs_)) {
      return slot;
    }
    std::optional<EntryId> victim = policy_->PickVictim(cls, policy_evictable_);
    if (!victim || *victim == id || !(RankOf(*victim) < rank)) return std::nullopt;
    Evict(static_cast<uint32_t>(*victim));
  }
}

std::optional<EntryId> DramTier::Impl::QuotaVictim(const Namespace& ns,
                                                   std::span<const EntryId> chosen) {
  const auto evictable = [this, &chosen](EntryId id) {
    return policy_evictable_(id) && std::find(chosen.begin(), chosen.end(), id) == chosen.end();
  };
  std::optional<EntryId> best;
  for (ClassId cls : ns.classes) {
    std::optional<EntryId> v = chosen.empty() ? policy_->GroupVictim(ns.id, cls, policy_evictable_)
                                              : policy_->GroupVictim(ns.id, cls, evictable);
    if (v && (!best || entries_[*v].last_use_ns < entries_[*best].last_use_ns)) best = v;
  }
  return best;
}

void DramTier::Impl::Evict(uint32_t id) {
  Entry& e = entries_[id];
  const int64_t now = clock_->NowNanos();
  if (IsExpired(e, now)) {
    DropExpired(id);
    return;
  }
  if (listener_ != nullptr) {
    listener_->OnEvict(
        EvictedBlock{.ns = e.ns->id,
                     .key = e.key,
                     .bytes = {arena_->base() + e.offset, static_cast<size_t>(e.length)},
                     .hits = e.hits,
                     .persisted = e.persisted,
                     .ttl_left_nanos = e.expires_at_ns == 0 ? 0 : e.expires_at_ns - now,
                     .encoding = EncodingOf(e)});
  }
  e.ns->index.erase(e.key);
  Uncache(id);
  Count(e.ns, &TierCounters::evictions, 1);
  FreeEntry(id);
}

void DramTier::Impl::DropExpired(uint32_t id) {
  Entry& e = entries_[id];
  e.ns->index.erase(e.key);
  Uncache(id);
  Count(e.ns, &TierCounters::expirations, 1);
  if (e.pins == 0) {
    FreeEntry(id);
  } else {
    e.removed = true;
  }
}

void DramTier::Impl::ReapExpiredBlocks(int64_t now) {
  constexpr size_t kBatch = 1024;
  for (EntryId id : policy_->ExpiredBlocks(kBatch)) {
    if (IsExpired(entries_[id], now)) DropExpired(static_cast<uint32_t>(id));
  }
}

void DramTier::Impl::Uncache(uint32_t id) {
  Entry& e = entries_[id];
  if (e.user_pinned) {
    e.user_pinned = false;
    --e.ns->pinned_blocks;
  }
  policy_->OnRemove(id);  // drops the policy's mirror of the pin too
  --e.ns->blocks;
  e.ns->slot_bytes -= SlotBytesOf(e);
  e.ns->used_bytes -= e.length;
  e.ns->raw_bytes -= e.raw_length;
  --committed_blocks_;
}

void DramTier::Impl::FreeEntry(uint32_t id) {
  Entry& e = entries_[id];
  if (e.state == EntryState::kWriting) e.ns->writing_slot_bytes -= SlotBytesOf(e);
  arena_->BumpGeneration(e.offset);
  allocator_.Free(e.slot);
  e.state = EntryState::kFree;
  e.moving = false;  // a reclaim copying it sees that it went (EmptyForReclaim)
  e.ns = nullptr;
  e.pins = 0;
  e.put_lease = 0;
  e.removed = false;
  free_entries_.push_back(id);
}

size_t DramTier::Impl::ExpireLocked(int64_t now) {
  const size_t expired = leases_.ExpireDue(now, [this](LeaseId, Lease& lease) {
    if (lease.kind == LeaseKind::kRead) {
      for (uint32_t id : lease.entries) Unpin(id);
      lease.entries.clear();
      return;
    }
    RetirePutEntries(lease);
  });
  leases_expired_ += expired;
  leases_.PurgeDue(now, [this](LeaseId, Lease& lease) {
    if (lease.kind == LeaseKind::kPut) EndPutLease(lease);
  });
  return expired;
}

}  // namespace kvtier::tiers
