// EntryList: an intrusive doubly linked list of entry ids whose links live in the policy's own
// node table (each Node has a `Links links` member), so that moving a block between lists or
// within one is O(1), allocation-free once the table has grown to the largest id, and touches
// the same cache line as the rest of the block's state. Every queue-based policy here keeps its
// blocks in a few of these.
//
// Ids are uint32_t: tiers number their entries densely (DramTier's entry indexes), and half-size
// links keep them at 8 bytes per block.
//
// Not thread-safe; the owning policy serialises access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace kvtier::tiers::policy {

inline constexpr uint32_t kNoEntry = std::numeric_limits<uint32_t>::max();

struct Links {
  uint32_t hotter = kNoEntry;  // towards the end that is evicted last
  uint32_t colder = kNoEntry;  // towards the end that is evicted first
};

template <typename Node>
class EntryList {
 public:
  // `nodes` must outlive the list; it may grow (the list keeps the vector, not its elements).
  explicit EntryList(std::vector<Node>* nodes) : nodes_(nodes) {}

  uint32_t hot() const { return hot_; }
  uint32_t cold() const { return cold_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint32_t Hotter(uint32_t id) const { return (*nodes_)[id].links.hotter; }

  // REQUIRES (all three): `id` is in no list.
  void PushHot(uint32_t id) { LinkBetween(id, hot_, kNoEntry); }
  void PushCold(uint32_t id) { LinkBetween(id, kNoEntry, cold_); }
  // Places `id` right on the cold side of `anchor`. REQUIRES: `anchor` is in this list.
  void InsertColderThan(uint32_t id, uint32_t anchor) {
    LinkBetween(id, (*nodes_)[anchor].links.colder, anchor);
  }

  // REQUIRES: `id` is in this list.
  void Unlink(uint32_t id) {
    Links& n = (*nodes_)[id].links;
    if (n.hotter != kNoEntry) {
      (*nodes_)[n.hotter].links.colder = n.colder;
    } else {
      hot_ = n.colder;
    }
    if (n.colder != kNoEntry) {
      (*nodes_)[n.colder].links.hotter = n.hotter;
    } else {
      cold_ = n.hotter;
    }
    n = Links{};
    --size_;
  }

 private:
  // Links `id` between `colder` and `hotter` (either may be kNoEntry at an end).
  void LinkBetween(uint32_t id, uint32_t colder, uint32_t hotter) {
    Links& n = (*nodes_)[id].links;
    n.colder = colder;
    n.hotter = hotter;
    if (colder != kNoEntry) {
      (*nodes_)[colder].links.hotter = id;
    } else {
      cold_ = id;
    }
    if (hotter != kNoEntry) {
      (*nodes_)[hotter].links.colder = id;
    } else {
      hot_ = id;
    }
    ++size_;
  }

  std::vector<Node>* nodes_;
  uint32_t hot_ = kNoEntry;
  uint32_t cold_ = kNoEntry;
  size_t size_ = 0;
};

}  // namespace kvtier::tiers::policy
