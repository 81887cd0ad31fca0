#include "tiers/src/nvme/region_log.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace kvtier::tiers::nvme {

RegionLog::RegionLog(uint32_t region_count, uint64_t region_bytes)
    : region_bytes_(region_bytes), regions_(region_count) {
  // Every region starts empty and never opened: quiet, and openable while none is active.
  for (uint32_t r = 0; r < region_count; ++r) openable_.insert(openable_.end(), r);
  DebugCheck();
}

void RegionLog::Restore(uint32_t region, uint64_t generation) {
  const Standing before = StandingOf(region);
  regions_[region].generation = generation;
  Restand(region, before);
  DebugCheck();
}

std::optional<uint32_t> RegionLog::Allocate(uint64_t bytes) {
  if (!active_ || bytes > region_bytes_ - write_offset_) return std::nullopt;
  const uint64_t offset = write_offset_;
  write_offset_ += bytes;
  return static_cast<uint32_t>(offset);
}

// The private helpers are inline: the library is built with -fPIC, where GCC does not inline
// a function that another library could interpose, and they run at every transition.

inline bool RegionLog::Evictable(uint32_t r) const {
  return active_ != r && !regions_[r].reclaiming && regions_[r].pending_records == 0 &&
         regions_[r].pinned_bytes * 2 <= region_bytes_;
}

inline RegionLog::Standing RegionLog::StandingOf(uint32_t r) const {
  const Region& region = regions_[r];
  return Standing{.openable = Openable(r),
                  .evictable = Evictable(r) && !Quiet(r),
                  .live = region.live_bytes > 0,
                  .pending = region.pending_records > 0,
                  .generation = region.generation};
}

inline void RegionLog::Restand(uint32_t r, const Standing& before) {
  const Standing now = StandingOf(r);
  if (now.openable != before.openable) {
    if (now.openable) {
      openable_.insert(r);
    } else {
      openable_.erase(r);
    }
  }
  if (now.evictable != before.evictable || now.generation != before.generation) {
    if (before.evictable) oldest_.erase({before.generation, r});
    if (now.evictable) oldest_.insert({now.generation, r});
  }
  if (now.live != before.live) now.live ? ++live_regions_ : --live_regions_;
  if (now.pending != before.pending) now.pending ? ++pending_regions_ : --pending_regions_;
}

std::optional<uint32_t> RegionLog::NextToOpen() const {
  if (!openable_.empty()) return *openable_.begin();
  if (oldest_.empty()) return std::nullopt;
  return oldest_.begin()->second;
}

std::vector<uint32_t> RegionLog::OldestRegions(size_t n) const {
  std::vector<uint32_t> found;
  found.reserve(std::min(n, oldest_.size()));
  for (auto it = oldest_.begin(); it != oldest_.end() && found.size() < n; ++it) {
    found.push_back(it->second);
  }
  return found;
}

void RegionLog::Open(uint32_t region, uint64_t generation) {
  assert(generation > regions_[region].generation);
  // The previously active region is sealed: it may become openable or evictable.
  const std::optional<uint32_t> sealed =
      active_.has_value() && *active_ != region ? active_ : std::nullopt;
  const Standing sealed_before = sealed ? StandingOf(*sealed) : Standing{};
  const Standing before = StandingOf(region);
  regions_[region].generation = generation;
  regions_[region].clean = false;
  active_ = region;
  write_offset_ = 0;
  Restand(region, before);
  if (sealed) Restand(*sealed, sealed_before);
  DebugCheck();
}

void RegionLog::Reclaim(uint32_t region, uint64_t generation) {
  assert(active_ != region && generation > regions_[region].generation);
  const Standing before = StandingOf(region);
  regions_[region].generation = generation;
  regions_[region].clean = Quiet(region);
  regions_[region].reclaiming = false;
  Restand(region, before);
  DebugCheck();
}

void RegionLog::MarkReclaiming(uint32_t region) {
  const Standing before = StandingOf(region);
  regions_[region].reclaiming = true;
  Restand(region, before);
  DebugCheck();
}

void RegionLog::AbortReclaim(uint32_t region) {
  const Standing before = StandingOf(region);
  regions_[region].reclaiming = false;
  Restand(region, before);
  DebugCheck();
}

// The four below run for every record placed and committed. Most of those calls leave the
// region where it stood (it already held live, or pending, records and still does, its pinned
// bytes unchanged): they skip Restand.

void RegionLog::AddLive(uint32_t region, uint64_t bytes, bool pinned) {
  Region& r = regions_[region];
  const bool moves = r.live_bytes == 0 || pinned;
  const Standing before = moves ? StandingOf(region) : Standing{};
  r.live_bytes += bytes;
  if (pinned) r.pinned_bytes += bytes;
  live_total_ += bytes;
  if (moves) Restand(region, before);
  DebugCheck();
}

void RegionLog::RemoveLive(uint32_t region, uint64_t bytes, bool pinned) {
  Region& r = regions_[region];
  assert(r.live_bytes >= bytes);
  const bool moves = r.live_bytes == bytes || pinned;
  const Standing before = moves ? StandingOf(region) : Standing{};
  r.live_bytes -= bytes;
  if (pinned) r.pinned_bytes -= bytes;
  live_total_ -= bytes;
  if (moves) Restand(region, before);
  DebugCheck();
}

void RegionLog::AddPending(uint32_t region) {
  Region& r = regions_[region];
  const bool moves = r.pending_records == 0;
  const Standing before = moves ? StandingOf(region) : Standing{};
  ++r.pending_records;
  if (moves) Restand(region, before);
  DebugCheck();
}

void RegionLog::RemovePending(uint32_t region) {
  Region& r = regions_[region];
  assert(r.pending_records > 0);
  const bool moves = r.pending_records == 1;
  const Standing before = moves ? StandingOf(region) : Standing{};
  --r.pending_records;
  if (moves) Restand(region, before);
  DebugCheck();
}

uint32_t RegionLog::regions_in_use() const {
  const bool active_empty = active_.has_value() && regions_[*active_].live_bytes == 0;
  return live_regions_ + (active_empty ? 1 : 0);
}

absl::Status RegionLog::CheckCounters() const {
  auto mismatch = [](auto&&... what) {
    return absl::InternalError(absl::StrCat("RegionLog's counters differ from a scan: ", what...));
  };
  // Both sets are walked in order beside the scan (no lookups: debug builds run this often).
  auto openable_it = openable_.begin();
  std::vector<std::pair<uint64_t, uint32_t>> oldest;
  uint32_t live_regions = 0, pending_regions = 0;
  uint64_t live_total = 0;
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    const Standing s = StandingOf(r);
    const bool kept = openable_it != openable_.end() && *openable_it == r;
    if (kept) ++openable_it;
    if (s.openable != kept) {
      return mismatch("region ", r,
                      s.openable ? " can be opened, is not in the openable set"
                                 : " is in the openable set, cannot be opened");
    }
    if (s.evictable) oldest.emplace_back(s.generation, r);
    live_regions += s.live ? 1 : 0;
    pending_regions += s.pending ? 1 : 0;
    live_total += regions_[r].live_bytes;
  }
  if (openable_it != openable_.end()) {
    return mismatch("the openable set holds ", *openable_it, ", not a region");
  }
  std::sort(oldest.begin(), oldest.end());
  const auto [scanned, kept] =
      std::mismatch(oldest.begin(), oldest.end(), oldest_.begin(), oldest_.end());
  if (scanned != oldest.end() || kept != oldest_.end()) {
    const auto name = [](const std::pair<uint64_t, uint32_t>& e) {
      return absl::StrCat("region ", e.second, " of generation ", e.first);
    };
    return mismatch("the evictable set holds ", kept != oldest_.end() ? name(*kept) : "nothing",
                    " where a scan finds ", scanned != oldest.end() ? name(*scanned) : "nothing");
  }
  if (live_regions != live_regions_) {
    return mismatch(live_regions_, " regions counted with live records, ", live_regions, " found");
  }
  if (pending_regions != pending_regions_) {
    return mismatch(pending_regions_, " regions counted with pending records, ", pending_regions,
                    " found");
  }
  if (live_total != live_total_) {
    return mismatch(live_total_, " live bytes counted, ", live_total, " found");
  }
  return absl::OkStatus();
}

inline void RegionLog::DebugCheck() const {
#ifndef NDEBUG
  if (regions_.size() > kDebugCheckRegions) return;
  if (const absl::Status s = CheckCounters(); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::abort();
  }
#endif
}

}  // namespace kvtier::tiers::nvme
