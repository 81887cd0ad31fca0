// DramTier puts: ReservePut (slots, quotas, encodings), CommitPut (publishing the blocks,
// handing them to a reader) and the end of unfinished puts. Slot allocation and eviction
// are in dram_tier_evict.cc.
#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tiers/src/dram_tier_impl.h"

namespace kvtier::tiers {

LeaseGrant DramTier::Impl::ReservePut(OwnerId owner, NamespaceId ns_id,
                                      std::span<const BlockKey> keys,
                                      std::span<const uint64_t> lengths,
                                      const ReserveOptions& options) {
  LeaseGrant grant = UngrantedFor(keys.size(), absl::StatusCode::kInvalidArgument);
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
    const uint64_t unlocks = unlocks_;
    if (!exhausted) slot = AllocateSlot(cls, id);
    if (!slot) {
      exhausted = true;
      free_entries_.push_back(id);
      grant.codes[i] = absl::StatusCode::kResourceExhausted;
      continue;
    }
    // A reclaim let go of the lock for its copies: another put may have taken the key, or the
    // namespace's quota, meanwhile.
    if (unlocks != unlocks_) {
      auto again = ns->index.find(keys[i]);
      const bool taken = again != ns->index.end();
      if (taken || !RoomInQuota(ns, allocator_.slot_bytes(cls))) {
        allocator_.Free(*slot);
        free_entries_.push_back(id);
        grant.codes[i] =
            !taken ? absl::StatusCode::kResourceExhausted
            : !again->second.committed && entries_[again->second.entry].put_lease == lease_id
                ? absl::StatusCode::kInvalidArgument
                : absl::StatusCode::kAlreadyExists;
        continue;
      }
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

absl::StatusOr<std::vector<absl::StatusCode>> DramTier::Impl::CommitPut(
    OwnerId owner, LeaseId lease_id, const CommitOptions& options) {
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

void DramTier::Impl::HandOffToReader(std::span<const uint32_t> ids,
                                     std::span<const absl::StatusCode> codes, int64_t now,
                                     ReadHandoff* read) {
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

absl::StatusOr<PutLeaseBlocks> DramTier::Impl::GetPutLeaseBlocks(OwnerId owner, LeaseId lease_id) {
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

uint32_t DramTier::Impl::NewEntry() {
  if (!free_entries_.empty()) {
    const uint32_t id = free_entries_.back();
    free_entries_.pop_back();
    return id;
  }
  entries_.emplace_back();
  return static_cast<uint32_t>(entries_.size() - 1);
}

bool DramTier::Impl::ValidEncoding(const Namespace& ns, uint64_t length, const BlockEncoding& enc) {
  if (enc.codec == 0) return enc.raw_length == 0 || enc.raw_length == length;
  return ns.size_steps > 1 && enc.raw_length >= length && enc.raw_length <= ns.block_bytes;
}

ClassId DramTier::Impl::ClassForLength(Namespace* ns, uint64_t length) {
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

bool DramTier::Impl::RoomInQuota(Namespace* ns, uint64_t bytes) {
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

void DramTier::Impl::Commit(uint32_t id, int64_t now, std::optional<EntryId> parent) {
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

void DramTier::Impl::EndPutLease(Lease& lease) {
  for (uint32_t id : lease.entries) {
    Entry& e = entries_[id];
    if (!e.removed) e.ns->index.erase(e.key);
    FreeEntry(id);
  }
  lease.entries.clear();
}

void DramTier::Impl::RetirePutEntries(Lease& lease) {
  for (uint32_t id : lease.entries) {
    Entry& e = entries_[id];
    if (!e.removed) e.ns->index.erase(e.key);
    e.removed = true;
  }
}

}  // namespace kvtier::tiers
