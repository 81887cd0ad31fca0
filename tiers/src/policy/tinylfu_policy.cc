// W-TinyLFU (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission
// Policy", ACM TOS 2017), per size class: new blocks enter an LRU window of about 1 % of the
// class; the main area behind it is a segmented LRU (probation, and protected for up to 80 % of
// main). When the window overflows, its oldest block competes with main's victim and joins main
// only if the frequency sketch has seen it more often; the loser is evicted. (As in Caffeine,
// the window's overflow enters probation at once, and the contest happens when main is full.) Every
// insert and use counts in the sketch, which also counts blocks no longer cached, so a block
// evicted and fetched again keeps its history.
//
// Without fingerprints the sketch is keyed by entry id, which the tier reuses: the policy still
// works but its frequencies then describe slots rather than blocks.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kvtier/tiers/policies.h"
#include "tiers/src/policy/entry_list.h"
#include "tiers/src/policy/frequency_sketch.h"

namespace kvtier::tiers {
namespace {

using policy::kNoEntry;
using policy::Links;

constexpr size_t kWindowPercent = 1;
constexpr size_t kProtectedPercent = 80;  // of main

class TinyLfuPolicy final : public EvictionPolicy {
 public:
  explicit TinyLfuPolicy(const PolicyOptions& options) : sketch_(options.capacity_blocks) {}

  std::string_view Name() const override { return "tinylfu"; }

  void OnInsert(EntryId id, uint32_t size_class) override {
    OnInsertBlock(id, BlockInfo{.size_class = size_class});
  }

  void OnInsertBlock(EntryId id, const BlockInfo& info) override {
    const auto i = static_cast<uint32_t>(id);
    if (i >= nodes_.size()) {
      nodes_.resize(i + 1);
    }
    if (nodes_[i].area != Area::kNone) OnRemove(id);
    while (classes_.size() <= info.size_class) classes_.emplace_back(&nodes_);
    Node& n = nodes_[i];
    n.key = info.fingerprint != 0 ? info.fingerprint : id;
    n.size_class = info.size_class;
    n.area = Area::kWindow;
    sketch_.Increment(n.key);
    Class& c = classes_[n.size_class];
    c.window.PushHot(i);
    // The window's overflow moves into main's probation as the admission candidate; whether it
    // stays is decided when main must give up a block (PickVictim).
    const size_t total = c.window.size() + c.probation.size() + c.protected_.size();
    if (c.window.size() > std::max<size_t>(total * kWindowPercent / 100, 1)) {
      const uint32_t moved = c.window.cold();
      c.window.Unlink(moved);
      nodes_[moved].area = Area::kProbation;
      c.probation.PushHot(moved);
      c.candidate = moved;
    }
  }

  void OnAccess(EntryId id) override {
    if (id >= nodes_.size() || nodes_[id].area == Area::kNone) return;
    const auto i = static_cast<uint32_t>(id);
    Node& n = nodes_[i];
    sketch_.Increment(n.key);
    Class& c = classes_[n.size_class];
    if (c.candidate == i) c.candidate = kNoEntry;  // used: no longer on trial
    ListOf(i).Unlink(i);
    if (n.area == Area::kProbation) n.area = Area::kProtected;
    ListOf(i).PushHot(i);
  }

  void OnRemove(EntryId id) override {
    if (id >= nodes_.size() || nodes_[id].area == Area::kNone) return;
    const auto i = static_cast<uint32_t>(id);
    Class& c = classes_[nodes_[i].size_class];
    if (c.candidate == i) c.candidate = kNoEntry;
    ListOf(i).Unlink(i);
    nodes_[i].area = Area::kNone;
  }

  std::optional<EntryId> PickVictim(uint32_t size_class,
                                    const std::function<bool(EntryId)>& evictable) override {
    if (size_class >= classes_.size()) return std::nullopt;
    Class& c = classes_[size_class];
    // Protected over its share of main: its oldest blocks go back to probation. Checked here,
    // when the class is full, so that a class still filling up keeps what it promoted.
    while (c.protected_.size() * 100 >
           (c.probation.size() + c.protected_.size()) * kProtectedPercent) {
      const uint32_t demoted = c.protected_.cold();
      c.protected_.Unlink(demoted);
      nodes_[demoted].area = Area::kProbation;
      c.probation.PushHot(demoted);
    }
    std::optional<uint32_t> victim = FirstEvictable(c.probation, evictable);
    if (!victim) victim = FirstEvictable(c.protected_, evictable);
    if (!victim) return FirstEvictable(c.window, evictable);
    // The candidate (the window's last overflow, or failing that the window's oldest block)
    // loses unless the sketch has seen it more often than main's victim.
    uint32_t cand = c.candidate;
    if (cand == kNoEntry || nodes_[cand].area != Area::kProbation ||
        nodes_[cand].size_class != size_class) {
      cand = c.window.cold();
    }
    if (cand != kNoEntry && cand != *victim && evictable(cand) &&
        sketch_.Estimate(nodes_[cand].key) <= sketch_.Estimate(nodes_[*victim].key)) {
      return cand;
    }
    return *victim;
  }

 private:
  enum class Area : uint8_t { kNone, kWindow, kProbation, kProtected };
  struct Node {
    Links links;
    uint64_t key = 0;  // the sketch's key: fingerprint, or the id when there is none
    uint32_t size_class = 0;
    Area area = Area::kNone;
  };
  using List = policy::EntryList<Node>;
  struct Class {
    explicit Class(std::vector<Node>* nodes) : window(nodes), probation(nodes), protected_(nodes) {}
    List window;
    List probation;
    List protected_;
    // The block that last moved from the window into probation, while it is there.
    uint32_t candidate = kNoEntry;
  };

  List& ListOf(uint32_t id) {
    Class& c = classes_[nodes_[id].size_class];
    switch (nodes_[id].area) {
      case Area::kWindow:
        return c.window;
      case Area::kProbation:
        return c.probation;
      default:
        return c.protected_;
    }
  }

  static std::optional<uint32_t> FirstEvictable(const List& list,
                                                const std::function<bool(EntryId)>& evictable) {
    for (uint32_t id = list.cold(); id != kNoEntry; id = list.Hotter(id)) {
      if (evictable(id)) return id;
    }
    return std::nullopt;
  }

  std::vector<Node> nodes_;
  std::vector<Class> classes_;
  policy::FrequencySketch sketch_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewTinyLfuPolicy(const PolicyOptions& options) {
  return std::make_unique<TinyLfuPolicy>(options);
}

}  // namespace kvtier::tiers
