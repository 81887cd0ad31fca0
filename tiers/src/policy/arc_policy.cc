// ARC (Megiddo and Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST'03), per
// size class. T1 holds blocks used once lately, T2 blocks used at least twice; B1 and B2
// remember the fingerprints of blocks evicted from each. A block coming back while B1 remembers
// it says T1 was too small, so the target size p of T1 grows; one remembered by B2 shrinks it.
// Victims come from T1 while it is over p, else from T2.
//
// The paper's cache size c is taken as the class's current number of blocks, so ARC follows a
// tier whose classes grow and shrink. Ghost lists are exact (GhostList), bounded by the paper's
// rules |T1| + |B1| <= c and |T1| + |T2| + |B1| + |B2| <= 2c.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kvtier/tiers/policies.h"
#include "tiers/src/policy/entry_list.h"
#include "tiers/src/policy/ghost_list.h"

namespace kvtier::tiers {
namespace {

using policy::GhostList;
using policy::kNoEntry;
using policy::Links;

class ArcPolicy final : public EvictionPolicy {
 public:
  std::string_view Name() const override { return "arc"; }

  void OnInsert(EntryId id, uint32_t size_class) override {
    OnInsertBlock(id, BlockInfo{.size_class = size_class});
  }

  void OnInsertBlock(EntryId id, const BlockInfo& info) override {
    const auto i = static_cast<uint32_t>(id);
    if (i >= nodes_.size()) {
      nodes_.resize(i + 1);
    }
    if (nodes_[i].list != Where::kNone) OnRemove(id);
    while (classes_.size() <= info.size_class) classes_.emplace_back(&nodes_);
    Class& c = classes_[info.size_class];
    Node& n = nodes_[i];
    n.fingerprint = info.fingerprint;
    n.size_class = info.size_class;
    const double size = static_cast<double>(c.t1.size() + c.t2.size() + 1);
    if (info.fingerprint != 0 && c.b1.Contains(info.fingerprint)) {
      const double step = std::max(1.0, static_cast<double>(c.b2.size()) / c.b1.size());
      c.p = std::min(size, c.p + step);
      c.b1.Erase(info.fingerprint);
      n.list = Where::kT2;
    } else if (info.fingerprint != 0 && c.b2.Contains(info.fingerprint)) {
      const double step = std::max(1.0, static_cast<double>(c.b1.size()) / c.b2.size());
      c.p = std::max(0.0, c.p - step);
      c.b2.Erase(info.fingerprint);
      n.list = Where::kT2;
    } else {
      n.list = Where::kT1;
    }
    ListOf(i).PushHot(i);
    TrimGhosts(c);
  }

  void OnAccess(EntryId id) override {
    if (id >= nodes_.size() || nodes_[id].list == Where::kNone) return;
    const auto i = static_cast<uint32_t>(id);
    ListOf(i).Unlink(i);
    nodes_[i].list = Where::kT2;
    ListOf(i).PushHot(i);
  }

  void OnRemove(EntryId id) override {
    if (id >= nodes_.size() || nodes_[id].list == Where::kNone) return;
    const auto i = static_cast<uint32_t>(id);
    Node& n = nodes_[i];
    Class& c = classes_[n.size_class];
    ListOf(i).Unlink(i);
    if (n.fingerprint != 0) (n.list == Where::kT1 ? c.b1 : c.b2).Push(n.fingerprint);
    n.list = Where::kNone;
    TrimGhosts(c);
  }

  std::optional<EntryId> PickVictim(uint32_t size_class,
                                    const std::function<bool(EntryId)>& evictable) override {
    if (size_class >= classes_.size()) return std::nullopt;
    Class& c = classes_[size_class];
    const bool t1_first = !c.t1.empty() && (static_cast<double>(c.t1.size()) > c.p || c.t2.empty());
    List& first = t1_first ? c.t1 : c.t2;
    List& second = t1_first ? c.t2 : c.t1;
    if (auto v = FirstEvictable(first, evictable)) return v;
    return FirstEvictable(second, evictable);
  }

 private:
  enum class Where : uint8_t { kNone, kT1, kT2 };
  struct Node {
    Links links;
    uint64_t fingerprint = 0;
    uint32_t size_class = 0;
    Where list = Where::kNone;
  };
  using List = policy::EntryList<Node>;
  struct Class {
    explicit Class(std::vector<Node>* nodes) : t1(nodes), t2(nodes) {}
    List t1;
    List t2;
    GhostList b1;
    GhostList b2;
    double p = 0;  // target size of t1
  };

  List& ListOf(uint32_t id) {
    Class& c = classes_[nodes_[id].size_class];
    return nodes_[id].list == Where::kT1 ? c.t1 : c.t2;
  }

  static std::optional<EntryId> FirstEvictable(const List& list,
                                               const std::function<bool(EntryId)>& evictable) {
    for (uint32_t id = list.cold(); id != kNoEntry; id = list.Hotter(id)) {
      if (evictable(id)) return id;
    }
    return std::nullopt;
  }

  static void TrimGhosts(Class& c) {
    const size_t size = std::max<size_t>(c.t1.size() + c.t2.size(), 1);
    const size_t b1_limit = size > c.t1.size() ? size - c.t1.size() : 0;  // |T1| + |B1| <= c
    while (c.b1.size() > b1_limit) c.b1.PopOldest();
    // All four lists within 2c: the ghosts share what the cached blocks leave of it.
    while (c.b1.size() + c.b2.size() > size && c.b2.size() > 0) c.b2.PopOldest();
  }

  std::vector<Node> nodes_;
  std::vector<Class> classes_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewArcPolicy() { return std::make_unique<ArcPolicy>(); }

}  // namespace kvtier::tiers
