// Least-recently-used eviction, one list per size class.
//
// Index-based doubly linked lists: a node per EntryId in one vector, so insert, access and
// remove are O(1) with no allocation once the vector has grown to the largest id (24 bytes per
// id). That suits ids that are small dense integers, as DramTier's entry-table indexes are.
#include <limits>
#include <vector>

#include "kvtier/tiers/eviction_policy.h"

namespace kvtier::tiers {
namespace {

class LruPolicy final : public EvictionPolicy {
 public:
  std::string_view Name() const override { return "lru"; }

  void OnInsert(EntryId id, uint32_t size_class) override {
    if (id >= nodes_.size()) nodes_.resize(id + 1);
    if (size_class >= lists_.size()) lists_.resize(size_class + 1);
    if (nodes_[id].linked) Unlink(id);
    nodes_[id].size_class = size_class;
    PushHot(id);
  }

  void OnAccess(EntryId id) override {
    if (id >= nodes_.size() || !nodes_[id].linked) return;
    Unlink(id);
    PushHot(id);
  }

  void OnRemove(EntryId id) override {
    if (id >= nodes_.size() || !nodes_[id].linked) return;
    Unlink(id);
  }

  std::optional<EntryId> PickVictim(uint32_t size_class,
                                    const std::function<bool(EntryId)>& evictable) override {
    if (size_class >= lists_.size()) return std::nullopt;
    for (EntryId id = lists_[size_class].cold; id != kNil; id = nodes_[id].hotter) {
      if (evictable(id)) return id;
    }
    return std::nullopt;
  }

 private:
  static constexpr EntryId kNil = std::numeric_limits<EntryId>::max();

  struct Node {
    EntryId hotter = kNil;  // towards the most recently used end
    EntryId colder = kNil;
    uint32_t size_class = 0;
    bool linked = false;
  };
  struct List {
    EntryId hot = kNil;   // most recently used
    EntryId cold = kNil;  // least recently used: the first victim
  };

  void PushHot(EntryId id) {
    List& list = lists_[nodes_[id].size_class];
    Node& n = nodes_[id];
    n.hotter = kNil;
    n.colder = list.hot;
    if (list.hot != kNil) {
      nodes_[list.hot].hotter = id;
    } else {
      list.cold = id;
    }
    list.hot = id;
    n.linked = true;
  }

  void Unlink(EntryId id) {
    Node& n = nodes_[id];
    List& list = lists_[n.size_class];
    if (n.hotter != kNil) {
      nodes_[n.hotter].colder = n.colder;
    } else {
      list.hot = n.colder;
    }
    if (n.colder != kNil) {
      nodes_[n.colder].hotter = n.hotter;
    } else {
      list.cold = n.hotter;
    }
    n.hotter = n.colder = kNil;
    n.linked = false;
  }

  std::vector<Node> nodes_;
  std::vector<List> lists_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewLruPolicy() { return std::make_unique<LruPolicy>(); }

}  // namespace kvtier::tiers
