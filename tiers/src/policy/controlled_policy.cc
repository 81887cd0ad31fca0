// ControlledPolicy (kvtier/tiers/memory_controls.h): pins, TTLs, quotas and priorities over a
// base policy. The base policy keeps its own order; this layer narrows what it may pick by
// wrapping the tier's `evictable` predicate, so every base policy gets the same controls.
#include <algorithm>
#include <set>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "kvtier/tiers/memory_controls.h"

namespace kvtier::tiers {

namespace {

// The distinct priorities of `groups`, ascending, counting the default 0.
std::vector<int32_t> Levels(const absl::flat_hash_map<GroupId, GroupLimits>& groups) {
  std::set<int32_t> levels = {0};
  for (const auto& [group, limits] : groups) levels.insert(limits.priority);
  return {levels.begin(), levels.end()};
}

}  // namespace

absl::Status MemoryControlOptions::Validate() const {
  // Each distinct priority costs PickVictim one more filtered pass over the base policy.
  const std::vector<int32_t> levels = Levels(groups);
  if (levels.size() > kMaxPriorityLevels) {
    return absl::InvalidArgumentError(absl::StrCat("memory controls: ", levels.size(),
                                                   " distinct priorities (counting the default 0); "
                                                   "at most ",
                                                   kMaxPriorityLevels, " are supported"));
  }
  return absl::OkStatus();
}

class ControlledPolicy::Impl {
 public:
  Impl(std::unique_ptr<EvictionPolicy> base, MemoryControlOptions options, const Clock* clock)
      : base_(std::move(base)), options_(std::move(options)), clock_(clock) {
    levels_ = Levels(options_.groups);
  }

  absl::Status SetLimits(GroupId group, const GroupLimits& limits) {
    MemoryControlOptions next = options_;
    next.groups[group] = limits;
    if (absl::Status s = next.Validate(); !s.ok()) return s;
    options_ = std::move(next);
    levels_ = Levels(options_.groups);
    UpdateQuota(group);
    return absl::OkStatus();
  }

  GroupLimits Limits(GroupId group) const {
    const GroupLimits* l = LimitsOf(group);
    return l == nullptr ? GroupLimits{} : *l;
  }

  std::optional<EntryId> GroupVictim(GroupId group, uint32_t size_class,
                                     const std::function<bool(EntryId)>& evictable) {
    return base_->PickVictim(size_class, [&](EntryId id) {
      return meta_[id].group == group && meta_[id].pins == 0 && evictable(id);
    });
  }

  EvictionPolicy& base() { return *base_; }
  const EvictionPolicy& base() const { return *base_; }

  void Insert(EntryId id, const BlockInfo& info, const BlockControls& controls) {
    if (Present(id)) Remove(id);
    if (id >= meta_.size()) meta_.resize(id + 1);
    while (expiring_.size() <= info.size_class) expiring_.emplace_back();
    Meta& m = meta_[id];
    m = Meta{.expires_at = controls.expires_at_nanos,
             .bytes = controls.bytes,
             .group = controls.group,
             .size_class = info.size_class,
             .pins = controls.pinned ? 1u : 0u,
             .present = true};
    GroupState& g = groups_[controls.group];
    ++g.usage.blocks;
    g.usage.bytes += m.bytes;
    if (m.pins > 0) ++g.usage.pinned_blocks;
    if (m.expires_at != 0) expiring_[m.size_class].insert({m.expires_at, id});
    UpdateQuota(controls.group);
    base_->OnInsertBlock(id, info);
  }

  void Remove(EntryId id) {
    if (!Present(id)) return;
    base_->OnRemove(id);
    Meta& m = meta_[id];
    GroupState& g = groups_[m.group];
    --g.usage.blocks;
    g.usage.bytes -= m.bytes;
    if (m.pins > 0) --g.usage.pinned_blocks;
    if (m.expires_at != 0) expiring_[m.size_class].erase({m.expires_at, id});
    m.present = false;
    UpdateQuota(m.group);
  }

  void Pin(EntryId id) {
    if (!Present(id)) return;
    if (meta_[id].pins++ == 0) ++groups_[meta_[id].group].usage.pinned_blocks;
  }

  void Unpin(EntryId id) {
    if (!Present(id) || meta_[id].pins == 0) return;
    if (--meta_[id].pins == 0) --groups_[meta_[id].group].usage.pinned_blocks;
  }

  bool IsPinned(EntryId id) const { return Present(id) && meta_[id].pins > 0; }

  void SetExpiry(EntryId id, int64_t expires_at) {
    if (!Present(id)) return;
    Meta& m = meta_[id];
    if (m.expires_at != 0) expiring_[m.size_class].erase({m.expires_at, id});
    m.expires_at = expires_at;
    if (m.expires_at != 0) expiring_[m.size_class].insert({m.expires_at, id});
  }

  std::vector<EntryId> Expired(size_t max) const {
    const int64_t now = clock_->NowNanos();
    std::vector<std::pair<int64_t, EntryId>> found;
    for (const auto& by_expiry : expiring_) {
      size_t taken = 0;
      for (auto it = by_expiry.begin(); it != by_expiry.end() && it->first <= now && taken < max;
           ++it) {
        if (meta_[it->second].pins == 0) {
          found.push_back(*it);
          ++taken;
        }
      }
    }
    std::sort(found.begin(), found.end());
    if (found.size() > max) found.resize(max);
    std::vector<EntryId> ids;
    ids.reserve(found.size());
    for (const auto& [expires_at, id] : found) ids.push_back(id);
    return ids;
  }

  std::optional<EntryId> PickVictim(uint32_t size_class,
                                    const std::function<bool(EntryId)>& evictable) {
    const auto allowed = [&](EntryId id) { return meta_[id].pins == 0 && evictable(id); };
    if (size_class < expiring_.size()) {
      const int64_t now = clock_->NowNanos();
      for (const auto& [expires_at, id] : expiring_[size_class]) {
        if (expires_at > now) break;
        if (allowed(id)) return id;
      }
    }
    if (!over_quota_.empty()) {
      if (auto v = base_->PickVictim(size_class, [&](EntryId id) {
            return over_quota_.contains(meta_[id].group) && allowed(id);
          })) {
        return v;
      }
    }
    if (levels_.size() > 1) {
      for (int32_t level : levels_) {
        if (auto v = base_->PickVictim(size_class, [&](EntryId id) {
              return PriorityOf(meta_[id].group) == level && allowed(id);
            })) {
          return v;
        }
      }
      return std::nullopt;
    }
    return base_->PickVictim(size_class, allowed);
  }

  std::optional<EntryId> QuotaVictim(const std::function<bool(EntryId)>& evictable) {
    for (GroupId group : over_quota_) {
      for (uint32_t cls = 0; cls < expiring_.size(); ++cls) {
        if (auto v = GroupVictim(group, cls, evictable)) return v;
      }
    }
    return std::nullopt;
  }

  GroupUsage Usage(GroupId group) const {
    auto it = groups_.find(group);
    return it == groups_.end() ? GroupUsage{} : it->second.usage;
  }

 private:
  // One per EntryId the tier has used: the order of the fields keeps it at 32 bytes.
  struct Meta {
    int64_t expires_at = 0;
    uint64_t bytes = 0;  // BlockControls::bytes, charged to the group
    GroupId group = 0;
    uint32_t size_class = 0;
    uint32_t pins = 0;
    bool present = false;
  };
  static_assert(sizeof(Meta) == 32);
  struct GroupState {
    GroupUsage usage;
  };

  bool Present(EntryId id) const { return id < meta_.size() && meta_[id].present; }

  const GroupLimits* LimitsOf(GroupId group) const {
    auto it = options_.groups.find(group);
    return it == options_.groups.end() ? nullptr : &it->second;
  }
  int32_t PriorityOf(GroupId group) const {
    const GroupLimits* l = LimitsOf(group);
    return l == nullptr ? 0 : l->priority;
  }
  void UpdateQuota(GroupId group) {
    const GroupLimits* l = LimitsOf(group);
    if (l != nullptr && l->max_bytes != 0 && groups_[group].usage.bytes > l->max_bytes) {
      over_quota_.insert(group);
    } else {
      over_quota_.erase(group);
    }
  }

  std::unique_ptr<EvictionPolicy> base_;
  MemoryControlOptions options_;
  const Clock* const clock_;
  std::vector<Meta> meta_;  // by EntryId
  absl::flat_hash_map<GroupId, GroupState> groups_;
  absl::flat_hash_set<GroupId> over_quota_;
  std::vector<int32_t> levels_;  // distinct priorities, ascending
  // Per size class, blocks with an expiry, soonest first.
  std::vector<std::set<std::pair<int64_t, EntryId>>> expiring_;
};

absl::StatusOr<std::unique_ptr<ControlledPolicy>> ControlledPolicy::Create(
    std::unique_ptr<EvictionPolicy> base, MemoryControlOptions options, const Clock* clock) {
  if (base == nullptr) return absl::InvalidArgumentError("ControlledPolicy needs a base policy");
  if (clock == nullptr) return absl::InvalidArgumentError("ControlledPolicy needs a clock");
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  return std::unique_ptr<ControlledPolicy>(
      new ControlledPolicy(std::make_unique<Impl>(std::move(base), std::move(options), clock)));
}

ControlledPolicy::ControlledPolicy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ControlledPolicy::~ControlledPolicy() = default;

std::string_view ControlledPolicy::Name() const { return impl_->base().Name(); }
void ControlledPolicy::OnInsert(EntryId id, uint32_t size_class) {
  impl_->Insert(id, BlockInfo{.size_class = size_class}, BlockControls{});
}
void ControlledPolicy::OnInsertBlock(EntryId id, const BlockInfo& info) {
  impl_->Insert(id, info, BlockControls{});
}
void ControlledPolicy::OnInsertControlled(EntryId id, const BlockInfo& info,
                                          const BlockControls& controls) {
  impl_->Insert(id, info, controls);
}
void ControlledPolicy::OnAccess(EntryId id) { impl_->base().OnAccess(id); }
void ControlledPolicy::OnRemove(EntryId id) { impl_->Remove(id); }
void ControlledPolicy::Prefetch(uint64_t fingerprint) const { impl_->base().Prefetch(fingerprint); }

int ControlledPolicy::SegmentOf(EntryId id) const { return impl_->base().SegmentOf(id); }
std::optional<EntryId> ControlledPolicy::PickVictim(uint32_t size_class,
                                                    const std::function<bool(EntryId)>& evictable) {
  return impl_->PickVictim(size_class, evictable);
}
void ControlledPolicy::Pin(EntryId id) { impl_->Pin(id); }
void ControlledPolicy::Unpin(EntryId id) { impl_->Unpin(id); }
bool ControlledPolicy::IsPinned(EntryId id) const { return impl_->IsPinned(id); }
void ControlledPolicy::SetExpiry(EntryId id, int64_t expires_at_nanos) {
  impl_->SetExpiry(id, expires_at_nanos);
}
std::vector<EntryId> ControlledPolicy::ExpiredBlocks(size_t max) const {
  return impl_->Expired(max);
}
std::optional<EntryId> ControlledPolicy::QuotaVictim(
    const std::function<bool(EntryId)>& evictable) {
  return impl_->QuotaVictim(evictable);
}
std::optional<EntryId> ControlledPolicy::GroupVictim(
    GroupId group, uint32_t size_class, const std::function<bool(EntryId)>& evictable) {
  return impl_->GroupVictim(group, size_class, evictable);
}
absl::Status ControlledPolicy::SetLimits(GroupId group, const GroupLimits& limits) {
  return impl_->SetLimits(group, limits);
}
GroupLimits ControlledPolicy::Limits(GroupId group) const { return impl_->Limits(group); }
GroupUsage ControlledPolicy::Usage(GroupId group) const { return impl_->Usage(group); }

}  // namespace kvtier::tiers
