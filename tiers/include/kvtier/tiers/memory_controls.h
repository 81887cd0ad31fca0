// Memory controls: pins, TTLs, per-group quotas and priorities, as a layer over any eviction
// policy. The base policy orders blocks by how useful they look; the controls say which blocks
// must stay, which must go first, and whose blocks may be taken at all:
//
//   pins       A pinned block (say, a system prompt's prefix) is never a victim, whatever the
//              base policy thinks, until it is unpinned. Pins count: Pin twice, Unpin twice.
//   TTLs       A block past its expiry is the first victim of its class (soonest expired
//              first), and ExpiredBlocks() lists such blocks so a tier can drop them before
//              any space is needed. A pinned block does not expire while pinned.
//   quotas     Each block charges its group the bytes the tier says it takes (BlockControls::
//              bytes: DramTier gives the bytes of the slot it occupies). A group whose blocks
//              take more than its max_bytes gives up its own blocks first, in its base-policy
//              order; QuotaVictim() names the next one so a tier can enforce the quota at
//              insert time, not only under pressure.
//   priorities Victims come from the lowest-priority groups that have an evictable block in the
//              class; within one priority, the base policy decides.
//
// Order of preference in PickVictim: expired, then over-quota groups, then lowest priority,
// then the base policy. The tier's own `evictable` (its read pins) always applies too.
//
// The daemon's wiring (config, the protocol's pin/TTL requests, stats export) lives in
// cache_server; this layer holds the decisions, so every tier gets the same semantics.
//
// Not thread-safe, like every EvictionPolicy: the tier calls it under its own lock.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/common/clock.h"
#include "kvtier/tiers/eviction_policy.h"

namespace kvtier::tiers {

// Blocks belong to groups; kvtier's namespaces are the groups.
using GroupId = uint32_t;

struct GroupLimits {
  // Most bytes the group's blocks may take in this tier, the sum of their BlockControls::bytes
  // (a tier wanting a quota in blocks gives each block 1); 0 means no quota. Default 0.
  uint64_t max_bytes = 0;
  // Lower goes first under pressure. Default 0; groups not configured have priority 0.
  int32_t priority = 0;
};

// Each distinct priority costs PickVictim one filtered pass over the base policy.
inline constexpr size_t kMaxPriorityLevels = 8;

struct MemoryControlOptions {
  // Limits per group; groups not listed have no quota and priority 0. SetLimits changes them.
  absl::flat_hash_map<GroupId, GroupLimits> groups;

  // InvalidArgument when the groups use more than kMaxPriorityLevels distinct priorities
  // (the default 0 counts as one).
  absl::Status Validate() const;
};

// What the tier says about a block on insert, besides BlockInfo.
struct BlockControls {
  GroupId group = 0;
  // What the block takes in the tier, charged to its group's quota from its insert until it
  // leaves the policy (OnRemove, or a re-insert). Default 0: it counts toward no quota.
  uint64_t bytes = 0;
  // Absolute expiry on the tier's clock (Clock::NowNanos); 0 means never. Default 0.
  int64_t expires_at_nanos = 0;
  bool pinned = false;  // one pin, as if Pin() followed the insert
};

// Counts a tier can export (kvtierctl stats). Invariant: pinned_blocks <= blocks.
struct GroupUsage {
  uint64_t blocks = 0;
  uint64_t bytes = 0;  // the sum of the blocks' BlockControls::bytes: what max_bytes bounds
  uint64_t pinned_blocks = 0;
};

class ControlledPolicy final : public EvictionPolicy {
 public:
  // Wraps `base` (which must not be null). InvalidArgument when options fail Validate().
  // `clock` must outlive the policy.
  static absl::StatusOr<std::unique_ptr<ControlledPolicy>> Create(
      std::unique_ptr<EvictionPolicy> base, MemoryControlOptions options, const Clock* clock);
  ~ControlledPolicy() override;

  // The base policy's name.
  std::string_view Name() const override;

  // Plain inserts join group 0 with no TTL, no pin and no bytes.
  void OnInsert(EntryId id, uint32_t size_class) override;
  void OnInsertBlock(EntryId id, const BlockInfo& info) override;
  void OnInsertControlled(EntryId id, const BlockInfo& info, const BlockControls& controls);
  void OnAccess(EntryId id) override;
  void OnRemove(EntryId id) override;
  void Prefetch(uint64_t fingerprint) const override;
  std::optional<EntryId> PickVictim(uint32_t size_class,
                                    const std::function<bool(EntryId)>& evictable) override;
  // The base policy's.
  int SegmentOf(EntryId id) const override;

  // Pins and unpins a cached block; no-ops for ids not in the policy. Unpin of an unpinned
  // block does nothing.
  void Pin(EntryId id);
  void Unpin(EntryId id);
  bool IsPinned(EntryId id) const;

  // Sets (0: clears) the expiry of a cached block.
  void SetExpiry(EntryId id, int64_t expires_at_nanos);

  // Up to `max` cached, unpinned blocks whose expiry has passed, soonest expired first. Does
  // not remove them: the tier calls OnRemove for each it drops.
  std::vector<EntryId> ExpiredBlocks(size_t max) const;

  // A block of a group over its quota (its blocks take more than max_bytes) that `evictable`
  // allows, or nullopt when every group is within its quota. The tier evicts it and asks again
  // until nullopt.
  std::optional<EntryId> QuotaVictim(const std::function<bool(EntryId)>& evictable);

  // The next victim among `group`'s own blocks of `size_class` that `evictable` allows (a tier
  // makes room for a group at its quota from the group's own blocks), or nullopt.
  std::optional<EntryId> GroupVictim(GroupId group, uint32_t size_class,
                                     const std::function<bool(EntryId)>& evictable);

  // Replaces `group`'s limits (a namespace's quota or priority changed). InvalidArgument, with
  // nothing changed, when the new priority would make more than kMaxPriorityLevels distinct
  // ones. A group pushed over its quota is then reported by QuotaVictim.
  absl::Status SetLimits(GroupId group, const GroupLimits& limits);
  GroupLimits Limits(GroupId group) const;

  GroupUsage Usage(GroupId group) const;

 private:
  class Impl;
  explicit ControlledPolicy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier::tiers
