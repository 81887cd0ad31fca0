// EvictionPolicy: decides which block a tier gives up when it needs room.
//
// The tier owns the blocks and their pins; the policy only orders them. The tier tells the
// policy about every insert, use and removal, and asks it for victims within one size class
// (slots of one class are interchangeable, slots of different classes are not).
//
// Beyond the size class, a tier may tell the policy what it knows about a block (BlockInfo): a
// stable fingerprint of its key, so a policy can recognise a block that comes back after it was
// evicted (ghost history, frequency sketches), and the cached block it extends (its prefix
// parent), so a policy can keep children from outliving their parents: a KV block is worthless
// without its prefix. A tier that knows neither calls the two-argument OnInsert. The policies
// are listed in kvtier/tiers/policies.h; docs/policy.md says how they compare on traces.
//
// Not thread-safe: the tier calls it under its own lock.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

namespace kvtier::tiers {

// Identifies a block inside a tier (the tier's own entry number); stable while it is cached.
using EntryId = uint64_t;

// What a tier knows about a block as it enters the policy. Only size_class is required.
struct BlockInfo {
  // Groups interchangeable slots; victims are asked for per class.
  uint32_t size_class = 0;
  // A stable 64-bit digest of the block's key (kvtier's keys are hashes already, so any 8 of
  // their bytes do); 0 means unknown. Unlike an EntryId, which the tier reuses, it names the
  // same block across evictions.
  uint64_t fingerprint = 0;
  // The cached block whose content this block extends (the block before it in its sequence),
  // when the tier knows it and it is cached in the same tier.
  std::optional<EntryId> parent;
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual std::string_view Name() const = 0;

  // `size_class` groups interchangeable slots; victims are asked for per class.
  // REQUIRES: `id` is not in the policy (a tier re-inserting an id removes it first, or the
  // policy treats it as a fresh insert).
  virtual void OnInsert(EntryId id, uint32_t size_class) = 0;
  // OnInsert with hints. Policies that use fingerprints or prefix parents override it; the
  // default drops the hints. REQUIRES: `info.parent`, when set, is in the policy.
  virtual void OnInsertBlock(EntryId id, const BlockInfo& info) { OnInsert(id, info.size_class); }
  virtual void OnAccess(EntryId id) = 0;
  virtual void OnRemove(EntryId id) = 0;
  // A hint from a tier working through a batch: OnInsertBlock or OnRemove of the block with
  // this fingerprint follows shortly. A policy whose bookkeeping for it lies in a large table
  // (a ghost filter of millions of blocks) starts loading that memory now, so that the batch's
  // cache misses overlap instead of queueing one per key. Never changes what the policy
  // decides. Default: nothing.
  virtual void Prefetch(uint64_t fingerprint) const {}

  // The next block of `size_class` to evict among those for which `evictable(id)` is true
  // (the tier says no for pinned blocks), or nullopt when there is none. Does not remove it:
  // the tier calls OnRemove once it has evicted the block.
  virtual std::optional<EntryId> PickVictim(uint32_t size_class,
                                            const std::function<bool(EntryId)>& evictable) = 0;

  // Where cached block `id` stands in the policy's own order beyond recency, for a tier that
  // weighs blocks of different size classes against each other (DramTier: which class gives
  // up a slab, which blocks a reclaimed slab keeps): a block of a lower segment goes before
  // one of a higher segment, whatever their last uses. A policy with one recency order keeps
  // the default, 0 for every block; a segmented one says which segment (prefix-slru: 0 on
  // probation, 1 protected), so that its protection holds across classes too.
  // REQUIRES: `id` is in the policy.
  virtual int SegmentOf(EntryId id) const { return 0; }
};

// Least recently used first, per size class. O(1) insert/access/remove; PickVictim walks from
// the cold end past pinned entries.
// Its node table is indexed by EntryId (24 bytes per id up to the largest id seen), so ids
// should be small dense integers, as DramTier's entry numbers are.
std::unique_ptr<EvictionPolicy> NewLruPolicy();

}  // namespace kvtier::tiers
