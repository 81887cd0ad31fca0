// NvmeTier region reclaim: choosing the regions to reuse (oldest first), deleting their index
// entries and recording their new generations, reading back the blocks worth keeping and
// writing them again (hot and pinned ones, higher priorities first).
//
// Two paths. When the writer finds no quiet region, it reclaims a batch itself, after waiting
// for the commits in flight (OpenNextRegion). Before it gets there, once few quiet regions are
// left, it hands the next batch to the commit thread (ReclaimAhead): queued behind the commits
// in flight, the job sees the index as they leave it and races none of them, and the writer
// goes on writing into the regions it still has. See docs/nvme.md, "Region reuse".
#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "spdlog/spdlog.h"
#include "tiers/src/nvme/record.h"
#include "tiers/src/nvme/tier_impl.h"

namespace kvtier::tiers {
using nvme::NanosBetween;
using nvme::NanosSince;

using nvme::BlockLocation;
using nvme::RoundUp;

bool NvmeTier::Impl::ReclaimsFrom(uint64_t mark) const {
  if (mark == 0) return false;
  absl::MutexLock lock(&mu_);
  // As OpenNextRegion picks. None: it fails by itself.
  const std::optional<uint32_t> target = log_->NextToOpen();
  return target.has_value() && log_->generation(*target) >= mark && log_->live_bytes(*target) > 0;
}

uint64_t NvmeTier::Impl::LogMark() const {
  WriteLock wlock(this);
  absl::MutexLock lock(&mu_);
  const std::optional<uint32_t> active = log_->active();
  // No active region (nothing written since startup): the next one opened is the first after.
  return active.has_value() ? log_->generation(*active) : next_generation_;
}

absl::Status NvmeTier::Impl::OpenNextRegion(int& evictions_left, uint64_t keep_from) {
  if (evictions_left-- <= 0) {
    return absl::ResourceExhaustedError(
        "NVMe tier full: every region holds pinned blocks; unpin blocks or raise "
        "--nvme-capacity");
  }
  // Blocks still being committed must be in the index before a region's entries are listed.
  const auto wait_start = std::chrono::steady_clock::now();
  Drain();
  {
    absl::MutexLock lock(&mu_);
    nvme_.reclaim_wait_nanos += NanosSince(wait_start);
  }
  std::vector<uint32_t> regions;
  {
    absl::MutexLock lock(&mu_);
    const std::optional<uint32_t> target = log_->NextToOpen();
    if (!target) {
      return absl::ResourceExhaustedError(
          "NVMe tier full: every region is mostly pinned blocks; unpin blocks or raise "
          "--nvme-capacity");
    }
    regions.push_back(*target);
    // The wait above is paid once for the batch: the regions reclaimed with the target open
    // later without one. (A target emptied meanwhile is quiet: nothing to batch.)
    if (!log_->Quiet(*target)) {
      for (uint32_t r : log_->OldestRegions(reclaim_batch_)) {
        if (r == *target) continue;
        if (keep_from != 0 && log_->generation(r) >= keep_from) break;
        regions.push_back(r);
      }
    }
  }
  return ReclaimRegions(regions);
}

absl::StatusOr<bool> NvmeTier::Impl::OpenQuietRegion() {
  std::optional<uint32_t> target;
  {
    absl::MutexLock lock(&mu_);
    target = log_->NextToOpen();
    if (!target || !log_->Quiet(*target)) return false;
  }
  // Nothing in the region is live or pending, so no commit in flight can touch it: the ones
  // that replace a block point away from it, quota walks visit only regions with live bytes,
  // and new records go only to the active region. Its stale index entries, if any, are
  // deleted with the generation bump; there is nothing to reinsert. It stays quiet until it
  // is opened: only this thread places records.
  const uint32_t regions[] = {*target};
  KVTIER_RETURN_IF_ERROR(ReclaimRegions(regions));
  return true;
}

absl::Status NvmeTier::Impl::ReclaimRegions(std::span<const uint32_t> regions) {
  nvme::NvmeIndex::Batch batch;
  std::vector<std::vector<std::pair<uint32_t, uint64_t>>> members(regions.size());
  std::vector<Reinsert> reinserts;
  bool clean = true;
  const auto list_start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < regions.size(); ++i) {
    CollectRegion(regions[i], batch, members[i], reinserts);
    batch.PutRegion(regions[i], next_generation_ + i);
    absl::MutexLock lock(&mu_);
    clean = clean && log_->Clean(regions[i]);
  }
  batch.PutNextGeneration(next_generation_ + regions.size());
  // Synced before a byte of the regions is overwritten: afterwards, no index entry points into
  // their previous generations. A clean region (never opened since format, or reclaimed ahead
  // and not opened since) has no entries: they are only ever written after their region's
  // 'R' entry, in one log, and its last reclaim deleted them, synced. So its batch need not
  // wait for the disk: the next synced commit carries it, and if it is lost in a crash, so is
  // everything written after it, and startup takes the next generation above every record
  // header it finds (at most region_count openings can be lost so: a region is not opened
  // again before its records are committed, which syncs the index).
  const auto commit_start = std::chrono::steady_clock::now();
  const absl::Status s = index_->Commit(batch, /*sync=*/!clean);
  if (!clean) {  // clean regions cost the writer next to nothing: not counted
    absl::MutexLock lock(&mu_);
    nvme_.reclaim_list_nanos += NanosBetween(list_start, commit_start);
    nvme_.reclaim_commit_nanos += NanosSince(commit_start);
  }
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    ++nvme_.index_errors;
    return absl::UnavailableError(
        absl::StrCat("NVMe index write failed while reclaiming a region: ", s.message()));
  }
  const uint64_t first_generation = next_generation_;
  next_generation_ += regions.size();
  size_t evicted = 0;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < regions.size(); ++i) {
      for (const auto& [ns, tk] : members[i]) {
        auto it = table_.find(tk);
        if (it != table_.end() && it->second.region == regions[i]) EraseLocked(ns, tk, it->second);
      }
      evicted += members[i].size();
      if (!members[i].empty()) ++nvme_.region_evictions;
      if (i == 0) {
        log_->Open(regions[i], first_generation);
      } else {
        log_->Reclaim(regions[i], first_generation + i);
      }
    }
    if (reinserts.empty()) {
      nvme_.evicted_blocks += evicted;
      return absl::OkStatus();
    }
  }

  const std::shared_ptr<WriteCall> call = NewReinsertCall(reinserts, /*after_reclaim=*/false);
  // Each region's reinsertions fit within it (CollectRegion's budget), so they fit the opened
  // region and the clean ones beside it: this reclaims nothing more.
  PlaceCursor cur;
  cur.calls.push_back(call);
  WriteBlocks(cur, /*take_queued=*/false);
  for (const auto& c : cur.deferred) ReleaseCall(c);  // no `done`: safe under write_mu_
  Drain();  // `reinserts` owns their bytes until they are committed
  uint64_t reinserted = 0;
  for (const absl::Status& st : call->statuses) reinserted += st.ok() ? 1 : 0;
  absl::MutexLock lock(&mu_);
  nvme_.reinserted_blocks += reinserted;
  nvme_.evicted_blocks += evicted - reinserted;
  return absl::OkStatus();
}

void NvmeTier::Impl::CollectRegion(uint32_t region, nvme::NvmeIndex::Batch& batch,
                                   std::vector<std::pair<uint32_t, uint64_t>>& members,
                                   std::vector<Reinsert>& reinserts) {
  struct Listed {
    uint32_t offset;
    uint32_t ns;
    BlockKey key;
  };
  std::vector<Listed> listed;
  const absl::Status scan =
      index_->ForEachInRegion(region, [&](uint32_t offset, uint32_t ns, const BlockKey& key) {
        listed.push_back({offset, ns, key});
      });
  if (!scan.ok()) {
    // Entries not listed keep pointing at the old generation, which the reads and the next
    // startup reject; losing them costs cache hits, not correctness.
    spdlog::warn("NVMe index: cannot list region {} ({}); its unlisted entries go stale", region,
                 scan.ToString());
  }
  struct Live {
    Listed at;
    uint64_t tk;
    Entry entry;
  };
  std::vector<Live> live;
  {
    absl::MutexLock lock(&mu_);
    if (!scan.ok()) ++nvme_.index_errors;
    for (const Listed& l : listed) {
      const uint64_t tk = TableKey(l.ns, l.key);
      auto it = table_.find(tk);
      if (it != table_.end() && it->second.region == region &&
          uint32_t{it->second.offset_units} * alignment_ == l.offset) {
        live.push_back({l, tk, it->second});
      } else {
        batch.DeleteLocator(region, l.offset);  // left behind by a rewrite or a damaged record
      }
    }
  }

  const uint32_t now_s = NowUnixSeconds();
  uint64_t pinned_bytes = 0;
  for (const Live& m : live) {
    if ((m.entry.flags & nvme::kFlagPinned) && !Expired(m.entry, now_s)) {
      pinned_bytes += uint64_t{m.entry.record_units} * alignment_;
    }
  }
  // Candidates in priority order, highest first; write order within a priority.
  std::vector<int32_t> priority(live.size(), 0);
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < live.size(); ++i) {
      auto it = ns_.find(live[i].at.ns);
      if (it != ns_.end()) priority[i] = it->second.limits.priority;
    }
  }
  std::vector<size_t> order(live.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return priority[a] > priority[b]; });
  for (const Live& m : live) {
    batch.DeleteBlock(m.at.ns, m.at.key, BlockLocation{.region = region, .offset = m.at.offset});
    members.emplace_back(m.at.ns, m.tk);
  }
  // Pinned blocks come back whole; hot ones within the fraction and what pinned ones leave.
  uint64_t budget = std::min<uint64_t>(
      static_cast<uint64_t>(options_.max_reinsert_fraction * static_cast<double>(sb_.region_bytes)),
      sb_.region_bytes - std::min(pinned_bytes, sb_.region_bytes));
  // Set once a candidate did not fit the budget: no lower priority is rewritten after that, so
  // a low-priority namespace never takes the rewrite space a higher one wanted. A candidate is
  // an unexpired block that is hot by the default rule (read since written) or, under a
  // custom reinsertion policy, any unexpired block (the policy is asked only about blocks
  // that fit).
  std::optional<int32_t> full_at;
  std::vector<Reinsert> chosen;  // appended to `reinserts` once read back and checked
  for (size_t i : order) {
    const Live& m = live[i];
    if (Expired(m.entry, now_s)) continue;
    const bool pinned = (m.entry.flags & nvme::kFlagPinned) != 0;
    const uint64_t record_bytes = uint64_t{m.entry.record_units} * alignment_;
    if (!pinned) {
      if (!options_.reinsertion && m.entry.hits == 0) continue;
      if (full_at && priority[i] < *full_at) continue;
      if (record_bytes > budget) {
        if (!full_at) full_at = priority[i];
        continue;
      }
    }
    absl::StatusOr<BlockLocation> loc = index_->GetBlock(m.at.ns, m.at.key);
    if (!loc.ok() || loc->region != region || loc->offset != m.at.offset) continue;
    if (!pinned) {
      if (options_.reinsertion && !options_.reinsertion(ReinsertionCandidate{
                                      m.at.ns, m.at.key, loc->length, m.entry.hits})) {
        continue;
      }
      budget -= record_bytes;
    }
    chosen.push_back(
        Reinsert{m.at.ns, m.at.key, *loc, nvme::AllocateAligned(loc->length, alignment_)});
  }
  if (chosen.empty()) return;

  // Read them back before the region is given up; a record that fails its check is dropped.
  std::vector<IoSegment> segments(chosen.size());
  std::vector<IoOp> ops(chosen.size());
  for (size_t k = 0; k < chosen.size(); ++k) {
    const Reinsert& r = chosen[k];
    segments[k] = {r.data.get(), RoundUp(r.loc.length, alignment_)};
    ops[k].type = IoOp::Type::kRead;
    ops[k].offset = RegionOffset(region) + r.loc.offset + alignment_;
    ops[k].segments = {&segments[k], 1};
  }
  (void)device_->Submit(ops);
  uint64_t failures = 0, io_errors = 0, bytes_read = 0;
  for (size_t k = 0; k < chosen.size(); ++k) {
    Reinsert& r = chosen[k];
    if (!ops[k].status.ok()) {
      ++io_errors;
      continue;
    }
    bytes_read += segments[k].length;
    if (nvme::PayloadChecksum(r.ns, r.key, {r.data.get(), r.loc.length}) != r.loc.checksum) {
      ++failures;
      continue;
    }
    reinserts.push_back(std::move(r));
  }
  absl::MutexLock lock(&mu_);
  nvme_.checksum_failures += failures;
  nvme_.io_errors += io_errors;
  nvme_.flash_bytes_read += bytes_read;
}

void NvmeTier::Impl::ReclaimAhead(uint64_t keep_from) {
  if (reclaim_batch_ < 2 || keep_from != 0 || ReclaimPending()) return;
  std::vector<ReclaimTarget> targets;
  {
    absl::MutexLock lock(&mu_);
    // The job runs once the commits queued before it are done, and meanwhile the writer goes
    // on filling quiet regions: start while they still hold half a batch more than the records
    // in flight (counted in the regions they fill), so that it is done before they run out;
    // but keep at most a batch in reserve, however much is in flight.
    const uint32_t runway = std::min(reclaim_batch_, reclaim_batch_ / 2 + log_->pending_regions());
    if (log_->quiet_regions() > runway) return;
    for (uint32_t r : log_->OldestRegions(reclaim_batch_)) {
      log_->MarkReclaiming(r);
      targets.push_back(ReclaimTarget{r, next_generation_ + targets.size()});
    }
  }
  if (targets.empty()) return;
  next_generation_ += targets.size();
  // The next generation goes to the index first, unsynced: the job's synced batch, later in
  // the same log, makes it durable with the regions' new generations.
  nvme::NvmeIndex::Batch batch;
  batch.PutNextGeneration(next_generation_);
  const absl::Status s = index_->Commit(batch, /*sync=*/false);
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    ++nvme_.index_errors;
    for (const ReclaimTarget& t : targets) log_->AbortReclaim(t.region);
    return;
  }
  absl::MutexLock lock(&pipe_mu_);
  reclaim_pending_ = true;
  CommitJob job;
  job.reclaim = std::move(targets);
  commit_queue_.push_back(std::move(job));
}

bool NvmeTier::Impl::ReclaimPending() {
  absl::MutexLock lock(&pipe_mu_);
  return reclaim_pending_;
}

void NvmeTier::Impl::RunReclaimJob(std::span<const ReclaimTarget> targets) {
  // Every commit queued before this job has landed and none after it has started: no commit
  // in flight can touch these regions, as OpenNextRegion's wait ensures for the writer.
  nvme::NvmeIndex::Batch batch;
  std::vector<std::vector<std::pair<uint32_t, uint64_t>>> members(targets.size());
  std::vector<Reinsert> reinserts;
  for (size_t i = 0; i < targets.size(); ++i) {
    CollectRegion(targets[i].region, batch, members[i], reinserts);
    batch.PutRegion(targets[i].region, targets[i].generation);
  }
  const absl::Status s = index_->Commit(batch, /*sync=*/true);
  {
    absl::MutexLock lock(&mu_);
    if (!s.ok()) {
      ++nvme_.index_errors;
      for (const ReclaimTarget& t : targets) log_->AbortReclaim(t.region);
    } else {
      for (size_t i = 0; i < targets.size(); ++i) {
        for (const auto& [ns, tk] : members[i]) {
          auto it = table_.find(tk);
          if (it != table_.end() && it->second.region == targets[i].region) {
            EraseLocked(ns, tk, it->second);
          }
        }
        if (!members[i].empty()) {
          ++nvme_.region_evictions;
          ++nvme_.reclaimed_ahead;
        }
        nvme_.evicted_blocks += members[i].size();
        log_->Reclaim(targets[i].region, targets[i].generation);
      }
      for (const Reinsert& r : reinserts) reinserting_.insert(TableKey(r.ns, r.key));
    }
  }
  {
    absl::MutexLock lock(&pipe_mu_);
    reclaim_pending_ = false;
  }
  if (!s.ok()) {
    spdlog::warn("NVMe index write failed while reclaiming {} region(s) ahead: {}", targets.size(),
                 s.ToString());
    return;
  }
  if (!reinserts.empty()) QueueReinserts(std::move(reinserts));
}

std::shared_ptr<NvmeTier::Impl::WriteCall> NvmeTier::Impl::NewReinsertCall(
    std::span<const Reinsert> reinserts, bool after_reclaim) {
  auto call = std::make_shared<WriteCall>();
  call->statuses.resize(reinserts.size());
  call->blocks.reserve(reinserts.size());
  for (size_t k = 0; k < reinserts.size(); ++k) {
    const Reinsert& r = reinserts[k];
    PendingBlock b{r.ns,
                   r.key,
                   {r.data.get(), r.loc.length},
                   r.loc.codec,
                   r.loc.flags,
                   r.loc.expiry_unix_s,
                   &call->statuses[k],
                   r.loc.checksum};
    b.reinsert_after_reclaim = after_reclaim;
    call->blocks.push_back(b);
  }
  return call;
}

void NvmeTier::Impl::QueueReinserts(std::vector<Reinsert> reinserts) {
  auto owned = std::make_shared<std::vector<Reinsert>>(std::move(reinserts));
  const std::shared_ptr<WriteCall> call = NewReinsertCall(*owned, /*after_reclaim=*/true);
  // `owned` keeps the bytes until the call is done.
  call->done = [this, owned](std::vector<absl::Status> statuses) {
    uint64_t rewritten = 0;
    for (const absl::Status& st : statuses) rewritten += st.ok() ? 1 : 0;
    absl::MutexLock lock(&mu_);
    nvme_.reinserted_blocks += rewritten;
    nvme_.evicted_blocks -= rewritten;
    // Not rewritten (a write error): the key must not wait for a rewrite that never comes.
    for (size_t k = 0; k < statuses.size(); ++k) {
      if (!statuses[k].ok()) reinserting_.erase(TableKey((*owned)[k].ns, (*owned)[k].key));
    }
  };
  // First in the queue: the sooner they are written, the shorter the keys are missing.
  absl::MutexLock lock(&pipe_mu_);
  write_queue_.push_front(std::move(call));
}

}  // namespace kvtier::tiers
