// DramTier: its options, the public facade (forwarding to DramTier::Impl), the Impl's
// constructor, namespaces and their limits, listings and stats. The put path is in
// dram_tier_put.cc, the read path in dram_tier_read.cc, eviction and expiry in
// dram_tier_evict.cc; dram_tier_impl.h describes the shared state.
#include "kvtier/tiers/dram_tier.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/units.h"
#include "tiers/src/dram_tier_impl.h"

namespace kvtier::tiers {

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

DramTier::Impl::Impl(const DramTierOptions& options, const Clock* clock,
                     std::unique_ptr<ControlledPolicy> policy, std::unique_ptr<ShmArena> arena)
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

absl::Status DramTier::Impl::AddNamespace(NamespaceId ns_id, uint64_t block_bytes,
                                          uint32_t size_steps) {
  if (size_steps == 0 || size_steps > DramTier::kMaxSizeSteps) {
    return absl::InvalidArgumentError(absl::StrCat("namespace ", ns_id, ": size_steps ", size_steps,
                                                   " is not in [1, ", DramTier::kMaxSizeSteps,
                                                   "]"));
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

std::vector<BlockListing> DramTier::Impl::ListBlocks() const {
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
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<BlockListing> out;
  out.reserve(all.size());
  for (auto& [t, b] : all) out.push_back(b);
  return out;
}

void DramTier::Impl::SetEvictionListener(EvictionListener* listener) {
  absl::MutexLock lock(&mu_);
  listener_ = listener;
}

absl::Status DramTier::Impl::SetNamespaceLimits(NamespaceId ns_id, const NamespaceLimits& limits) {
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

void DramTier::Impl::RecordBytesOut(NamespaceId ns_id, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  Count(FindNamespace(ns_id), &TierCounters::bytes_out, bytes);
}

TierSnapshot DramTier::Impl::Snapshot() const {
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
  s.slab_reclaims = slab_reclaims_;
  s.blocks_moved = blocks_moved_;
  s.slab_reclaims_ahead = reclaims_ahead_;
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
DramTier::AheadResult DramTier::ReclaimAhead() { return impl_->ReclaimAhead(); }
absl::Status DramTier::SetNamespaceLimits(NamespaceId ns, const NamespaceLimits& limits) {
  return impl_->SetNamespaceLimits(ns, limits);
}
std::vector<absl::StatusCode> DramTier::Remove(NamespaceId ns, std::span<const BlockKey> keys) {
  return impl_->Remove(ns, keys);
}
void DramTier::RecordBytesOut(NamespaceId ns, uint64_t bytes) { impl_->RecordBytesOut(ns, bytes); }
TierSnapshot DramTier::Snapshot() const { return impl_->Snapshot(); }

}  // namespace kvtier::tiers
