#include "tiers/src/slab_allocator.h"

#include <algorithm>
#include <iterator>
#include <limits>

namespace kvtier::tiers::internal {

SlabAllocator::SlabAllocator(uint64_t base_offset, uint64_t bytes, uint32_t page_bytes,
                             uint64_t slab_bytes)
    : base_(base_offset), bytes_(bytes), page_bytes_(page_bytes), slab_bytes_(slab_bytes) {
  AddFreeExtent(base_, bytes_);
}

ClassId SlabAllocator::ClassFor(uint64_t block_bytes) {
  const uint64_t slot = (block_bytes + page_bytes_ - 1) / page_bytes_ * page_bytes_;
  for (ClassId c = 0; c < classes_.size(); ++c) {
    if (classes_[c].slot_bytes == slot) return c;
  }
  SizeClass sc;
  sc.slot_bytes = slot;
  sc.slots_per_slab = slot <= slab_bytes_ ? static_cast<uint32_t>(slab_bytes_ / slot) : 1;
  sc.slab_bytes = sc.slots_per_slab * slot;
  classes_.push_back(std::move(sc));
  return static_cast<ClassId>(classes_.size() - 1);
}

std::optional<SlotHandle> SlabAllocator::Allocate(ClassId cls, uint64_t tag) {
  SizeClass& c = classes_[cls];
  SlabId id;
  if (!c.partial.empty()) {
    id = c.partial.back();
  } else {
    std::optional<SlabId> fresh = NewSlab(cls);
    if (!fresh) return std::nullopt;
    id = *fresh;
  }
  return TakeSlot(id, tag);
}

std::optional<SlotHandle> SlabAllocator::AllocateExisting(ClassId cls, uint64_t tag,
                                                          std::span<const SlabId> avoid) {
  const std::vector<SlabId>& partial = classes_[cls].partial;
  for (auto it = partial.rbegin(); it != partial.rend(); ++it) {
    if (std::find(avoid.begin(), avoid.end(), *it) == avoid.end()) return TakeSlot(*it, tag);
  }
  return std::nullopt;
}

SlotHandle SlabAllocator::TakeSlot(SlabId id, uint64_t tag) {
  Slab& s = slabs_[id];
  const uint32_t index = s.free_slots.back();
  s.free_slots.pop_back();
  s.tags[index] = tag;
  ++s.used;
  used_bytes_ += classes_[s.cls].slot_bytes;
  if (s.free_slots.empty()) RemovePartial(id);
  return SlotHandle{id, index};
}

void SlabAllocator::Free(SlotHandle slot) {
  Slab& s = slabs_[slot.slab];
  s.tags[slot.index] = kNoTag;
  s.free_slots.push_back(slot.index);
  --s.used;
  used_bytes_ -= classes_[s.cls].slot_bytes;
  if (s.used == 0) {
    ReleaseSlab(slot.slab);
  } else if (s.partial_pos == kNotPartial && !s.draining) {
    AddPartial(slot.slab);
  }
}

void SlabAllocator::SetDraining(SlabId slab, bool draining) {
  Slab& s = slabs_[slab];
  // A slab emptied meanwhile is free space (or another slab under the same id): leave it.
  const auto live = slab_at_.find(s.offset);
  if (live == slab_at_.end() || live->second != slab) return;
  if (s.draining == draining) return;
  s.draining = draining;
  if (draining) {
    if (s.partial_pos != kNotPartial) RemovePartial(slab);
  } else if (!s.free_slots.empty() && s.partial_pos == kNotPartial) {
    AddPartial(slab);
  }
}

std::optional<SlabId> SlabAllocator::NewSlab(ClassId cls) {
  SizeClass& c = classes_[cls];
  // Best fit keeps large extents whole for classes that need them.
  auto best = free_.end();
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second >= c.slab_bytes && (best == free_.end() || it->second < best->second)) {
      best = it;
    }
  }
  if (best == free_.end()) return std::nullopt;
  const uint64_t offset = best->first;
  const uint64_t extent = best->second;
  free_.erase(best);
  if (extent > c.slab_bytes) free_.emplace(offset + c.slab_bytes, extent - c.slab_bytes);
  free_bytes_ -= c.slab_bytes;

  SlabId id;
  if (!unused_slab_ids_.empty()) {
    id = unused_slab_ids_.back();
    unused_slab_ids_.pop_back();
  } else {
    id = static_cast<SlabId>(slabs_.size());
    slabs_.emplace_back();
  }
  Slab& s = slabs_[id];
  s.offset = offset;
  s.bytes = c.slab_bytes;
  s.cls = cls;
  s.used = 0;
  s.partial_pos = kNotPartial;
  s.draining = false;
  s.tags.assign(c.slots_per_slab, kNoTag);
  s.free_slots.resize(c.slots_per_slab);
  // Highest index at the bottom, so slots are handed out in address order.
  for (uint32_t i = 0; i < c.slots_per_slab; ++i) s.free_slots[i] = c.slots_per_slab - 1 - i;
  slab_at_.emplace(offset, id);
  ++c.slabs;
  AddPartial(id);
  return id;
}

void SlabAllocator::ReleaseSlab(SlabId id) {
  Slab& s = slabs_[id];
  if (s.partial_pos != kNotPartial) RemovePartial(id);
  s.draining = false;
  --classes_[s.cls].slabs;
  slab_at_.erase(s.offset);
  AddFreeExtent(s.offset, s.bytes);
  unused_slab_ids_.push_back(id);
}

void SlabAllocator::AddPartial(SlabId id) {
  Slab& s = slabs_[id];
  std::vector<SlabId>& partial = classes_[s.cls].partial;
  s.partial_pos = static_cast<uint32_t>(partial.size());
  partial.push_back(id);
}

void SlabAllocator::RemovePartial(SlabId id) {
  Slab& s = slabs_[id];
  std::vector<SlabId>& partial = classes_[s.cls].partial;
  const SlabId last = partial.back();
  partial[s.partial_pos] = last;
  slabs_[last].partial_pos = s.partial_pos;
  partial.pop_back();
  s.partial_pos = kNotPartial;
}

void SlabAllocator::AddFreeExtent(uint64_t offset, uint64_t bytes) {
  free_bytes_ += bytes;
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + bytes == next->first) {
    bytes += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += bytes;
      return;
    }
  }
  free_.emplace_hint(next, offset, bytes);
}

bool SlabAllocator::HasRoomForSlab(ClassId cls) const {
  const uint64_t need = classes_[cls].slab_bytes;
  for (const auto& [offset, bytes] : free_) {
    if (bytes >= need) return true;
  }
  return false;
}

uint64_t SlabAllocator::free_slot_count(ClassId cls) const {
  uint64_t n = 0;
  for (SlabId id : classes_[cls].partial) n += slabs_[id].free_slots.size();
  return n;
}

bool SlabAllocator::ReclaimSlab(ClassId cls, SlabId slab,
                                const std::function<bool(uint64_t tag)>& evictable,
                                std::vector<uint64_t>* tags) const {
  const Slab& s = slabs_[slab];
  uint64_t room = s.bytes;
  // Free extents are coalesced, so at most one ends where the slab starts and at most one
  // starts where it ends; freeing the slab merges all three.
  auto next = free_.lower_bound(s.offset);
  if (next != free_.end() && next->first == s.offset + s.bytes) room += next->second;
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == s.offset) room += prev->second;
  }
  if (room < classes_[cls].slab_bytes) return false;
  for (uint64_t tag : s.tags) {
    if (tag != kNoTag && !evictable(tag)) return false;
  }
  for (uint64_t tag : s.tags) {
    if (tag != kNoTag) tags->push_back(tag);
  }
  return true;
}

bool SlabAllocator::FindReclaim(ClassId cls, const std::function<bool(uint64_t tag)>& evictable,
                                std::vector<uint64_t>* tags,
                                std::optional<ClassId> from_class) const {
  // Free extents and slabs tile the data region, so consecutive segments in address order are
  // adjacent. A segment is usable if it is free or a slab whose used slots are all evictable;
  // its cost is the number of blocks it holds.
  struct Segment {
    uint64_t bytes;
    uint64_t cost;  // kBarrier when not usable
    SlabId slab;    // kNoSlab for free extents
  };
  constexpr uint64_t kBarrier = std::numeric_limits<uint64_t>::max();
  constexpr SlabId kNoSlab = std::numeric_limits<SlabId>::max();
  std::vector<Segment> segments;
  segments.reserve(free_.size() + slab_at_.size());
  auto f = free_.begin();
  auto s = slab_at_.begin();
  while (f != free_.end() || s != slab_at_.end()) {
    if (s == slab_at_.end() || (f != free_.end() && f->first < s->first)) {
      segments.push_back({f->second, 0, kNoSlab});
      ++f;
      continue;
    }
    const Slab& slab = slabs_[s->second];
    uint64_t cost = slab.used;
    if (from_class && slab.cls != *from_class) {
      cost = kBarrier;
    } else {
      for (uint64_t tag : slab.tags) {
        if (tag != kNoTag && !evictable(tag)) {
          cost = kBarrier;
          break;
        }
      }
    }
    segments.push_back({slab.bytes, cost, s->second});
    ++s;
  }

  // Sliding window: for each right end, the shortest usable run reaching `need` bytes is also
  // the cheapest ending there (costs are non-negative).
  const uint64_t need = classes_[cls].slab_bytes;
  uint64_t best_cost = kBarrier;
  size_t best_begin = 0, best_end = 0;
  size_t begin = 0;
  uint64_t run_bytes = 0, run_cost = 0;
  for (size_t end = 0; end < segments.size(); ++end) {
    if (segments[end].cost == kBarrier) {
      begin = end + 1;
      run_bytes = run_cost = 0;
      continue;
    }
    run_bytes += segments[end].bytes;
    run_cost += segments[end].cost;
    while (begin < end && run_bytes - segments[begin].bytes >= need) {
      run_bytes -= segments[begin].bytes;
      run_cost -= segments[begin].cost;
      ++begin;
    }
    if (run_bytes >= need && run_cost < best_cost) {
      best_cost = run_cost;
      best_begin = begin;
      best_end = end + 1;
    }
  }
  if (best_cost == kBarrier) return false;
  for (size_t i = best_begin; i < best_end; ++i) {
    if (segments[i].slab == kNoSlab) continue;
    for (uint64_t tag : slabs_[segments[i].slab].tags) {
      if (tag != kNoTag) tags->push_back(tag);
    }
  }
  return true;
}

}  // namespace kvtier::tiers::internal
