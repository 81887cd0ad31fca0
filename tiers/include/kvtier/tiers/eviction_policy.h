// EvictionPolicy: decides which block a tier gives up when it needs room.
//
// The tier owns the blocks and their pins; the policy only orders them. The tier tells the
// policy about every insert, use and removal, and asks it for victims within one size class
// (slots of one class are interchangeable, slots of different classes are not). The memory-
// policy work (prefix-aware, frequency-aware policies) plugs in here.
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

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual std::string_view Name() const = 0;

  // `size_class` groups interchangeable slots; victims are asked for per class.
  virtual void OnInsert(EntryId id, uint32_t size_class) = 0;
  virtual void OnAccess(EntryId id) = 0;
  virtual void OnRemove(EntryId id) = 0;

  // The next block of `size_class` to evict among those for which `evictable(id)` is true
  // (the tier says no for pinned blocks), or nullopt when there is none. Does not remove it:
  // the tier calls OnRemove once it has evicted the block.
  virtual std::optional<EntryId> PickVictim(uint32_t size_class,
                                            const std::function<bool(EntryId)>& evictable) = 0;
};

// Least recently used first, per size class. O(1) insert/access/remove; PickVictim walks from
// the cold end past pinned entries.
// Its node table is indexed by EntryId (24 bytes per id up to the largest id seen), so ids
// should be small dense integers, as DramTier's entry numbers are.
std::unique_ptr<EvictionPolicy> NewLruPolicy();

}  // namespace kvtier::tiers
