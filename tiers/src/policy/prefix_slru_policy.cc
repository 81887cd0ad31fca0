// prefix-slru, the default policy (kvtier/tiers/policies.h): a segmented LRU with a ghost
// filter, made prefix-aware. Per size class:
//
//  * Probation holds blocks on their first stay; a use moves a block to protected. Under
//    pressure protected keeps at most kProtectedPercent of the class; beyond that its coldest
//    blocks go back to probation's hot end. Victims come from probation first. So a wave of one-off
//    prompts cycles through probation and cannot flush the blocks that were reused (measured: on
//    the Mooncake trace most blocks are used once; those used twice are mostly used again).
//  * Every removed block's fingerprint goes to a ghost filter remembering about 4x the capacity;
//    a block inserted while the ghost remembers it was evicted too early and starts in
//    protected. Reuse distances in LLM serving (the next turn of a conversation, the next
//    request on a document) are often longer than what a cache holds; the ghost is what lets
//    the second use of such a block count.
//  * Leaf-first: a block with cached children is never the victim (its children would be
//    unreachable, since lookups walk prefixes from the root), so chains shrink from their tips.
//    A chain may mix size classes (a compressed namespace's frames of different sizes): a
//    class then gives up its deepest block of the chain, the blocks of other classes below it
//    become orphans and go next in their own classes (a victim must free a slot of the class
//    the tier asks for).
//    To keep that cheap, blocks are placed so that a parent stays hotter than its children
//    (Place), and a child back from the ghost joins its parent on probation rather than going
//    to protected alone: chains then lie tip-coldest, and the victim walk meets few parents.
//  * A block whose parent is removed (by the tier: expiry, deletion) can no longer be reached
//    by a prefix lookup; it moves to probation's cold end and is the next victim.
//
// Costs: O(1) per insert and use; O(k) to remove a block with k cached children. PickVictim
// steps over blocks the tier cannot evict; when it meets a parent (placement keeps that rare)
// it takes a tip of the parent's subtree instead, O(depth). Parents kept alive by a descendant
// in the other segment or a pinned one move to the hot end, so later walks do not meet them.
#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kvtier/tiers/policies.h"
#include "tiers/src/policy/entry_list.h"
#include "tiers/src/policy/ghost_filter.h"

namespace kvtier::tiers {
namespace {

using policy::kNoEntry;
using policy::Links;

constexpr size_t kProtectedPercent = 80;
constexpr uint64_t kGhostPerCapacity = 4;

enum Segment : uint8_t { kProbation = 0, kProtected = 1, kNone = 2 };

class PrefixSlruPolicy final : public EvictionPolicy {
 public:
  explicit PrefixSlruPolicy(const PolicyOptions& options)
      : ghost_(options.capacity_blocks * kGhostPerCapacity) {}

  std::string_view Name() const override { return "prefix-slru"; }

  void OnInsert(EntryId id, uint32_t size_class) override {
    OnInsertBlock(id, BlockInfo{.size_class = size_class});
  }

  void OnInsertBlock(EntryId id, const BlockInfo& info) override {
    const auto i = static_cast<uint32_t>(id);
    if (i >= nodes_.size()) {
      nodes_.resize(i + 1);
    }
    if (nodes_[i].segment != kNone) OnRemove(id);
    while (classes_.size() <= info.size_class) classes_.emplace_back(&nodes_);
    Node& n = nodes_[i];
    n = Node{};
    n.fingerprint = info.fingerprint;
    n.size_class = info.size_class;
    if (info.parent && *info.parent < nodes_.size() && *info.parent != id &&
        nodes_[*info.parent].segment != kNone) {
      AttachToParent(i, static_cast<uint32_t>(*info.parent));
    }
    // A block back from the ghost is protected, unless its parent is on probation: a child
    // is never worth more than the prefix it needs.
    const bool returning = info.fingerprint != 0 && ghost_.Contains(info.fingerprint);
    const bool parent_on_probation = n.parent != kNoEntry && nodes_[n.parent].segment == kProbation;
    Place(i, returning && !parent_on_probation ? kProtected : kProbation, /*inserting=*/true);
  }

  void OnAccess(EntryId id) override {
    if (id >= nodes_.size() || nodes_[id].segment == kNone) return;
    const auto i = static_cast<uint32_t>(id);
    Class& c = classes_[nodes_[i].size_class];
    c.segments[nodes_[i].segment].Unlink(i);
    Place(i, kProtected, /*inserting=*/false);
  }

  void Prefetch(uint64_t fingerprint) const override {
    if (fingerprint != 0) ghost_.Prefetch(fingerprint);
  }

  void OnRemove(EntryId id) override {
    if (id >= nodes_.size() || nodes_[id].segment == kNone) return;
    const auto i = static_cast<uint32_t>(id);
    Node& n = nodes_[i];
    Class& c = classes_[n.size_class];
    c.segments[n.segment].Unlink(i);
    n.segment = kNone;
    if (n.fingerprint != 0) ghost_.Insert(n.fingerprint);
    DetachFromParent(i);
    // Orphans: unreachable by prefix lookups from now on, so they are the next victims.
    while (n.first_child != kNoEntry) {
      const uint32_t child = n.first_child;
      DetachFromParent(child);
      Node& ch = nodes_[child];
      Class& cc = classes_[ch.size_class];
      cc.segments[ch.segment].Unlink(child);
      ch.segment = kProbation;
      cc.segments[kProbation].PushCold(child);
    }
  }

  int SegmentOf(EntryId id) const override { return nodes_[id].segment == kProtected ? 1 : 0; }

  std::optional<EntryId> PickVictim(uint32_t size_class,
                                    const std::function<bool(EntryId)>& evictable) override {
    if (size_class >= classes_.size()) return std::nullopt;
    Class& c = classes_[size_class];
    Balance(c);
    for (Segment seg : {kProbation, kProtected}) {
      List& segment = c.segments[seg];
      // Each block is looked at once: parents that must wait go to the hot end, behind where
      // the walk stops.
      size_t steps = segment.size();
      for (uint32_t id = segment.cold(); id != kNoEntry && steps > 0; --steps) {
        const uint32_t next = segment.Hotter(id);
        if (evictable(id)) {
          if (nodes_[id].children == 0) return id;
          // A cold parent: its subtree goes first, from a tip in this segment.
          if (std::optional<uint32_t> tip = TipBelow(id, seg); tip && evictable(*tip)) {
            return *tip;
          }
          // Its subtree reaches into the other segment (or is pinned): it is kept for that
          // descendant's sake, and waits at the hot end, out of later walks' way.
          segment.Unlink(id);
          segment.PushHot(id);
        }
        id = next;
      }
    }
    return std::nullopt;
  }

 private:
  struct Node {
    Links links;
    uint64_t fingerprint = 0;
    uint32_t size_class = 0;
    uint32_t parent = kNoEntry;
    uint32_t first_child = kNoEntry;
    uint32_t next_sibling = kNoEntry;
    uint32_t prev_sibling = kNoEntry;
    uint32_t children = 0;
    Segment segment = kNone;
  };
  using List = policy::EntryList<Node>;
  struct Class {
    explicit Class(std::vector<Node>* nodes) : segments{List(nodes), List(nodes)} {}
    std::array<List, 2> segments;  // indexed by Segment: probation, protected
    // The block placed last in each segment: a block whose parent it is goes right behind it.
    std::array<uint32_t, 2> last_placed = {kNoEntry, kNoEntry};
  };

  // Puts `id` into `segment`: just colder than its parent when the parent is there and either
  // `id` is new (its parent was used by the same request, or it could not have been offered)
  // or the parent was the last block placed (a prefix used root first); else at the hot end
  // (a prefix used tip first ends with its root hottest anyway). Either way a parent stays
  // hotter than its children, so the victim walk finds tips, not parents.
  void Place(uint32_t id, Segment segment, bool inserting) {
    Node& n = nodes_[id];
    Class& c = classes_[n.size_class];
    List& list = c.segments[segment];
    n.segment = segment;
    const uint32_t parent = n.parent;
    if (parent != kNoEntry && nodes_[parent].segment == segment &&
        nodes_[parent].size_class == n.size_class &&
        (inserting || c.last_placed[segment] == parent)) {
      list.InsertColderThan(id, parent);
    } else {
      list.PushHot(id);
    }
    c.last_placed[segment] = id;
  }

  // Keeps protected within its share by moving its coldest blocks to probation's hot end. Done
  // when a victim is wanted, not on every use: the share is of a full class, and a class that
  // is still filling up has no reason to demote anything.
  void Balance(Class& c) {
    List& prot = c.segments[kProtected];
    List& prob = c.segments[kProbation];
    while (prot.size() * 100 > (prot.size() + prob.size()) * kProtectedPercent) {
      const uint32_t demoted = prot.cold();
      prot.Unlink(demoted);
      nodes_[demoted].segment = kProbation;
      prob.PushHot(demoted);
    }
  }

  // The deepest block of `id`'s size class on a path down from `id` through children in
  // segment `seg`, or nullopt when a block of that class on the way has a child of that class
  // in the other segment only (it must go first, and only a walk of that segment can take it).
  // Children of the class are followed first; blocks of other classes are stepped through, not
  // taken: a victim must free a slot of the class the tier asks for, and their own classes
  // evict them once they are orphans (OnRemove). A compressed namespace's chains mix classes,
  // one per frame size. O(depth x fanout).
  std::optional<uint32_t> TipBelow(uint32_t id, Segment seg) const {
    const uint32_t size_class = nodes_[id].size_class;
    uint32_t tip = id;
    for (uint32_t at = id;;) {
      uint32_t own = kNoEntry, other = kNoEntry;  // children in `seg`: of this class, of others
      bool waits = false;                         // a child of this class in the other segment
      for (uint32_t child = nodes_[at].first_child; child != kNoEntry;
           child = nodes_[child].next_sibling) {
        const Node& c = nodes_[child];
        if (c.size_class != size_class) {
          if (c.segment == seg && other == kNoEntry) other = child;
        } else if (c.segment == seg) {
          own = child;
          break;
        } else {
          waits = true;
        }
      }
      if (own != kNoEntry) {
        at = tip = own;
      } else if (waits) {
        return std::nullopt;
      } else if (other != kNoEntry) {
        at = other;
      } else {
        return tip;
      }
    }
  }

  void AttachToParent(uint32_t id, uint32_t parent) {
    Node& n = nodes_[id];
    Node& p = nodes_[parent];
    n.parent = parent;
    n.prev_sibling = kNoEntry;
    n.next_sibling = p.first_child;
    if (p.first_child != kNoEntry) nodes_[p.first_child].prev_sibling = id;
    p.first_child = id;
    ++p.children;
  }

  void DetachFromParent(uint32_t id) {
    Node& n = nodes_[id];
    if (n.parent == kNoEntry) return;
    Node& p = nodes_[n.parent];
    if (n.prev_sibling != kNoEntry) {
      nodes_[n.prev_sibling].next_sibling = n.next_sibling;
    } else {
      p.first_child = n.next_sibling;
    }
    if (n.next_sibling != kNoEntry) nodes_[n.next_sibling].prev_sibling = n.prev_sibling;
    --p.children;
    n.parent = n.next_sibling = n.prev_sibling = kNoEntry;
  }

  std::vector<Node> nodes_;
  std::vector<Class> classes_;
  policy::GhostFilter ghost_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewPrefixSlruPolicy(const PolicyOptions& options) {
  return std::make_unique<PrefixSlruPolicy>(options);
}

}  // namespace kvtier::tiers
