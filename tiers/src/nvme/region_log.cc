#include "tiers/src/nvme/region_log.h"

#include <cassert>

namespace kvtier::tiers::nvme {

RegionLog::RegionLog(uint32_t region_count, uint64_t region_bytes)
    : region_bytes_(region_bytes), regions_(region_count) {}

void RegionLog::Restore(uint32_t region, uint64_t generation) {
  regions_[region].generation = generation;
}

std::optional<uint32_t> RegionLog::Allocate(uint64_t bytes) {
  if (!active_ || bytes > region_bytes_ - write_offset_) return std::nullopt;
  const uint64_t offset = write_offset_;
  write_offset_ += bytes;
  return static_cast<uint32_t>(offset);
}

std::optional<uint32_t> RegionLog::NextToOpen() const {
  std::optional<uint32_t> oldest;
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    if (active_ == r) continue;
    if (Quiet(r)) return r;
    if (regions_[r].pinned_bytes * 2 > region_bytes_) continue;
    if (!oldest || regions_[r].generation < regions_[*oldest].generation) oldest = r;
  }
  return oldest;
}

void RegionLog::Open(uint32_t region, uint64_t generation) {
  assert(generation > regions_[region].generation);
  regions_[region].generation = generation;
  active_ = region;
  write_offset_ = 0;
}

std::optional<uint32_t> RegionLog::active() const { return active_; }

void RegionLog::AddLive(uint32_t region, uint64_t bytes, bool pinned) {
  regions_[region].live_bytes += bytes;
  if (pinned) regions_[region].pinned_bytes += bytes;
  live_total_ += bytes;
}

void RegionLog::RemoveLive(uint32_t region, uint64_t bytes, bool pinned) {
  assert(regions_[region].live_bytes >= bytes);
  regions_[region].live_bytes -= bytes;
  if (pinned) regions_[region].pinned_bytes -= bytes;
  live_total_ -= bytes;
}

void RegionLog::RemovePending(uint32_t region) {
  assert(regions_[region].pending_records > 0);
  --regions_[region].pending_records;
}

uint32_t RegionLog::regions_in_use() const {
  uint32_t n = 0;
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    if (regions_[r].live_bytes > 0 || active_ == r) ++n;
  }
  return n;
}

}  // namespace kvtier::tiers::nvme
