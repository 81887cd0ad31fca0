// EntryList: an intrusive doubly linked list of entry ids whose links live in a table the
// policy owns (one Links per id), so that moving a block between lists or within one is O(1)
// and allocation-free once the table has grown to the largest id. Every queue-based policy here
// keeps its blocks in a few of these.
//
// Ids are uint32_t: tiers number their entries densely (DramTier's entry indexes), and half-size
// links keep a policy's table at 8 bytes of links per id.
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

class EntryList {
 public:
  // `links` must outlive the list; it may grow (the list keeps the vector, not its elements).
  explicit EntryList(std::vector<Links>* links) : links_(links) {}

  uint32_t hot() const { return hot_; }
  uint32_t cold() const { return cold_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint32_t Hotter(uint32_t id) const { return (*links_)[id].hotter; }

  // REQUIRES (all three): `id` is in no list.
  void PushHot(uint32_t id) { LinkBetween(id, hot_, kNoEntry); }
  void PushCold(uint32_t id) { LinkBetween(id, kNoEntry, cold_); }
  // Places `id` right on the cold side of `anchor`. REQUIRES: `anchor` is in this list.
  void InsertColderThan(uint32_t id, uint32_t anchor) {
    LinkBetween(id, (*links_)[anchor].colder, anchor);
  }

  // REQUIRES: `id` is in this list.
  void Unlink(uint32_t id) {
    Links& n = (*links_)[id];
    if (n.hotter != kNoEntry) {
      (*links_)[n.hotter].colder = n.colder;
    } else {
      hot_ = n.colder;
    }
    if (n.colder != kNoEntry) {
      (*links_)[n.colder].hotter = n.hotter;
    } else {
      cold_ = n.hotter;
    }
    n = Links{};
    --size_;
  }

 private:
  // Links `id` between `colder` and `hotter` (either may be kNoEntry at an end).
  void LinkBetween(uint32_t id, uint32_t colder, uint32_t hotter) {
    Links& n = (*links_)[id];
    n.colder = colder;
    n.hotter = hotter;
    if (colder != kNoEntry) {
      (*links_)[colder].hotter = id;
    } else {
      cold_ = id;
    }
    if (hotter != kNoEntry) {
      (*links_)[hotter].colder = id;
    } else {
      hot_ = id;
    }
    ++size_;
  }

  std::vector<Links>* links_;
  uint32_t hot_ = kNoEntry;
  uint32_t cold_ = kNoEntry;
  size_t size_ = 0;
};

}  // namespace kvtier::tiers::policy
