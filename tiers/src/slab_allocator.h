// SlabAllocator: hands out page-aligned slots of the DRAM arena's data region.
//
// The data region is a run of pages. It is carved into slabs, each serving one size class; a
// size class exists per distinct slot size (a block size rounded up to whole pages), so slots
// of one class are interchangeable and eviction can be asked for per class.
//  - A class whose slot fits in `slab_bytes` gets slabs of floor(slab_bytes / slot) slots,
//    trimmed to exactly that many slots, so no slab carries an unusable tail; what the trim
//    leaves stays in free space for other classes.
//  - A class whose slot is larger than `slab_bytes` gets a dedicated slab per block, sized to
//    the slot (whole pages, not whole slabs).
// Free space (pages in no slab) is kept as address-ordered, coalesced extents; a new slab takes
// the best-fitting extent (smallest that fits, lowest address on ties), so odd-sized leftovers
// get used by the classes they fit. A slab whose slots all become free goes back to free space.
//
// The allocator only manages space. Eviction belongs to the caller: when Allocate() finds no
// slot, the caller evicts within the class through its policy, or takes a slab from another
// class: ReclaimSlab() for the slab holding that class's next victim (cheap: one slab), or
// FindReclaim() for a run of slabs (of one class, or of any) that, once emptied, leaves room
// for a new slab of this class.
//
// Each used slot carries a caller-chosen tag (the tier's entry id) so that the caller can map
// the blocks of a slab back to its own entries. Metadata per slot: 12 bytes (tag + free list).
//
// Not thread-safe: the tier calls it under its lock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <vector>

namespace kvtier::tiers::internal {

using ClassId = uint32_t;
using SlabId = uint32_t;

// One slot: which slab, which slot in it. Stable while the slot is allocated.
struct SlotHandle {
  SlabId slab = 0;
  uint32_t index = 0;
  friend bool operator==(const SlotHandle&, const SlotHandle&) = default;
};

class SlabAllocator {
 public:
  static constexpr uint64_t kNoTag = ~uint64_t{0};

  // Manages [base_offset, base_offset + bytes) of the arena.
  // REQUIRES: page_bytes is a power of two; base_offset, bytes and slab_bytes are multiples of
  // page_bytes; 0 < slab_bytes <= bytes.
  SlabAllocator(uint64_t base_offset, uint64_t bytes, uint32_t page_bytes, uint64_t slab_bytes);

  // The class of blocks of `block_bytes` bytes, created on first use. Classes are never
  // destroyed. REQUIRES: 0 < block_bytes and the slot (block rounded up to pages) <= bytes.
  ClassId ClassFor(uint64_t block_bytes);
  uint64_t slot_bytes(ClassId cls) const { return classes_[cls].slot_bytes; }
  // Size of each slab of the class (slots_per_slab * slot_bytes).
  uint64_t class_slab_bytes(ClassId cls) const { return classes_[cls].slab_bytes; }
  uint32_t slots_per_slab(ClassId cls) const { return classes_[cls].slots_per_slab; }
  size_t slab_count(ClassId cls) const { return classes_[cls].slabs; }
  size_t class_count() const { return classes_.size(); }

  // A free slot of `cls`, tagged `tag`: from a slab of the class with a free slot, else from a
  // new slab carved out of free space. nullopt when neither exists (the caller may evict).
  // REQUIRES: tag != kNoTag.
  std::optional<SlotHandle> Allocate(ClassId cls, uint64_t tag);

  // A free slot of `cls` in one of its existing slabs other than those in `avoid`, tagged
  // `tag`; nullopt when there is none. Never carves a new slab, so free space that a reclaim
  // counted on stays free. O(partial slabs of the class x avoid.size()).
  // REQUIRES: tag != kNoTag.
  std::optional<SlotHandle> AllocateExisting(ClassId cls, uint64_t tag,
                                             std::span<const SlabId> avoid);

  // Frees an allocated slot; an emptied slab returns to free space.
  // REQUIRES: `slot` was returned by Allocate and not freed since.
  void Free(SlotHandle slot);

  // While a slab drains (a reclaim is moving its blocks out), none of its free slots is handed
  // out; it still returns to free space once its last slot is freed. Setting it off again
  // makes its free slots available again. Idempotent; does nothing to a slab that is no longer
  // live (released, or its id reused by a new slab, which starts not draining).
  void SetDraining(SlabId slab, bool draining);

  // Arena offset and tag of an allocated slot.
  uint64_t Offset(SlotHandle slot) const {
    const Slab& s = slabs_[slot.slab];
    return s.offset + uint64_t{slot.index} * classes_[s.cls].slot_bytes;
  }
  uint64_t Tag(SlotHandle slot) const { return slabs_[slot.slab].tags[slot.index]; }
  // The class of an allocated slot.
  ClassId ClassOf(SlotHandle slot) const { return slabs_[slot.slab].cls; }

  // Finds a run of address-adjacent free extents and slabs, long enough for one new slab of
  // `cls`, in which every used slot's tag satisfies `evictable`; among such runs, the one
  // holding the fewest used slots (the fewest blocks lost). Appends the tags of its used slots
  // to `*tags` and returns true; once the caller frees all of them, Allocate(cls) succeeds.
  // Returns false when no such run exists. O(slabs + used slots); meant for the rare case
  // that a class has no slab and free space has no room.
  // With `from_class`, only slabs of that class (and free extents) may be part of the run.
  bool FindReclaim(ClassId cls, const std::function<bool(uint64_t tag)>& evictable,
                   std::vector<uint64_t>* tags,
                   std::optional<ClassId> from_class = std::nullopt) const;

  // Whether emptying slab `slab` alone leaves room for a new slab of `cls`: every used slot's
  // tag satisfies `evictable`, and the slab plus the free extents right next to it hold at
  // least one slab of `cls`. If so, appends the tags of its used slots to `*tags` and returns
  // true; once the caller frees them, Allocate(cls) succeeds. O(slots of the slab + log slabs).
  // REQUIRES: `slab` is live (e.g. SlotHandle::slab of an allocated slot).
  bool ReclaimSlab(ClassId cls, SlabId slab, const std::function<bool(uint64_t tag)>& evictable,
                   std::vector<uint64_t>* tags) const;

  // Whether free space holds a new slab of `cls` (one free extent at least that long).
  bool HasRoomForSlab(ClassId cls) const;
  // Free slots of `cls` that Allocate can hand out (those of draining slabs are not).
  // O(partial slabs of the class).
  uint64_t free_slot_count(ClassId cls) const;

  uint64_t capacity_bytes() const { return bytes_; }
  // Bytes of allocated slots; never more than capacity_bytes().
  uint64_t used_bytes() const { return used_bytes_; }
  // Bytes not in any slab.
  uint64_t free_bytes() const { return free_bytes_; }
  size_t free_extent_count() const { return free_.size(); }

 private:
  static constexpr uint32_t kNotPartial = ~uint32_t{0};

  struct SizeClass {
    uint64_t slot_bytes = 0;
    uint64_t slab_bytes = 0;
    uint32_t slots_per_slab = 0;
    size_t slabs = 0;
    std::vector<SlabId> partial;  // slabs of this class with at least one free slot
  };
  struct Slab {
    uint64_t offset = 0;
    uint64_t bytes = 0;
    ClassId cls = 0;
    uint32_t used = 0;
    uint32_t partial_pos = kNotPartial;  // index in classes_[cls].partial
    bool draining = false;               // SetDraining: never in the partial list
    std::vector<uint64_t> tags;          // per slot; kNoTag when free
    std::vector<uint32_t> free_slots;    // stack; the lowest index on top
  };

  std::optional<SlabId> NewSlab(ClassId cls);
  SlotHandle TakeSlot(SlabId id, uint64_t tag);
  void ReleaseSlab(SlabId id);
  void AddPartial(SlabId id);
  void RemovePartial(SlabId id);
  void AddFreeExtent(uint64_t offset, uint64_t bytes);

  const uint64_t base_;
  const uint64_t bytes_;
  const uint32_t page_bytes_;
  const uint64_t slab_bytes_;

  std::vector<SizeClass> classes_;
  std::vector<Slab> slabs_;  // indexed by SlabId; released ids are reused
  std::vector<SlabId> unused_slab_ids_;
  std::map<uint64_t, SlabId> slab_at_;  // live slabs by offset
  std::map<uint64_t, uint64_t> free_;   // free extents: offset -> bytes, coalesced
  uint64_t used_bytes_ = 0;
  uint64_t free_bytes_ = 0;
};

}  // namespace kvtier::tiers::internal
