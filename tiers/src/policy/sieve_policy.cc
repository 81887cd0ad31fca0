// SIEVE (Zhang et al., "SIEVE is simpler than LRU", NSDI'24), per size class: one FIFO, a
// visited bit per block set on use, and a hand that walks from the old end towards the new one,
// clearing visited bits until it finds an unvisited block, the victim. Blocks stay where they
// were inserted, so a hit costs one store, and the hand keeps its place between evictions.
//
// Blocks the tier cannot evict are stepped over without clearing their bit.
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kvtier/tiers/policies.h"
#include "tiers/src/policy/entry_list.h"

namespace kvtier::tiers {
namespace {

using policy::kNoEntry;
using policy::Links;

class SievePolicy final : public EvictionPolicy {
 public:
  std::string_view Name() const override { return "sieve"; }

  void OnInsert(EntryId id, uint32_t size_class) override {
    const auto i = static_cast<uint32_t>(id);
    if (i >= nodes_.size()) {
      nodes_.resize(i + 1);
    }
    if (nodes_[i].linked) OnRemove(id);
    while (classes_.size() <= size_class) classes_.emplace_back(&nodes_);
    nodes_[i] = Node{.size_class = size_class, .linked = true, .visited = false};
    classes_[size_class].fifo.PushHot(i);
  }

  void OnAccess(EntryId id) override {
    if (id < nodes_.size() && nodes_[id].linked) nodes_[id].visited = true;
  }

  void OnRemove(EntryId id) override {
    if (id >= nodes_.size() || !nodes_[id].linked) return;
    const auto i = static_cast<uint32_t>(id);
    Class& c = classes_[nodes_[i].size_class];
    // The hand moves on to the next newer block, as after an eviction in the paper.
    if (c.hand == i) c.hand = c.fifo.Hotter(i);
    c.fifo.Unlink(i);
    nodes_[i].linked = false;
  }

  std::optional<EntryId> PickVictim(uint32_t size_class,
                                    const std::function<bool(EntryId)>& evictable) override {
    if (size_class >= classes_.size()) return std::nullopt;
    Class& c = classes_[size_class];
    // Two laps: the first may only clear bits; the second finds a victim if any is evictable.
    size_t steps = 2 * c.fifo.size() + 1;
    uint32_t id = c.hand != kNoEntry ? c.hand : c.fifo.cold();
    for (; id != kNoEntry && steps > 0; --steps) {
      if (evictable(id)) {
        if (!nodes_[id].visited) {
          c.hand = id;
          return id;
        }
        nodes_[id].visited = false;
      }
      const uint32_t next = c.fifo.Hotter(id);
      id = next != kNoEntry ? next : c.fifo.cold();
    }
    return std::nullopt;
  }

 private:
  struct Node {
    Links links;
    uint32_t size_class = 0;
    bool linked = false;
    bool visited = false;
  };
  using List = policy::EntryList<Node>;
  struct Class {
    explicit Class(std::vector<Node>* nodes) : fifo(nodes) {}
    List fifo;
    uint32_t hand = kNoEntry;  // kNoEntry: start at the old end
  };

  std::vector<Node> nodes_;
  std::vector<Class> classes_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewSievePolicy() { return std::make_unique<SievePolicy>(); }

}  // namespace kvtier::tiers
