// DramTier::Impl, shared by the files that implement it: dram_tier.cc (options, the public
// facade, namespaces and their limits, listings, stats), dram_tier_put.cc (the put path:
// reserve, commit, put leases, quotas), dram_tier_read.cc (lookups, read leases, pins, removes)
// and dram_tier_evict.cc (slot allocation, eviction across size classes, expiry).
//
// DramTier: index, leases and eviction over the shared arena (shm_arena), its slots
// (slab_allocator), the leases (lease_table) and an eviction policy.
//
// Entries. Every slot in use belongs to one entry in `entries_` (a vector reused through a
// free list; the entry's index is its EntryId for the policy and its tag in the allocator).
// An entry is kWriting from ReservePut until CommitPut, then kCommitted. The per-namespace
// index maps key -> entry and carries the committed bit itself, so LookupPrefix touches only
// the hash table. An entry leaves the index when it is evicted, removed or its put ends
// unfinished; if something still holds it (read pins, or an expired put whose writer may still
// be copying), it stays allocated with `removed` set and its slot is freed when the last
// holder lets go.
//
// Slot lifetime and generations. A slot's generation is bumped exactly when the slot is freed
// (FreeEntry), before it can be handed out again, so a reader whose generation check passes
// copied bytes that no one could have overwritten: writes only go into slots reserved after
// the bump.
//
// Expired puts. A put lease that expires leaves the index at once (the key can be put again),
// but its slots are not reused until its owner acknowledges (CommitPut -> kDeadlineExceeded,
// Release) or the tombstone is purged one more lease_timeout later. ReleaseOwner (connection
// closed) retires a live put the same way rather than freeing its slots at once. A client
// that is late, not dead, may still be copying into those slots; handing them to another
// block at once would let its stale bytes land in a committed block behind the generation
// check's back.
//
// Eviction across size classes: one global recency order, at slab granularity. Slabs are
// split between size classes (one per block size), and a class that only ever evicted within
// itself would keep the share of the arena it had when the arena filled: an old namespace's
// blocks, never used again, would sit in their slabs forever while a newer namespace with
// another block size missed on almost everything ("slab calcification"). So every committed
// entry carries its last use (the tier clock at commit and at every read hit), and when a
// class needs a slot and there is neither a free slot nor room for a new slab, the age of its
// own next victim is compared with the next victims of the other classes (the policy's
// PickVictim, peeked, one per class: O(#classes), no scan of entries), by what PickVictim
// itself orders by before recency: expired first, then blocks of namespaces over their quota,
// then lower namespace priority, then the policy's lower segment (EvictionPolicy::SegmentOf:
// prefix-slru's probation before its protected blocks), then the older last use (VictimRank). So
// priorities hold across size classes too (a compressed namespace spreads over up to 16 of them).
// If another class's victim ranks below, that class gives up a slab: the one holding its victim
// when none of its blocks is pinned (O(slots of one slab)), else its cheapest run of unpinned slabs
// (FindReclaim restricted to that class), and the slab goes to the class that asked. Otherwise
// the class evicts its own victim. Ties stay within the class.
//
// Emptying a slab for another class (EmptyForReclaim), on either path. A slab holds blocks of
// every age: its slots are reused as the class evicts, one by one. So each of its blocks is
// moved to a free slot in one of the class's other slabs, made where needed by evicting the
// class's next victims while they rank below the block itself; a block goes only when it is
// the oldest its class has left. The slab's blocks are thus paid for with the class's oldest
// blocks, as one recency order would choose them, instead of whatever ages the slab held.
// The copies run without the tier's lock (up to a slab's bytes, milliseconds at 16 MiB, which
// every get would otherwise wait for): under the lock the reclaim picks each block's new slot
// and marks the block moving and its slabs draining (no free slot of theirs is handed out);
// then it unlocks, copies, and locks again to switch each block that is still the same block
// and not pinned by a reader to its new slot, freeing the old one as an eviction does
// (generation bumped). Meanwhile gets read moving blocks at their old place, puts evict them
// or anything else as usual, and no other reclaim starts (reclaiming_): a put that needs one
// evicts within its own class, or waits when its class has no slab. A block pinned by a get
// when the copies end stays where it is and the reclaim fails, as does one whose slabs no
// longer make room (a new slab took a free extent next to them meanwhile); the put then
// evicts within its class, or tries again.
// Without moves a reclaim evicted a slab of blocks of any age, and with a compressed namespace
// spread over 64 size classes that cut prefix chains everywhere (docs/policy.md, "Compression and
// capacity").
//
// Metadata per cached block, approximately: entry 80 B, index slot ~48 B (36 B key+value at
// <= 7/8 load), LRU node 24 B, allocator 12 B, generation 8 B per page: ~170 B, i.e. 0.26% of
// a 64 KiB block.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kvtier/tiers/dram_tier.h"
#include "kvtier/tiers/memory_controls.h"
#include "tiers/src/huge_page_map.h"
#include "tiers/src/lease_table.h"
#include "tiers/src/shm_arena.h"
#include "tiers/src/slab_allocator.h"

namespace kvtier::tiers {
namespace internal {

enum class EntryState : uint8_t { kFree, kWriting, kCommitted };

// How many keys ahead a batch loop starts loading a key's index slot (PrefetchAhead): enough
// to cover a DRAM miss with the work of the keys in between, few enough that the lines are
// still in L1 when their key comes up.
inline constexpr size_t kPrefetchAhead = 8;

// The answer for `keys` keys before any is granted: every code `code`, every slot empty.
inline LeaseGrant UngrantedFor(size_t keys, absl::StatusCode code) {
  LeaseGrant grant;
  grant.codes.assign(keys, code);
  grant.slots.resize(keys);
  return grant;
}

}  // namespace internal

using internal::ClassId;
using internal::EntryState;
using internal::kPrefetchAhead;
using internal::Lease;
using internal::LeaseKind;
using internal::LeaseTable;
using internal::ShmArena;
using internal::SlabAllocator;
using internal::SlabId;
using internal::SlotHandle;
using internal::UngrantedFor;

class DramTier::Impl {
 public:
  Impl(const DramTierOptions& options, const Clock* clock, std::unique_ptr<ControlledPolicy> policy,
       std::unique_ptr<ShmArena> arena);

  const ShmArena& arena() const { return *arena_; }

  absl::Status AddNamespace(NamespaceId ns_id, uint64_t block_bytes, uint32_t size_steps);
  size_t LookupPrefix(NamespaceId ns_id, std::span<const BlockKey> keys);
  LeaseGrant ReservePut(OwnerId owner, NamespaceId ns_id, std::span<const BlockKey> keys,
                        std::span<const uint64_t> lengths, const ReserveOptions& options);
  absl::StatusOr<std::vector<absl::StatusCode>> CommitPut(OwnerId owner, LeaseId lease_id,
                                                          const CommitOptions& options);

  // Pins freshly committed blocks under a read lease (CommitOptions::read).
  void HandOffToReader(std::span<const uint32_t> ids, std::span<const absl::StatusCode> codes,
                       int64_t now, ReadHandoff* read) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Adds pinned entries to a live read lease (`lease`, its id `lease_id`), or to a new one of
  // `owner` when `lease` is null. Returns the id of the lease holding them.
  LeaseId AddToReadLease(Lease* lease, LeaseId lease_id, OwnerId owner, int64_t now,
                         std::vector<uint32_t> granted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::StatusOr<PutLeaseBlocks> GetPutLeaseBlocks(OwnerId owner, LeaseId lease_id);
  std::vector<absl::StatusCode> SetPinned(NamespaceId ns_id, std::span<const BlockKey> keys,
                                          bool pinned);
  std::vector<bool> Present(NamespaceId ns_id, std::span<const BlockKey> keys, bool touch);
  std::vector<BlockListing> ListBlocks() const;
  void SetEvictionListener(EvictionListener* listener);
  LeaseGrant ExtendRead(OwnerId owner, LeaseId lease_id, NamespaceId ns_id,
                        std::span<const BlockKey> keys);
  LeaseGrant AcquireRead(OwnerId owner, NamespaceId ns_id, std::span<const BlockKey> keys);
  absl::StatusOr<bool> Release(OwnerId owner, LeaseId lease_id);
  void ReleaseOwner(OwnerId owner);
  size_t ExpireLeases();
  DramTier::AheadResult ReclaimAhead();
  absl::Status SetNamespaceLimits(NamespaceId ns_id, const NamespaceLimits& limits);
  std::vector<absl::StatusCode> Remove(NamespaceId ns_id, std::span<const BlockKey> keys);
  void RecordBytesOut(NamespaceId ns_id, uint64_t bytes);
  TierSnapshot Snapshot() const;

 private:
  struct Namespace;

  struct Entry {
    BlockKey key;
    Namespace* ns = nullptr;
    uint64_t offset = 0;
    uint64_t length = 0;
    uint64_t raw_length = 0;  // the original bytes it stands for (== length when stored)
    // One word for two lifetimes, so the last-use stamp costs no memory.
    union {
      LeaseId put_lease = 0;  // while kWriting: the lease that reserved it
      int64_t last_use_ns;    // while kCommitted: clock at commit and at the latest read hit
    };
    SlotHandle slot;
    uint32_t pins = 0;  // read leases holding it
    EntryState state = EntryState::kFree;
    bool removed = false;  // out of the index, slot still held
    // While kWriting: the entry before it in its put lease holds the previous key of the
    // request (its prefix parent, for the policy).
    bool parent_is_previous = false;
    bool persisted = false;    // the same bytes sit in a lower tier (ReservePut/CommitPut flag)
    bool user_pinned = false;  // SetPinned: never evicted
    bool moving = false;       // a reclaim is copying it to a new slot (EmptyForReclaim)
    uint16_t hits = 0;         // read hits since commit, saturating
    uint8_t codec = 0;         // BlockEncoding::codec
    // While kWriting: the TTL the put asked for (0: none). While kCommitted: 0, or when the
    // TTL runs out.
    int64_t expires_at_ns = 0;
  };

  struct IndexValue {
    uint32_t entry;
    bool committed;
  };

  struct Namespace {
    NamespaceId id = 0;
    uint64_t block_bytes = 0;
    uint32_t size_steps = 1;       // AddNamespace: slot sizes a block may take
    ClassId cls = 0;               // the class of full-size blocks
    std::vector<ClassId> classes;  // every class its blocks use (cls first)
    internal::HugePageMap<BlockKey, IndexValue> index;
    uint64_t blocks = 0;         // committed, in the index
    uint64_t used_bytes = 0;     // their stored lengths
    uint64_t raw_bytes = 0;      // their original lengths
    uint64_t pinned_blocks = 0;  // committed, user_pinned
    // Bytes of the slots (their size classes' slot sizes) of its committed blocks, and of its
    // blocks reserved but not yet committed or freed: together, what its quota bounds.
    uint64_t slot_bytes = 0;
    uint64_t writing_slot_bytes = 0;
    NamespaceLimits limits;
    // The quota in effect: limits.quota_bytes, one full-size slot at least; 0: none.
    uint64_t max_slot_bytes = 0;
    TierCounters counters;
  };

  static absl::Status LeaseNotFound(LeaseId id) {
    return absl::NotFoundError(absl::StrCat("lease ", id, " not found for this owner"));
  }

  // Whether the lease has expired, by ExpireLeases or because its deadline has passed since;
  // the latter is counted here, as ExpireLeases would have.
  bool CheckExpired(const Lease& lease, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (lease.expired) return true;
    if (now < lease.deadline_ns) return false;
    ++leases_expired_;
    return true;
  }

  Namespace* FindNamespace(NamespaceId id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = namespaces_.find(id);
    return it == namespaces_.end() ? nullptr : it->second.get();
  }

  // Adds to the tier's counter and, for a known namespace, to the namespace's.
  void Count(Namespace* ns, uint64_t TierCounters::*field, uint64_t n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    counters_.*field += n;
    if (ns != nullptr) ns->counters.*field += n;
  }

  uint32_t NewEntry() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A slot of `cls` for entry `tag`: a free one (or a new slab from free space); else, when the
  // class has an evictable block, one global recency order at slab granularity (see the top of
  // this file): a slab of the class whose next victim is oldest, if that is older than this
  // class's own victim, else this class's victim; else room for a new slab made by emptying
  // slabs of any class; else nullopt.
  std::optional<SlotHandle> AllocateSlot(ClassId cls, uint32_t tag)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // How soon a class's next victim should go, against other classes' victims: as PickVictim
  // orders within a class, expired blocks first, then those of namespaces over their quota,
  // then lower priorities, then the older last use. Lower goes first.
  struct VictimRank {
    int state;  // 0 expired, 1 over quota, 2 otherwise
    int32_t priority;
    int segment;  // the policy's (EvictionPolicy::SegmentOf): probation before protected
    int64_t last_use;
    friend auto operator<=>(const VictimRank&, const VictimRank&) = default;
  };
  VictimRank RankOf(EntryId id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Empties a slab (or a run of slabs) of the other class whose next victim ranks lowest, when
  // it ranks below `own` (the rank of `cls`'s own victim), so that a new slab of `cls` fits.
  // Candidates are tried lowest first: the slab holding the victim, then the class's cheapest
  // run of unpinned slabs. Returns whether anything was evicted.
  bool ReclaimOlderSlab(ClassId cls, const VictimRank& own) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Frees the slots of the blocks in scratch_tags_ (the slabs a reclaim empties): each block
  // is moved within its class (NewSlotOutside, then copied without the lock) or, failing that,
  // evicted (the design comment at the top). Returns whether the slabs were emptied. Releases
  // and retakes mu_ when there are blocks to copy.
  bool EmptyForReclaim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A free slot of committed block `id`'s class outside scratch_slabs_, made by evicting the
  // class's next victims while they rank below `id`; nullopt when none can be had that way.
  std::optional<SlotHandle> NewSlotOutside(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Notes that a put had to reclaim a slab for `cls` now (ReclaimAhead's cue).
  void NoteReclaimDemand(ClassId cls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Waits, with mu_ released, until no reclaim is copying.
  void AwaitNoReclaim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A get's use of the committed blocks among `keys`: pins each (one pin per occurrence),
  // stamps its use for eviction, fills its code and slot in `grant` and adds it to `granted`.
  void PinCommitted(Namespace* ns, std::span<const BlockKey> keys, int64_t now, LeaseGrant* grant,
                    std::vector<uint32_t>* granted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // One more read pin on a committed block; a read is a use for eviction.
  SlotRef PinEntry(uint32_t id, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  static BlockEncoding EncodingOf(const Entry& e) {
    return BlockEncoding{.codec = e.codec, .raw_length = e.codec == 0 ? 0 : e.raw_length};
  }
  SlotRef RefOf(const Entry& e) const {
    return SlotRef{e.offset, e.length, arena_->Generation(e.offset), EncodingOf(e)};
  }

  // An encoding a block of `length` stored bytes may carry in `ns` (ReserveOptions::encodings).
  static bool ValidEncoding(const Namespace& ns, uint64_t length, const BlockEncoding& enc);

  // The size class for a block of `length` stored bytes in `ns`: the smallest of its
  // size_steps slot sizes that holds it (AddNamespace).
  ClassId ClassForLength(Namespace* ns, uint64_t length) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The namespace's coldest evictable block over all of its size classes, for its quota,
  // leaving out the blocks in `chosen` (victims picked already, not yet evicted).
  std::optional<EntryId> QuotaVictim(const Namespace& ns, std::span<const EntryId> chosen)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Blocks a get's AcquireRead counted as misses, found after all (promoted from NVMe).
  void CountMissesAsHits(Namespace* ns, uint64_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Takes a committed, unpinned block out of the tier to make room.
  // An expired block is dropped instead (the policy offers expired blocks first): it is dead,
  // so it is neither demoted nor counted as an eviction.
  void Evict(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Whether a committed block's TTL has run out. A block pinned with SetPinned does not expire
  // while pinned.
  static bool IsExpired(const Entry& e, int64_t now) {
    return e.expires_at_ns != 0 && now >= e.expires_at_ns && !e.user_pinned;
  }

  // The committed, unexpired block of `key`. An expired one is dropped on the way (lazily, so
  // that no reader ever sees a block past its TTL, reaper or not).
  std::optional<uint32_t> FindLive(Namespace* ns, const BlockKey& key, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = ns->index.find(key);
    if (it == ns->index.end() || !it->second.committed) return std::nullopt;
    const uint32_t id = it->second.entry;
    if (IsExpired(entries_[id], now)) {
      DropExpired(id);
      return std::nullopt;
    }
    return id;
  }

  // Takes an expired block out of the index; its slot is freed now, or by the last read lease
  // still holding it.
  void DropExpired(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Drops blocks whose TTL has run out before their space is needed, a bounded batch per call
  // (the daemon calls ExpireLeases every few hundred milliseconds).
  void ReapExpiredBlocks(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Bytes of the slot an entry holds (its size class's slot size).
  uint64_t SlotBytesOf(const Entry& e) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return allocator_.slot_bytes(allocator_.ClassOf(e.slot));
  }

  // Whether `ns` may reserve one more slot of `bytes`: within its quota, or with enough of its
  // own coldest blocks evicted to make room (the namespace pays for its own puts; it does not
  // take other namespaces' memory). False, with nothing evicted, when the blocks it could
  // evict would not make room (the rest are in use).
  bool RoomInQuota(Namespace* ns, uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Keys are hashes already: any 8 of their bytes make a stable fingerprint.
  static uint64_t Fingerprint(const BlockKey& key) {
    uint64_t fingerprint;
    std::memcpy(&fingerprint, key.bytes.data(), sizeof(fingerprint));
    return fingerprint;
  }

  // In a loop over a batch's keys, at key i: starts loading the index slot of the key
  // kPrefetchAhead further on and, with `policy`, what the policy will touch for it. A big
  // index (and the policy's ghost filter) miss the cache on almost every key; loading ahead
  // lets those misses overlap (docs/benchmarks.md, "Per-key cost").
  void PrefetchAhead(const Namespace& ns, std::span<const BlockKey> keys, size_t i,
                     bool policy) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (i + kPrefetchAhead >= keys.size()) return;
    const BlockKey& key = keys[i + kPrefetchAhead];
    ns.index.prefetch(key);
    if (policy) policy_->Prefetch(Fingerprint(key));
  }

  // Bookkeeping for a committed block leaving the index.
  void Uncache(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Publishes a reserved block. `parent`: the cached block its key extends (the previous key of
  // its put batch, committed just before it), for prefix-aware policies.
  void Commit(uint32_t id, int64_t now, std::optional<EntryId> parent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Returns the slot to the allocator. The generation bump comes first: from here on the slot
  // may be reserved and rewritten, and any copy of its old bytes must fail its check.
  void FreeEntry(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void Unpin(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Frees the slots of an unfinished put (live or expired).
  void EndPutLease(Lease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Takes an unfinished put's blocks out of the index (the keys can be put again) but keeps
  // their slots allocated until the lease's tombstone is purged.
  void RetirePutEntries(Lease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Ends a lease on release: read pins drop, unfinished puts are abandoned.
  void EndLease(Lease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  size_t ExpireLocked(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DramTierOptions options_;
  const Clock* const clock_;
  mutable absl::Mutex mu_;
  // The configured policy under the memory controls (TTLs, quotas, priorities; pins are the
  // tier's own, mirrored into it so that expiry skips them).
  const std::unique_ptr<ControlledPolicy> policy_ ABSL_PT_GUARDED_BY(mu_);
  const std::unique_ptr<ShmArena> arena_;
  SlabAllocator allocator_ ABSL_GUARDED_BY(mu_);
  LeaseTable leases_ ABSL_GUARDED_BY(mu_);
  std::vector<Entry, HugePageAllocator<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<NamespaceId, std::unique_ptr<Namespace>> namespaces_ ABSL_GUARDED_BY(mu_);
  uint64_t committed_blocks_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t leases_expired_ ABSL_GUARDED_BY(mu_) = 0;
  TierCounters counters_ ABSL_GUARDED_BY(mu_);
  EvictionListener* listener_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Reused across calls so that the request path does not allocate for them.
  std::vector<uint64_t> scratch_tags_ ABSL_GUARDED_BY(mu_);
  std::vector<SlabId> scratch_slabs_ ABSL_GUARDED_BY(mu_);  // EmptyForReclaim's slabs
  struct RankedEntry {
    VictimRank rank;
    uint32_t entry;
  };
  std::vector<RankedEntry> scratch_ranked_ ABSL_GUARDED_BY(mu_);  // and their blocks
  uint64_t slab_reclaims_ ABSL_GUARDED_BY(mu_) = 0;     // slabs taken by another size class
  uint64_t blocks_moved_ ABSL_GUARDED_BY(mu_) = 0;      // blocks EmptyForReclaim kept
  uint64_t reclaims_ahead_ ABSL_GUARDED_BY(mu_) = 0;    // of slab_reclaims_, ReclaimAhead's
  bool reclaim_is_ahead_ ABSL_GUARDED_BY(mu_) = false;  // ReclaimAhead's reclaim is running
  // Per class: when a put last had to reclaim a slab for it (int64 min: never), for
  // ReclaimAhead.
  std::vector<int64_t> reclaim_demand_ns_ ABSL_GUARDED_BY(mu_);
  // A reclaim's copy in flight: the block, its old and new slot.
  struct Move {
    uint32_t entry;
    SlotHandle from;
    SlotHandle to;
    uint64_t from_offset;
    uint64_t to_offset;
    uint64_t length;
  };
  std::vector<Move> scratch_moves_ ABSL_GUARDED_BY(mu_);
  // Set while a reclaim copies without the lock (the design comment at the top).
  bool reclaiming_ ABSL_GUARDED_BY(mu_) = false;
  // Counts the times mu_ was released in the middle of an operation (a reclaim's copies, a
  // wait for one), so that ReservePut knows to look at the index again.
  uint64_t unlocks_ ABSL_GUARDED_BY(mu_) = 0;
  struct ClassVictim {
    VictimRank rank;
    ClassId cls;
    uint32_t entry;
  };
  std::vector<ClassVictim> scratch_victims_ ABSL_GUARDED_BY(mu_);
  std::vector<LeaseId> scratch_leases_ ABSL_GUARDED_BY(mu_);
  std::vector<EntryId> scratch_quota_victims_ ABSL_GUARDED_BY(mu_);
  // Built once: std::function from a lambda capturing only `this` does not allocate, but
  // building it per call is still wasted work on the put path.
  const std::function<bool(EntryId)> policy_evictable_;
  const std::function<bool(uint64_t)> slot_evictable_;
};

}  // namespace kvtier::tiers
