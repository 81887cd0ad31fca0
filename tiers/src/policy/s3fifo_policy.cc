// S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP'23), per size
// class: new blocks enter a small FIFO holding about 10 % of the class; one that was used while
// there moves to the main FIFO when it reaches the small FIFO's end, one that was not is dropped
// and its fingerprint goes to a ghost filter; a block that comes back while the ghost remembers
// it enters main directly. Main is a FIFO with reinsertion: a block at its end with a nonzero
// 2-bit use counter goes back to the front with the counter decremented.
//
// Blocks the tier cannot evict are stepped over where they stand, so a pinned block neither
// moves nor loses its counter.
#include <algorithm>
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

// The share of a class the small FIFO aims for (the paper's 10 %).
constexpr size_t kSmallPercent = 10;
constexpr uint8_t kMaxFreq = 3;

class S3FifoPolicy final : public EvictionPolicy {
 public:
  explicit S3FifoPolicy(const PolicyOptions& options)
      // The paper sizes the ghost like the main FIFO: about 90 % of the cache.
      : ghost_(options.capacity_blocks * (100 - kSmallPercent) / 100) {}

  std::string_view Name() const override { return "s3fifo"; }

  void OnInsert(EntryId id, uint32_t size_class) override {
    OnInsertBlock(id, BlockInfo{.size_class = size_class});
  }

  void OnInsertBlock(EntryId id, const BlockInfo& info) override {
    const auto i = static_cast<uint32_t>(id);
    Grow(i, info.size_class);
    if (nodes_[i].queue != Queue::kNone) OnRemove(id);
    Node& n = nodes_[i];
    n.fingerprint = info.fingerprint;
    n.size_class = info.size_class;
    n.freq = 0;
    const bool returning = info.fingerprint != 0 && ghost_.Contains(info.fingerprint);
    n.queue = returning ? Queue::kMain : Queue::kSmall;
    ListOf(i).PushHot(i);
  }

  void OnAccess(EntryId id) override {
    if (id >= nodes_.size() || nodes_[id].queue == Queue::kNone) return;
    Node& n = nodes_[id];
    n.freq = std::min<uint8_t>(n.freq + 1, kMaxFreq);
  }

  void OnRemove(EntryId id) override {
    if (id >= nodes_.size() || nodes_[id].queue == Queue::kNone) return;
    const auto i = static_cast<uint32_t>(id);
    RememberIfSmall(i);
    ListOf(i).Unlink(i);
    nodes_[i].queue = Queue::kNone;
  }

  std::optional<EntryId> PickVictim(uint32_t size_class,
                                    const std::function<bool(EntryId)>& evictable) override {
    if (size_class >= classes_.size()) return std::nullopt;
    Class& c = classes_[size_class];
    const size_t total = c.small.size() + c.main.size();
    const bool small_first = c.small.size() * 100 >= total * kSmallPercent;
    if (small_first) {
      if (auto v = ScanSmall(c, evictable)) return v;
      return ScanMain(c, evictable);
    }
    if (auto v = ScanMain(c, evictable)) return v;
    return ScanSmall(c, evictable);
  }

 private:
  enum class Queue : uint8_t { kNone, kSmall, kMain };
  struct Node {
    Links links;
    uint64_t fingerprint = 0;
    uint32_t size_class = 0;
    Queue queue = Queue::kNone;
    uint8_t freq = 0;
  };
  using List = policy::EntryList<Node>;
  struct Class {
    explicit Class(std::vector<Node>* nodes) : small(nodes), main(nodes) {}
    List small;
    List main;
  };

  void Grow(uint32_t id, uint32_t size_class) {
    if (id >= nodes_.size()) {
      nodes_.resize(id + 1);
    }
    while (classes_.size() <= size_class) classes_.emplace_back(&nodes_);
  }

  List& ListOf(uint32_t id) {
    Class& c = classes_[nodes_[id].size_class];
    return nodes_[id].queue == Queue::kSmall ? c.small : c.main;
  }

  // The small FIFO from its end: a used block moves to main, an unused one is the victim (and
  // is remembered by the ghost once the tier removes it).
  std::optional<EntryId> ScanSmall(Class& c, const std::function<bool(EntryId)>& evictable) {
    for (uint32_t id = c.small.cold(); id != kNoEntry;) {
      const uint32_t next = c.small.Hotter(id);
      if (evictable(id)) {
        Node& n = nodes_[id];
        if (n.freq == 0) return id;
        c.small.Unlink(id);
        n.queue = Queue::kMain;
        n.freq = 0;
        c.main.PushHot(id);
      }
      id = next;
    }
    return std::nullopt;
  }

  // Main from its end: a used block goes back to the front with one use less. Each block is
  // passed at most kMaxFreq + 1 times, so the scan ends.
  std::optional<EntryId> ScanMain(Class& c, const std::function<bool(EntryId)>& evictable) {
    size_t budget = (kMaxFreq + 1) * c.main.size() + 1;
    for (uint32_t id = c.main.cold(); id != kNoEntry && budget > 0; --budget) {
      const uint32_t next = c.main.Hotter(id);
      if (evictable(id)) {
        Node& n = nodes_[id];
        if (n.freq == 0) return id;
        --n.freq;
        c.main.Unlink(id);
        c.main.PushHot(id);
      }
      // Past the front the walk starts over from the end: the blocks it sent back come round
      // again with one use less.
      id = next != kNoEntry ? next : c.main.cold();
    }
    return std::nullopt;
  }

  // The ghost learns of a block when the tier removes it from small (what ScanSmall returned).
  void RememberIfSmall(uint32_t id) {
    if (nodes_[id].queue == Queue::kSmall && nodes_[id].fingerprint != 0) {
      ghost_.Insert(nodes_[id].fingerprint);
    }
  }

  std::vector<Node> nodes_;
  std::vector<Class> classes_;
  policy::GhostFilter ghost_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewS3FifoPolicy(const PolicyOptions& options) {
  return std::make_unique<S3FifoPolicy>(options);
}

}  // namespace kvtier::tiers
