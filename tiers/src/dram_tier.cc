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
// then lower namespace priority, then the older last use (VictimRank). So priorities hold
// across size classes too (a compressed namespace spreads over up to 16 of them). If another
// class's victim ranks below, that class gives up a slab: the one holding its victim when
// none of its blocks is pinned (O(slots of one slab)), else its cheapest run of unpinned slabs
// (FindReclaim restricted to that class); all of its blocks are evicted and the slab goes to
// the class that asked. Otherwise the class evicts its own victim. Ties stay within the class.
// Blocks younger than their slab's oldest one go with it: that is the approximation, bounded
// by one slab per reclaim.
//
// Metadata per cached block, approximately: entry 80 B, index slot ~48 B (36 B key+value at
// <= 7/8 load), LRU node 24 B, allocator 12 B, generation 8 B per page: ~170 B, i.e. 0.26% of
// a 64 KiB block.
#include "kvtier/tiers/dram_tier.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "kvtier/common/units.h"
#include "kvtier/tiers/memory_controls.h"
#include "tiers/src/lease_table.h"
#include "tiers/src/shm_arena.h"
#include "tiers/src/slab_allocator.h"

namespace kvtier::tiers {

using internal::ClassId;
using internal::Lease;
using internal::LeaseKind;
using internal::LeaseTable;
using internal::ShmArena;
using internal::SlabAllocator;
using internal::SlotHandle;

absl::Status DramTierOptions::Validate() const {
  if (page_bytes < 4096 || (page_bytes & (page_bytes - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DRAM tier page_bytes ", page_bytes, " must be a power of two >= 4096"));
  }
  if (slab_bytes == 0 || slab_bytes % page_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("DRAM tier slab_bytes ", slab_bytes,
                                                   " must be a positive multiple of page_bytes (",
                                                   page_bytes, ")"));
  }
  if (capacity_bytes % page_bytes != 0 || capacity_bytes < slab_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DRAM tier capacity ", capacity_bytes, " bytes must be a multiple of page_bytes (",
        page_bytes, ") and at least one slab (", FormatByteSize(slab_bytes), ")"));
  }
  // Keeps table + data (and every offset sum) far from uint64 overflow.
  if (capacity_bytes > (uint64_t{1} << 50)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DRAM tier capacity ", FormatByteSize(capacity_bytes), " exceeds 1 PiB"));
  }
  if (lease_timeout_ns <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DRAM tier lease_timeout_ns ", lease_timeout_ns, " must be positive"));
  }
  if (memfd_name.empty() || memfd_name.size() > 249) {
    return absl::InvalidArgumentError("DRAM tier memfd_name must be 1 to 249 bytes");
  }
  return absl::OkStatus();
}

namespace {

enum class EntryState : uint8_t { kFree, kWriting, kCommitted };

// How many keys ahead a batch loop starts loading a key's index slot (PrefetchAhead): enough
// to cover a DRAM miss with the work of the keys in between, few enough that the lines are
// still in L1 when their key comes up.
constexpr size_t kPrefetchAhead = 8;

}  // namespace

class DramTier::Impl {
 public:
  Impl(const DramTierOptions& options, const Clock* clock, std::unique_ptr<ControlledPolicy> policy,
       std::unique_ptr<ShmArena> arena)
      : options_(options),
        clock_(clock),
        policy_(std::move(policy)),
        arena_(std::move(arena)),
        allocator_(arena_->data_offset(), arena_->data_bytes(), options.page_bytes,
                   options.slab_bytes),
        leases_(options.lease_timeout_ns),
        // Entries in the policy are committed and in the index; only pins keep them.
        policy_evictable_(
            [this](EntryId id) { return entries_[id].pins == 0 && !entries_[id].user_pinned; }),
        slot_evictable_([this](uint64_t tag) {
          const Entry& e = entries_[tag];
          return e.state == EntryState::kCommitted && !e.removed && e.pins == 0 && !e.user_pinned;
        }) {}

  const ShmArena& arena() const { return *arena_; }

  absl::Status AddNamespace(NamespaceId ns_id, uint64_t block_bytes, uint32_t size_steps) {
    if (size_steps == 0 || size_steps > DramTier::kMaxSizeSteps) {
      return absl::InvalidArgumentError(absl::StrCat("namespace ", ns_id, ": size_steps ",
                                                     size_steps, " is not in [1, ",
                                                     DramTier::kMaxSizeSteps, "]"));
    }
    if (block_bytes == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("namespace ", ns_id, ": block_bytes must be at least 1"));
    }
    const uint64_t page = options_.page_bytes;
    if (block_bytes > options_.capacity_bytes ||
        (block_bytes + page - 1) / page * page > options_.capacity_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "namespace ", ns_id, ": block of ", FormatByteSize(block_bytes),
          " does not fit the DRAM tier's capacity of ", FormatByteSize(options_.capacity_bytes)));
    }
    absl::MutexLock lock(&mu_);
    auto it = namespaces_.find(ns_id);
    if (it != namespaces_.end()) {
      if (it->second->block_bytes == block_bytes && it->second->size_steps == size_steps) {
        return absl::OkStatus();
      }
      return absl::AlreadyExistsError(absl::StrCat(
          "namespace ", ns_id, " is registered with block_bytes ", it->second->block_bytes,
          " and size_steps ", it->second->size_steps, ", not ", block_bytes, " and ", size_steps));
    }
    auto ns = std::make_unique<Namespace>();
    ns->id = ns_id;
    ns->block_bytes = block_bytes;
    ns->size_steps = size_steps;
    ns->cls = allocator_.ClassFor(block_bytes);
    ns->classes.push_back(ns->cls);
    namespaces_.emplace(ns_id, std::move(ns));
    return absl::OkStatus();
  }

  size_t LookupPrefix(NamespaceId ns_id, std::span<const BlockKey> keys) {
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

  LeaseGrant ReservePut(OwnerId owner, NamespaceId ns_id, std::span<const BlockKey> keys,
                        std::span<const uint64_t> lengths, const ReserveOptions& options) {
    LeaseGrant grant;
    grant.codes.assign(keys.size(), absl::StatusCode::kInvalidArgument);
    grant.slots.resize(keys.size());
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowNanos();
    // Space held by leases that have run out goes back before anything is evicted for it.
    ExpireLocked(now);
    Namespace* ns = FindNamespace(ns_id);
    if (ns == nullptr || lengths.size() != keys.size()) return grant;

    const LeaseId lease_id = leases_.NextId();
    const int64_t ttl = options.ttl_nanos > 0 ? options.ttl_nanos : ns->limits.default_ttl_nanos;
    std::vector<uint32_t> granted = leases_.TakeVector();
    bool exhausted = false;  // once nothing is evictable, the rest of the batch fails fast
    size_t previous_granted = keys.size();  // request index of the last key granted, if any
    const bool encoded = !options.encodings.empty();
    if (encoded && options.encodings.size() != keys.size()) return grant;
    for (size_t i = 0; i < keys.size(); ++i) {
      const uint64_t length = lengths[i];
      if (length == 0 || length > ns->block_bytes) continue;  // kInvalidArgument
      const BlockEncoding encoding = encoded ? options.encodings[i] : BlockEncoding{};
      if (!ValidEncoding(*ns, length, encoding)) continue;  // kInvalidArgument
      PrefetchAhead(*ns, keys, i, /*policy=*/false);
      FindLive(ns, keys[i], now);  // an expired block of the key goes now
      auto it = ns->index.find(keys[i]);
      if (it != ns->index.end()) {
        const bool same_batch =
            !it->second.committed && entries_[it->second.entry].put_lease == lease_id;
        grant.codes[i] =
            same_batch ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kAlreadyExists;
        continue;
      }
      const ClassId cls = ClassForLength(ns, length);
      if (!exhausted && !RoomInQuota(ns, allocator_.slot_bytes(cls))) {
        grant.codes[i] = absl::StatusCode::kResourceExhausted;
        continue;
      }
      std::optional<SlotHandle> slot;
      const uint32_t id = NewEntry();
      if (!exhausted) slot = AllocateSlot(cls, id);
      if (!slot) {
        exhausted = true;
        free_entries_.push_back(id);
        grant.codes[i] = absl::StatusCode::kResourceExhausted;
        continue;
      }
      Entry& e = entries_[id];
      e.key = keys[i];
      e.ns = ns;
      e.slot = *slot;
      e.offset = allocator_.Offset(*slot);
      e.length = length;
      e.codec = encoding.codec;
      e.raw_length = encoding.raw_length == 0 ? length : encoding.raw_length;
      e.put_lease = lease_id;
      e.pins = 0;
      e.state = EntryState::kWriting;
      e.removed = false;
      e.hits = 0;
      e.persisted = options.persisted;
      e.user_pinned = false;
      e.expires_at_ns = ttl;
      ns->writing_slot_bytes += allocator_.slot_bytes(cls);
      // The key before it in the batch is its prefix parent when it is granted too (the lease
      // commits its entries in order, so the parent enters the policy first).
      e.parent_is_previous = i > 0 && previous_granted == i - 1;
      previous_granted = i;
      ns->index.emplace(keys[i], IndexValue{id, false});
      grant.codes[i] = absl::StatusCode::kOk;
      grant.slots[i] = RefOf(e);
      granted.push_back(id);
    }
    if (!granted.empty()) {
      leases_.Add(lease_id, owner, LeaseKind::kPut, now, std::move(granted));
      grant.lease_id = lease_id;
    }
    return grant;
  }

  absl::StatusOr<std::vector<absl::StatusCode>> CommitPut(OwnerId owner, LeaseId lease_id,
                                                          const CommitOptions& options) {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowNanos();
    Lease* lease = leases_.Find(lease_id);
    if (lease == nullptr || lease->owner != owner) return LeaseNotFound(lease_id);
    if (lease->kind != LeaseKind::kPut) {
      return absl::InvalidArgumentError(
          absl::StrCat("lease ", lease_id, " is a read lease; only put leases are committed"));
    }
    std::vector<absl::StatusCode> codes(lease->entries.size(), absl::StatusCode::kOk);
    if (!options.lengths.empty() || !options.ttls.empty() || !options.encodings.empty()) {
      const size_t n = lease->entries.size();
      bool valid = (options.lengths.empty() || options.lengths.size() == n) &&
                   (options.ttls.empty() || options.ttls.size() == n) &&
                   (options.encodings.empty() || options.encodings.size() == n);
      for (size_t j = 0; valid && j < n; ++j) {
        const Entry& e = entries_[lease->entries[j]];
        const uint64_t length = options.lengths.empty() ? e.length : options.lengths[j];
        valid = length >= 1 && length <= e.length &&
                (options.encodings.empty() || ValidEncoding(*e.ns, length, options.encodings[j]));
      }
      if (!valid) {
        std::fill(codes.begin(), codes.end(), absl::StatusCode::kInvalidArgument);
        return codes;
      }
    }
    if (CheckExpired(*lease, now)) {
      EndPutLease(*lease);
      std::fill(codes.begin(), codes.end(), absl::StatusCode::kDeadlineExceeded);
    } else {
      std::optional<EntryId> previous;
      for (size_t j = 0; j < lease->entries.size(); ++j) {
        if (j + kPrefetchAhead < lease->entries.size()) {
          const Entry& ahead = entries_[lease->entries[j + kPrefetchAhead]];
          if (ahead.ns != nullptr) ahead.ns->index.prefetch(ahead.key);
          policy_->Prefetch(Fingerprint(ahead.key));
        }
        const uint32_t id = lease->entries[j];
        if (entries_[id].removed) {
          // Removed while being written (Remove): committing it would bring back a block
          // whose remove has returned. Its slot goes back now.
          codes[j] = absl::StatusCode::kAborted;
          FreeEntry(id);
          continue;
        }
        entries_[id].persisted |= options.persisted;
        Entry& e = entries_[id];
        if (!options.lengths.empty()) e.length = options.lengths[j];
        if (!options.encodings.empty()) {
          e.codec = options.encodings[j].codec;
          e.raw_length = options.encodings[j].raw_length;
        }
        if (e.codec == 0 || e.raw_length == 0) e.raw_length = e.length;
        // While writing, expires_at_ns held the TTL asked for at ReservePut.
        const int64_t ttl = options.ttls.empty() ? entries_[id].expires_at_ns : options.ttls[j];
        entries_[id].expires_at_ns = ttl > 0 ? now + ttl : 0;
        Commit(id, now, entries_[id].parent_is_previous ? previous : std::nullopt);
        previous = id;
      }
      if (options.read != nullptr) HandOffToReader(lease->entries, codes, now, options.read);
    }
    leases_.Erase(lease_id);
    return codes;
  }

  // Pins freshly committed blocks under a read lease (CommitOptions::read).
  void HandOffToReader(std::span<const uint32_t> ids, std::span<const absl::StatusCode> codes,
                       int64_t now, ReadHandoff* read) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Lease* reader = nullptr;
    if (read->lease != 0) {
      reader = leases_.Find(read->lease);
      if (reader == nullptr || reader->owner != read->owner || reader->kind != LeaseKind::kRead ||
          CheckExpired(*reader, now)) {
        return;
      }
    }
    std::vector<uint32_t> granted = leases_.TakeVector();
    read->slots.clear();
    Namespace* ns = nullptr;
    for (size_t j = 0; j < ids.size(); ++j) {
      if (codes[j] != absl::StatusCode::kOk) {  // not committed: an empty slot keeps the order
        read->slots.push_back(SlotRef{});
        continue;
      }
      read->slots.push_back(PinEntry(ids[j], now));
      granted.push_back(ids[j]);
      ns = entries_[ids[j]].ns;
    }
    if (ns != nullptr) CountMissesAsHits(ns, granted.size());
    read->lease = AddToReadLease(reader, read->lease, read->owner, now, std::move(granted));
  }

  // Adds pinned entries to a live read lease (`lease`, its id `lease_id`), or to a new one of
  // `owner` when `lease` is null. Returns the id of the lease holding them.
  LeaseId AddToReadLease(Lease* lease, LeaseId lease_id, OwnerId owner, int64_t now,
                         std::vector<uint32_t> granted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (lease != nullptr) {
      lease->entries.insert(lease->entries.end(), granted.begin(), granted.end());
      return lease_id;
    }
    const LeaseId id = leases_.NextId();
    leases_.Add(id, owner, LeaseKind::kRead, now, std::move(granted));
    return id;
  }

  absl::StatusOr<PutLeaseBlocks> GetPutLeaseBlocks(OwnerId owner, LeaseId lease_id) {
    absl::MutexLock lock(&mu_);
    const Lease* lease = leases_.Find(lease_id);
    if (lease == nullptr || lease->owner != owner) return LeaseNotFound(lease_id);
    if (lease->kind != LeaseKind::kPut) {
      return absl::InvalidArgumentError(absl::StrCat("lease ", lease_id, " is a read lease"));
    }
    if (lease->expired || clock_->NowNanos() >= lease->deadline_ns) {
      return absl::DeadlineExceededError(absl::StrCat("put lease ", lease_id, " expired"));
    }
    PutLeaseBlocks out;
    out.keys.reserve(lease->entries.size());
    out.slots.reserve(lease->entries.size());
    if (!lease->entries.empty()) out.ttl_nanos = entries_[lease->entries.front()].expires_at_ns;
    for (uint32_t id : lease->entries) {
      const Entry& e = entries_[id];
      out.ns = e.ns->id;
      out.keys.push_back(e.key);
      out.slots.push_back(RefOf(e));
    }
    return out;
  }

  std::vector<absl::StatusCode> SetPinned(NamespaceId ns_id, std::span<const BlockKey> keys,
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

  std::vector<bool> Present(NamespaceId ns_id, std::span<const BlockKey> keys, bool touch) {
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

  std::vector<BlockListing> ListBlocks() const {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowNanos();
    std::vector<std::pair<int64_t, BlockListing>> all;
    all.reserve(committed_blocks_);
    for (const auto& [ns_id, ns] : namespaces_) {
      for (const auto& [key, v] : ns->index) {
        if (!v.committed) continue;
        const Entry& e = entries_[v.entry];
        if (IsExpired(e, now)) continue;  // not worth saving
        all.push_back(
            {e.last_use_ns,
             BlockListing{ns_id, key, e.offset, e.length, e.hits, e.persisted,
                          e.expires_at_ns == 0 ? 0 : e.expires_at_ns - now, EncodingOf(e)}});
      }
    }
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<BlockListing> out;
    out.reserve(all.size());
    for (auto& [t, b] : all) out.push_back(b);
    return out;
  }

  void SetEvictionListener(EvictionListener* listener) {
    absl::MutexLock lock(&mu_);
    listener_ = listener;
  }

  LeaseGrant ExtendRead(OwnerId owner, LeaseId lease_id, NamespaceId ns_id,
                        std::span<const BlockKey> keys) {
    LeaseGrant grant;
    grant.codes.assign(keys.size(), absl::StatusCode::kNotFound);
    grant.slots.resize(keys.size());
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

  LeaseGrant AcquireRead(OwnerId owner, NamespaceId ns_id, std::span<const BlockKey> keys) {
    LeaseGrant grant;
    grant.codes.assign(keys.size(), absl::StatusCode::kNotFound);
    grant.slots.resize(keys.size());
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

  absl::StatusOr<bool> Release(OwnerId owner, LeaseId lease_id) {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowNanos();
    Lease* lease = leases_.Find(lease_id);
    if (lease == nullptr || lease->owner != owner) return LeaseNotFound(lease_id);
    const bool expired = CheckExpired(*lease, now);
    EndLease(*lease);
    leases_.Erase(lease_id);
    return expired;
  }

  void ReleaseOwner(OwnerId owner) {
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

  size_t ExpireLeases() {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowNanos();
    ReapExpiredBlocks(now);
    return ExpireLocked(now);
  }

  absl::Status SetNamespaceLimits(NamespaceId ns_id, const NamespaceLimits& limits) {
    absl::MutexLock lock(&mu_);
    Namespace* ns = FindNamespace(ns_id);
    if (ns == nullptr) return absl::NotFoundError(absl::StrCat("namespace ", ns_id, " unknown"));
    // A quota smaller than a full-size slot would refuse full-size puts: it counts as one.
    const uint64_t max_slot_bytes =
        limits.quota_bytes == 0 ? 0 : std::max(limits.quota_bytes, allocator_.slot_bytes(ns->cls));
    KVTIER_RETURN_IF_ERROR(policy_->SetLimits(
        ns_id, GroupLimits{.max_bytes = max_slot_bytes, .priority = limits.priority}));
    ns->limits = limits;
    ns->max_slot_bytes = max_slot_bytes;
    // A lowered quota takes effect now: the namespace's own coldest blocks go (and are demoted,
    // as any eviction), not only on its next put.
    while (ns->max_slot_bytes != 0 && ns->slot_bytes > ns->max_slot_bytes) {
      std::optional<EntryId> v = QuotaVictim(*ns, {});
      if (!v) break;  // the rest are in use; they count against the quota until released
      Count(ns, &TierCounters::quota_evictions, 1);
      Evict(static_cast<uint32_t>(*v));
    }
    return absl::OkStatus();
  }

  std::vector<absl::StatusCode> Remove(NamespaceId ns_id, std::span<const BlockKey> keys) {
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

  void RecordBytesOut(NamespaceId ns_id, uint64_t bytes) {
    absl::MutexLock lock(&mu_);
    Count(FindNamespace(ns_id), &TierCounters::bytes_out, bytes);
  }

  TierSnapshot Snapshot() const {
    absl::MutexLock lock(&mu_);
    TierSnapshot s;
    s.capacity_bytes = options_.capacity_bytes;
    s.used_bytes = allocator_.used_bytes();
    s.blocks = committed_blocks_;
    for (const auto& [id, ns] : namespaces_) {
      s.stored_bytes += ns->used_bytes;
      s.raw_bytes += ns->raw_bytes;
    }
    s.leases_active = leases_.live();
    s.leases_expired = leases_expired_;
    s.counters = counters_;
    s.namespaces.reserve(namespaces_.size());
    for (const auto& [id, ns] : namespaces_) {
      s.namespaces.push_back(NamespaceSnapshot{.namespace_id = id,
                                               .block_bytes = ns->block_bytes,
                                               .blocks = ns->blocks,
                                               .used_bytes = ns->used_bytes,
                                               .raw_bytes = ns->raw_bytes,
                                               .slot_bytes = ns->slot_bytes,
                                               .pinned_blocks = ns->pinned_blocks,
                                               .quota_bytes = ns->limits.quota_bytes,
                                               .priority = ns->limits.priority,
                                               .default_ttl_nanos = ns->limits.default_ttl_nanos,
                                               .counters = ns->counters});
    }
    std::sort(s.namespaces.begin(), s.namespaces.end(),
              [](const NamespaceSnapshot& a, const NamespaceSnapshot& b) {
                return a.namespace_id < b.namespace_id;
              });
    return s;
  }

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
    absl::flat_hash_map<BlockKey, IndexValue> index;
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

  uint32_t NewEntry() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!free_entries_.empty()) {
      const uint32_t id = free_entries_.back();
      free_entries_.pop_back();
      return id;
    }
    entries_.emplace_back();
    return static_cast<uint32_t>(entries_.size() - 1);
  }

  // A slot of `cls` for entry `tag`: a free one (or a new slab from free space); else, when the
  // class has an evictable block, one global recency order at slab granularity (see the top of
  // this file): a slab of the class whose next victim is oldest, if that is older than this
  // class's own victim, else this class's victim; else room for a new slab made by emptying
  // slabs of any class; else nullopt.
  std::optional<SlotHandle> AllocateSlot(ClassId cls, uint32_t tag)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (auto slot = allocator_.Allocate(cls, tag)) return slot;
    if (allocator_.slab_count(cls) > 0) {
      if (std::optional<EntryId> victim = policy_->PickVictim(cls, policy_evictable_)) {
        if (ReclaimOlderSlab(cls, RankOf(*victim))) {
          return allocator_.Allocate(cls, tag);
        }
        Evict(static_cast<uint32_t>(*victim));
        return allocator_.Allocate(cls, tag);
      }
    }
    // The class has no slab to evict from (or all of its blocks are pinned): take whole slabs
    // from other classes.
    scratch_tags_.clear();
    if (!allocator_.FindReclaim(cls, slot_evictable_, &scratch_tags_)) return std::nullopt;
    for (uint64_t victim : scratch_tags_) Evict(static_cast<uint32_t>(victim));
    return allocator_.Allocate(cls, tag);
  }

  // How soon a class's next victim should go, against other classes' victims: as PickVictim
  // orders within a class, expired blocks first, then those of namespaces over their quota,
  // then lower priorities, then the older last use. Lower goes first.
  struct VictimRank {
    int state;  // 0 expired, 1 over quota, 2 otherwise
    int32_t priority;
    int64_t last_use;
    friend auto operator<=>(const VictimRank&, const VictimRank&) = default;
  };
  VictimRank RankOf(EntryId id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Entry& e = entries_[id];
    const Namespace& ns = *e.ns;
    const bool over_quota = ns.max_slot_bytes != 0 && ns.slot_bytes > ns.max_slot_bytes;
    const int state = IsExpired(e, clock_->NowNanos()) ? 0 : over_quota ? 1 : 2;
    return VictimRank{state, state == 2 ? ns.limits.priority : 0, e.last_use_ns};
  }

  // Empties a slab (or a run of slabs) of the other class whose next victim ranks lowest, when
  // it ranks below `own` (the rank of `cls`'s own victim), so that a new slab of `cls` fits.
  // Candidates are tried lowest first: the slab holding the victim, then the class's cheapest
  // run of unpinned slabs. Returns whether anything was evicted.
  bool ReclaimOlderSlab(ClassId cls, const VictimRank& own) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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
      if (allocator_.ReclaimSlab(cls, entries_[c.entry].slot.slab, slot_evictable_,
                                 &scratch_tags_) ||
          allocator_.FindReclaim(cls, slot_evictable_, &scratch_tags_, c.cls)) {
        for (uint64_t victim : scratch_tags_) Evict(static_cast<uint32_t>(victim));
        return true;
      }
    }
    return false;
  }

  // A get's use of the committed blocks among `keys`: pins each (one pin per occurrence),
  // stamps its use for eviction, fills its code and slot in `grant` and adds it to `granted`.
  void PinCommitted(Namespace* ns, std::span<const BlockKey> keys, int64_t now, LeaseGrant* grant,
                    std::vector<uint32_t>* granted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

  // One more read pin on a committed block; a read is a use for eviction.
  SlotRef PinEntry(uint32_t id, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry& e = entries_[id];
    ++e.pins;
    e.last_use_ns = now;
    if (e.hits < UINT16_MAX) ++e.hits;
    policy_->OnAccess(id);
    return RefOf(e);
  }

  static BlockEncoding EncodingOf(const Entry& e) {
    return BlockEncoding{.codec = e.codec, .raw_length = e.codec == 0 ? 0 : e.raw_length};
  }
  SlotRef RefOf(const Entry& e) const {
    return SlotRef{e.offset, e.length, arena_->Generation(e.offset), EncodingOf(e)};
  }

  // An encoding a block of `length` stored bytes may carry in `ns` (ReserveOptions::encodings).
  static bool ValidEncoding(const Namespace& ns, uint64_t length, const BlockEncoding& enc) {
    if (enc.codec == 0) return enc.raw_length == 0 || enc.raw_length == length;
    return ns.size_steps > 1 && enc.raw_length >= length && enc.raw_length <= ns.block_bytes;
  }

  // The size class for a block of `length` stored bytes in `ns`: the smallest of its
  // size_steps slot sizes that holds it (AddNamespace).
  ClassId ClassForLength(Namespace* ns, uint64_t length) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ns->size_steps == 1) return ns->cls;
    const uint64_t n = ns->size_steps;
    const uint64_t step = (length * n + ns->block_bytes - 1) / ns->block_bytes;  // 1..n
    const uint64_t bytes = (ns->block_bytes * step + n - 1) / n;
    const ClassId cls = allocator_.ClassFor(bytes);
    if (std::find(ns->classes.begin(), ns->classes.end(), cls) == ns->classes.end()) {
      ns->classes.push_back(cls);
    }
    return cls;
  }

  // The namespace's coldest evictable block over all of its size classes, for its quota,
  // leaving out the blocks in `chosen` (victims picked already, not yet evicted).
  std::optional<EntryId> QuotaVictim(const Namespace& ns, std::span<const EntryId> chosen)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto evictable = [this, &chosen](EntryId id) {
      return policy_evictable_(id) && std::find(chosen.begin(), chosen.end(), id) == chosen.end();
    };
    std::optional<EntryId> best;
    for (ClassId cls : ns.classes) {
      std::optional<EntryId> v = chosen.empty()
                                     ? policy_->GroupVictim(ns.id, cls, policy_evictable_)
                                     : policy_->GroupVictim(ns.id, cls, evictable);
      if (v && (!best || entries_[*v].last_use_ns < entries_[*best].last_use_ns)) best = v;
    }
    return best;
  }

  // Blocks a get's AcquireRead counted as misses, found after all (promoted from NVMe).
  void CountMissesAsHits(Namespace* ns, uint64_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Count(ns, &TierCounters::hits, n);
    counters_.misses -= std::min(counters_.misses, n);
    ns->counters.misses -= std::min(ns->counters.misses, n);
  }

  // Takes a committed, unpinned block out of the tier to make room.
  // An expired block is dropped instead (the policy offers expired blocks first): it is dead,
  // so it is neither demoted nor counted as an eviction.
  void Evict(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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
  void DropExpired(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

  // Drops blocks whose TTL has run out before their space is needed, a bounded batch per call
  // (the daemon calls ExpireLeases every few hundred milliseconds).
  void ReapExpiredBlocks(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    constexpr size_t kBatch = 1024;
    for (EntryId id : policy_->ExpiredBlocks(kBatch)) {
      if (IsExpired(entries_[id], now)) DropExpired(static_cast<uint32_t>(id));
    }
  }

  // Bytes of the slot an entry holds (its size class's slot size).
  uint64_t SlotBytesOf(const Entry& e) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return allocator_.slot_bytes(allocator_.ClassOf(e.slot));
  }

  // Whether `ns` may reserve one more slot of `bytes`: within its quota, or with enough of its
  // own coldest blocks evicted to make room (the namespace pays for its own puts; it does not
  // take other namespaces' memory). False, with nothing evicted, when the blocks it could
  // evict would not make room (the rest are in use).
  bool RoomInQuota(Namespace* ns, uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint64_t held = ns->slot_bytes + ns->writing_slot_bytes;
    if (ns->max_slot_bytes == 0 || held + bytes <= ns->max_slot_bytes) return true;
    // bytes <= max_slot_bytes (one full-size slot at least), so this is at most `held`.
    const uint64_t needed = held + bytes - ns->max_slot_bytes;
    scratch_quota_victims_.clear();
    for (uint64_t freed = 0; freed < needed;) {
      std::optional<EntryId> v = QuotaVictim(*ns, scratch_quota_victims_);
      if (!v) return false;
      scratch_quota_victims_.push_back(*v);
      freed += SlotBytesOf(entries_[*v]);
    }
    Count(ns, &TierCounters::quota_evictions, scratch_quota_victims_.size());
    for (EntryId v : scratch_quota_victims_) Evict(static_cast<uint32_t>(v));
    return true;
  }

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
  void Uncache(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

  // Publishes a reserved block. `parent`: the cached block its key extends (the previous key of
  // its put batch, committed just before it), for prefix-aware policies.
  void Commit(uint32_t id, int64_t now, std::optional<EntryId> parent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry& e = entries_[id];
    Namespace* ns = e.ns;
    e.state = EntryState::kCommitted;
    e.last_use_ns = now;
    ns->index.find(e.key)->second.committed = true;
    const uint64_t fingerprint = Fingerprint(e.key);
    const uint64_t slot_bytes = SlotBytesOf(e);
    policy_->OnInsertControlled(
        id,
        BlockInfo{
            .size_class = allocator_.ClassOf(e.slot), .fingerprint = fingerprint, .parent = parent},
        BlockControls{.group = ns->id, .bytes = slot_bytes, .expires_at_nanos = e.expires_at_ns});
    ns->writing_slot_bytes -= slot_bytes;
    ns->slot_bytes += slot_bytes;
    ++ns->blocks;
    ns->used_bytes += e.length;
    ns->raw_bytes += e.raw_length;
    ++committed_blocks_;
    Count(ns, &TierCounters::puts, 1);
    Count(ns, &TierCounters::bytes_in, e.length);
  }

  // Returns the slot to the allocator. The generation bump comes first: from here on the slot
  // may be reserved and rewritten, and any copy of its old bytes must fail its check.
  void FreeEntry(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry& e = entries_[id];
    if (e.state == EntryState::kWriting) e.ns->writing_slot_bytes -= SlotBytesOf(e);
    arena_->BumpGeneration(e.offset);
    allocator_.Free(e.slot);
    e.state = EntryState::kFree;
    e.ns = nullptr;
    e.pins = 0;
    e.put_lease = 0;
    e.removed = false;
    free_entries_.push_back(id);
  }

  void Unpin(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry& e = entries_[id];
    if (--e.pins == 0 && e.removed) FreeEntry(id);
  }

  // Frees the slots of an unfinished put (live or expired).
  void EndPutLease(Lease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (uint32_t id : lease.entries) {
      Entry& e = entries_[id];
      if (!e.removed) e.ns->index.erase(e.key);
      FreeEntry(id);
    }
    lease.entries.clear();
  }

  // Takes an unfinished put's blocks out of the index (the keys can be put again) but keeps
  // their slots allocated until the lease's tombstone is purged.
  void RetirePutEntries(Lease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (uint32_t id : lease.entries) {
      Entry& e = entries_[id];
      if (!e.removed) e.ns->index.erase(e.key);
      e.removed = true;
    }
  }

  // Ends a lease on release: read pins drop, unfinished puts are abandoned.
  void EndLease(Lease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (lease.kind == LeaseKind::kRead) {
      for (uint32_t id : lease.entries) Unpin(id);
      lease.entries.clear();
    } else {
      EndPutLease(lease);
    }
  }

  size_t ExpireLocked(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

  const DramTierOptions options_;
  const Clock* const clock_;
  mutable absl::Mutex mu_;
  // The configured policy under the memory controls (TTLs, quotas, priorities; pins are the
  // tier's own, mirrored into it so that expiry skips them).
  const std::unique_ptr<ControlledPolicy> policy_ ABSL_PT_GUARDED_BY(mu_);
  const std::unique_ptr<ShmArena> arena_;
  SlabAllocator allocator_ ABSL_GUARDED_BY(mu_);
  LeaseTable leases_ ABSL_GUARDED_BY(mu_);
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<NamespaceId, std::unique_ptr<Namespace>> namespaces_ ABSL_GUARDED_BY(mu_);
  uint64_t committed_blocks_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t leases_expired_ ABSL_GUARDED_BY(mu_) = 0;
  TierCounters counters_ ABSL_GUARDED_BY(mu_);
  EvictionListener* listener_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Reused across calls so that the request path does not allocate for them.
  std::vector<uint64_t> scratch_tags_ ABSL_GUARDED_BY(mu_);
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

absl::StatusOr<std::unique_ptr<DramTier>> DramTier::Create(const DramTierOptions& options,
                                                           const Clock* clock,
                                                           std::unique_ptr<EvictionPolicy> policy) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  if (clock == nullptr) return absl::InvalidArgumentError("DramTier needs a clock");
  if (policy == nullptr) policy = NewLruPolicy();
  KVTIER_ASSIGN_OR_RETURN(auto controlled, ControlledPolicy::Create(std::move(policy), {}, clock));
  KVTIER_ASSIGN_OR_RETURN(
      auto arena, ShmArena::Create(options.memfd_name, options.page_bytes, options.capacity_bytes,
                                   options.preallocate));
  return std::unique_ptr<DramTier>(new DramTier(
      std::make_unique<Impl>(options, clock, std::move(controlled), std::move(arena))));
}

DramTier::DramTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DramTier::~DramTier() = default;

int DramTier::arena_fd() const { return impl_->arena().fd(); }
uint64_t DramTier::arena_bytes() const { return impl_->arena().size(); }
uint64_t DramTier::generation_table_bytes() const { return impl_->arena().table_bytes(); }
uint32_t DramTier::page_bytes() const { return impl_->arena().page_bytes(); }
std::byte* DramTier::arena_base() const { return impl_->arena().base(); }
uint64_t DramTier::SlotGeneration(uint64_t offset) const {
  return impl_->arena().Generation(offset);
}

absl::Status DramTier::AddNamespace(NamespaceId ns, uint64_t block_bytes, uint32_t size_steps) {
  return impl_->AddNamespace(ns, block_bytes, size_steps);
}
size_t DramTier::LookupPrefix(NamespaceId ns, std::span<const BlockKey> keys) {
  return impl_->LookupPrefix(ns, keys);
}
LeaseGrant DramTier::ReservePut(OwnerId owner, NamespaceId ns, std::span<const BlockKey> keys,
                                std::span<const uint64_t> lengths, const ReserveOptions& options) {
  return impl_->ReservePut(owner, ns, keys, lengths, options);
}
absl::StatusOr<std::vector<absl::StatusCode>> DramTier::CommitPut(OwnerId owner, LeaseId lease,
                                                                  const CommitOptions& options) {
  return impl_->CommitPut(owner, lease, options);
}
absl::StatusOr<PutLeaseBlocks> DramTier::GetPutLeaseBlocks(OwnerId owner, LeaseId lease) {
  return impl_->GetPutLeaseBlocks(owner, lease);
}
LeaseGrant DramTier::ExtendRead(OwnerId owner, LeaseId lease, NamespaceId ns,
                                std::span<const BlockKey> keys) {
  return impl_->ExtendRead(owner, lease, ns, keys);
}
std::vector<absl::StatusCode> DramTier::SetPinned(NamespaceId ns, std::span<const BlockKey> keys,
                                                  bool pinned) {
  return impl_->SetPinned(ns, keys, pinned);
}
std::vector<bool> DramTier::Present(NamespaceId ns, std::span<const BlockKey> keys) {
  return impl_->Present(ns, keys, /*touch=*/false);
}
std::vector<bool> DramTier::Touch(NamespaceId ns, std::span<const BlockKey> keys) {
  return impl_->Present(ns, keys, /*touch=*/true);
}
std::vector<BlockListing> DramTier::ListBlocks() const { return impl_->ListBlocks(); }
void DramTier::SetEvictionListener(EvictionListener* listener) {
  impl_->SetEvictionListener(listener);
}
LeaseGrant DramTier::AcquireRead(OwnerId owner, NamespaceId ns, std::span<const BlockKey> keys) {
  return impl_->AcquireRead(owner, ns, keys);
}
absl::StatusOr<bool> DramTier::Release(OwnerId owner, LeaseId lease) {
  return impl_->Release(owner, lease);
}
void DramTier::ReleaseOwner(OwnerId owner) { impl_->ReleaseOwner(owner); }
size_t DramTier::ExpireLeases() { return impl_->ExpireLeases(); }
absl::Status DramTier::SetNamespaceLimits(NamespaceId ns, const NamespaceLimits& limits) {
  return impl_->SetNamespaceLimits(ns, limits);
}
std::vector<absl::StatusCode> DramTier::Remove(NamespaceId ns, std::span<const BlockKey> keys) {
  return impl_->Remove(ns, keys);
}
void DramTier::RecordBytesOut(NamespaceId ns, uint64_t bytes) { impl_->RecordBytesOut(ns, bytes); }
TierSnapshot DramTier::Snapshot() const { return impl_->Snapshot(); }

}  // namespace kvtier::tiers
