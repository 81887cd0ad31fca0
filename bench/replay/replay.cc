#include "kvtier/replay/replay.h"

#include <chrono>
#include <limits>
#include <memory>
#include <set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/tiers/eviction_policy.h"
#include "kvtier/tiers/policies.h"
#include "nlohmann/json.hpp"

namespace kvtier::replay {
namespace {

using tiers::BlockInfo;
using tiers::EntryId;
using tiers::EvictionPolicy;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Which trace blocks are cached, under which entry ids. Ids are recycled, as a tier's are, so
// the policies' tables stay as small as the cache.
class Residency {
 public:
  std::optional<EntryId> Find(uint64_t block) const {
    auto it = entry_of_.find(block);
    if (it == entry_of_.end()) return std::nullopt;
    return it->second;
  }
  bool Contains(uint64_t block) const { return entry_of_.contains(block); }
  size_t size() const { return entry_of_.size(); }

  EntryId Add(uint64_t block) {
    EntryId id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
      block_of_[id] = block;
    } else {
      id = block_of_.size();
      block_of_.push_back(block);
    }
    entry_of_[block] = id;
    return id;
  }

  void Remove(EntryId id) {
    entry_of_.erase(block_of_[id]);
    free_.push_back(id);
  }

 private:
  absl::flat_hash_map<uint64_t, EntryId> entry_of_;
  std::vector<uint64_t> block_of_;
  std::vector<EntryId> free_;
};

// Length of the request's leading run of cached blocks.
template <typename Cached>
size_t HitPrefix(const std::vector<uint64_t>& ids, Cached&& cached) {
  size_t h = 0;
  while (h < ids.size() && cached(ids[h])) ++h;
  return h;
}

}  // namespace

absl::Status ReplayOptions::Validate() const {
  if (capacity_blocks == 0) {
    return absl::InvalidArgumentError("replay capacity_blocks must be at least 1");
  }
  return absl::OkStatus();
}

std::vector<std::string> ReplayPolicyNames() {
  std::vector<std::string> names;
  for (std::string_view n : tiers::PolicyNames()) names.emplace_back(n);
  names.emplace_back(kBeladyName);
  return names;
}

absl::StatusOr<ReplayResult> Replay(const Trace& trace, const ReplayOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (options.policy == kBeladyName) return ReplayBelady(trace, options.capacity_blocks);
  absl::StatusOr<std::unique_ptr<EvictionPolicy>> made =
      tiers::NewPolicy(options.policy, {.capacity_blocks = options.capacity_blocks});
  if (!made.ok()) return made.status();
  EvictionPolicy& policy = **made;

  ReplayResult result;
  result.policy = options.policy;
  result.capacity_blocks = options.capacity_blocks;
  result.requests = trace.requests.size();
  result.hint_lookahead = options.hint_lookahead;
  const auto start = std::chrono::steady_clock::now();
  Residency cache;
  const uint64_t q = options.hint_lookahead;
  // With hint_pins, a hinted block stays pinned until its request has run.
  absl::flat_hash_map<EntryId, uint32_t> pins;
  std::vector<std::vector<EntryId>> pinned_for(options.hint_pins ? trace.requests.size() : 0);
  const auto evictable = [&](EntryId id) { return !pins.contains(id); };
  // The scheduler's hint for request k: its cached blocks are used now.
  auto hint = [&](size_t k) {
    for (uint64_t b : trace.requests[k].hash_ids) {
      if (std::optional<EntryId> id = cache.Find(b)) {
        policy.OnAccess(*id);
        ++result.hinted_blocks;
        if (options.hint_pins) {
          ++pins[*id];
          pinned_for[k].push_back(*id);
        }
      }
    }
  };
  // Requests 1..Q are queued (and hinted) before the first one runs.
  for (size_t k = 1; q > 0 && k <= q && k < trace.requests.size(); ++k) hint(k);
  for (size_t t = 0; t < trace.requests.size(); ++t) {
    if (q > 0 && t + q < trace.requests.size() && t > 0) hint(t + q);
    const TraceRequest& r = trace.requests[t];
    const std::vector<uint64_t>& ids = r.hash_ids;
    const size_t h = HitPrefix(ids, [&](uint64_t b) { return cache.Contains(b); });
    result.hit_blocks += h;
    result.total_blocks += ids.size();
    for (size_t j = h; j-- > 0;) policy.OnAccess(*cache.Find(ids[j]));
    for (size_t j = h; j < ids.size(); ++j) {
      if (std::optional<EntryId> id = cache.Find(ids[j])) {
        policy.OnAccess(*id);
        continue;
      }
      if (cache.size() >= options.capacity_blocks) {
        std::optional<EntryId> victim = policy.PickVictim(0, evictable);
        if (!victim && !pins.empty()) break;  // all pinned: the rest is not cached
        if (!victim) {
          return absl::InternalError(absl::StrCat("policy ", AbslView(options.policy),
                                                  " found no victim in a full cache"));
        }
        policy.OnRemove(*victim);
        cache.Remove(*victim);
        ++result.evictions;
      }
      // The parent is looked up before the insert: the victim may have been it.
      const std::optional<EntryId> parent =
          j > 0 ? cache.Find(ids[j - 1]) : std::optional<EntryId>();
      const EntryId id = cache.Add(ids[j]);
      policy.OnInsertBlock(id,
                           BlockInfo{.size_class = 0, .fingerprint = ids[j] + 1, .parent = parent});
      ++result.inserts;
    }
    if (options.hint_pins) {
      for (EntryId id : pinned_for[t]) {
        if (--pins[id] == 0) pins.erase(id);
      }
    }
  }
  result.seconds = SecondsSince(start);
  return result;
}

absl::StatusOr<ReplayResult> ReplayBelady(const Trace& trace, uint64_t capacity_blocks) {
  if (capacity_blocks == 0) {
    return absl::InvalidArgumentError("replay capacity_blocks must be at least 1");
  }
  ReplayResult result;
  result.policy = std::string(kBeladyName);
  result.capacity_blocks = capacity_blocks;
  result.requests = trace.requests.size();
  const auto start = std::chrono::steady_clock::now();

  // next_use[i][j]: the next request after i that holds request i's block j (kNever if none).
  constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
  const size_t n = trace.requests.size();
  std::vector<std::vector<uint64_t>> next_use(n);
  {
    absl::flat_hash_map<uint64_t, uint64_t> seen_at;
    for (size_t i = n; i-- > 0;) {
      const std::vector<uint64_t>& ids = trace.requests[i].hash_ids;
      next_use[i].resize(ids.size());
      for (size_t j = 0; j < ids.size(); ++j) {
        auto it = seen_at.find(ids[j]);
        next_use[i][j] = it == seen_at.end() ? kNever : it->second;
      }
      for (uint64_t b : ids) seen_at[b] = i;
    }
  }

  // Cached blocks ordered by next use; among equal next uses the smallest id goes first.
  absl::flat_hash_map<uint64_t, uint64_t> next_of;
  std::set<std::pair<uint64_t, uint64_t>> by_next;  // (next use, ~id)
  const auto set_next = [&](uint64_t block, uint64_t next) {
    auto [it, inserted] = next_of.try_emplace(block, next);
    if (!inserted) {
      by_next.erase({it->second, ~block});
      it->second = next;
    }
    by_next.insert({next, ~block});
  };
  for (size_t i = 0; i < n; ++i) {
    const std::vector<uint64_t>& ids = trace.requests[i].hash_ids;
    const size_t h = HitPrefix(ids, [&](uint64_t b) { return next_of.contains(b); });
    result.hit_blocks += h;
    result.total_blocks += ids.size();
    for (size_t j = 0; j < ids.size(); ++j) {
      if (!next_of.contains(ids[j])) ++result.inserts;
      set_next(ids[j], next_use[i][j]);
      if (next_of.size() > capacity_blocks) {
        auto furthest = std::prev(by_next.end());
        next_of.erase(~furthest->second);
        by_next.erase(furthest);
        ++result.evictions;
      }
    }
  }
  result.seconds = SecondsSince(start);
  return result;
}

std::string ReplayResultJson(const ReplayResult& r) {
  nlohmann::json j = {{"policy", r.policy},         {"capacity_blocks", r.capacity_blocks},
                      {"requests", r.requests},     {"total_blocks", r.total_blocks},
                      {"hit_blocks", r.hit_blocks}, {"hit_rate", r.hit_rate()},
                      {"inserts", r.inserts},       {"evictions", r.evictions},
                      {"seconds", r.seconds}};
  if (r.hint_lookahead > 0) {
    j["hint_lookahead"] = r.hint_lookahead;
    j["hinted_blocks"] = r.hinted_blocks;
  }
  return j.dump();
}

}  // namespace kvtier::replay
