// NvmeTier writes: the caller's stage (WriteAsync: validation, admission, checksums), the
// commit stage (fdatasync, index, table), per-namespace quotas, removes, pins and namespaces.
// The write stage between them is in tier_write_stage.cc, region reclaim in tier_reclaim.cc.
//
// Crash ordering, step by step:
//   write:   records -> device (write stage), fdatasync -> index entries ('B' and 'L'),
//            synced -> visible (commit stage);
//   reclaim: index entries of the region deleted + its new generation recorded, synced ->
//            only then is the region written again;
//   quota:   the entries of the records a write drops for its namespace's quota are deleted
//            in the same synced batch that indexes the write, so the index never holds a
//            namespace over its quota because of a write.
// A crash between the steps leaves either records nobody points to (space, reclaimed with the
// region) or index entries for a region whose generation has moved on (dropped at startup, and
// failing the seeded checksum if read). Neither can serve wrong bytes.
#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "spdlog/spdlog.h"
#include "tiers/src/nvme/record.h"
#include "tiers/src/nvme/tier_impl.h"

namespace kvtier::tiers {

using nvme::AlignedBytes;
using nvme::BlockLocation;
using nvme::RecordBytes;
using nvme::RoundUp;

absl::Status NvmeTier::Impl::AddNamespace(uint32_t ns, uint64_t block_bytes) {
  if (block_bytes == 0 || RecordBytes(block_bytes, alignment_) > sb_.region_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("NVMe namespace ", ns, ": block size ", block_bytes,
                     " bytes must be positive and fit a region of ", sb_.region_bytes,
                     " bytes with its header; raise the NVMe region size"));
  }
  WriteLock wlock(this);
  {
    absl::MutexLock lock(&mu_);
    auto it = ns_.find(ns);
    if (it != ns_.end() && it->second.block_bytes == block_bytes) return absl::OkStatus();
    if (it != ns_.end() && it->second.block_bytes != 0) {
      return absl::AlreadyExistsError(absl::StrCat("NVMe namespace ", ns,
                                                   " is registered with block size ",
                                                   it->second.block_bytes, ", not ", block_bytes));
    }
  }
  nvme::NvmeIndex::Batch batch;
  batch.PutNamespace(ns, block_bytes);
  absl::Status s = index_->Commit(batch, /*sync=*/true);
  absl::MutexLock lock(&mu_);
  if (!s.ok()) {
    ++nvme_.index_errors;
    return s;
  }
  ns_[ns].block_bytes = block_bytes;
  return absl::OkStatus();
}

void NvmeTier::Impl::WriteAsync(uint32_t ns, std::span<const BlockKey> keys,
                                std::span<const std::span<const std::byte>> blocks,
                                const NvmeWriteOptions& options,
                                std::function<void(std::vector<absl::Status>)> done) {
  const size_t n = keys.size();
  auto call = std::make_shared<WriteCall>();
  call->statuses.resize(n);
  call->done = std::move(done);
  call->keep_from = options.keep_from;
  auto fail_all = [&](const absl::Status& s) {
    std::fill(call->statuses.begin(), call->statuses.end(), s);
    ReleaseCall(call);
  };
  if (blocks.size() != n ||
      (!options.upper_tier_hits.empty() && options.upper_tier_hits.size() != n) ||
      (!options.ttls_seconds.empty() && options.ttls_seconds.size() != n) ||
      (!options.codecs.empty() && options.codecs.size() != n)) {
    return fail_all(absl::InvalidArgumentError(
        "NVMe write: keys, blocks, hits, TTLs and codecs differ in number"));
  }
  uint64_t block_bytes = 0;
  uint64_t quota = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = ns_.find(ns);
    if (it != ns_.end()) {
      block_bytes = it->second.block_bytes;
      quota = it->second.limits.quota_bytes;
    }
  }
  if (block_bytes == 0) {
    return fail_all(absl::InvalidArgumentError(
        absl::StrCat("namespace ", ns, " is not registered with the NVMe tier")));
  }
  const uint32_t now_s = NowUnixSeconds();
  auto expiry_of = [&](size_t i) -> uint32_t {
    const uint32_t ttl =
        options.ttls_seconds.empty() ? options.ttl_seconds : options.ttls_seconds[i];
    return ttl == 0 ? 0 : now_s + ttl;
  };
  absl::flat_hash_set<BlockKey> seen;
  call->blocks.reserve(n);
  uint64_t rejected = 0;
  {
    absl::MutexLock admit_lock(&admit_mu_);
    for (size_t i = 0; i < n; ++i) {
      const uint64_t len = blocks[i].size();
      if (len == 0 || len > block_bytes) {
        call->statuses[i] = absl::InvalidArgumentError(
            absl::StrCat("block of ", len, " bytes; namespace ", ns, " takes 1..", block_bytes));
        continue;
      }
      if (!seen.insert(keys[i]).second) {
        call->statuses[i] = absl::InvalidArgumentError("key repeated in the write batch");
        continue;
      }
      if (options.source == NvmeWriteOptions::Source::kDemotion) {
        AdmissionRequest request{ns, keys[i], len,
                                 options.upper_tier_hits.empty() ? 0 : options.upper_tier_hits[i]};
        if (!admission_->Admit(request)) {
          ++rejected;
          call->statuses[i] = absl::ResourceExhaustedError(absl::StrCat(
              "not admitted by the NVMe admission policy ", AbslView(admission_->Name())));
          continue;
        }
      }
      call->blocks.push_back(PendingBlock{
          ns, keys[i], blocks[i], options.codecs.empty() ? options.codec : options.codecs[i],
          static_cast<uint8_t>(options.pinned ? nvme::kFlagPinned : 0), expiry_of(i),
          &call->statuses[i]});
    }
  }
  if (rejected > 0) {
    absl::MutexLock lock(&mu_);
    nvme_.admission_rejections += rejected;
  }
  if (quota != 0) RefuseOverQuota(ns, quota, call->blocks);
  if (call->blocks.empty()) return ReleaseCall(call);
  // The caller computes its checksums: hashing is the write path's main CPU cost, and done
  // here it runs in parallel with the write stage's I/O (and across callers) instead of on
  // one more pipeline thread.
  for (PendingBlock& b : call->blocks) b.checksum = nvme::PayloadChecksum(b.ns, b.key, b.payload);
  absl::MutexLock lock(&pipe_mu_);
  pipe_mu_.Await(absl::Condition(
      +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->pipe_mu_) {
        return self->write_queue_.size() < kMaxQueuedCalls;
      },
      this));
  write_queue_.push_back(std::move(call));
}

void NvmeTier::Impl::RefuseOverQuota(uint32_t ns, uint64_t quota,
                                     std::vector<PendingBlock>& blocks) {
  // Written whole, the call would drop its own earlier blocks at commit to make room for its
  // later ones; refusing them here saves those flash writes. From the last block back, a block
  // stays if it fits what the later blocks left of the quota.
  std::vector<bool> keep(blocks.size(), false);
  uint64_t taken = 0;
  for (size_t j = blocks.size(); j-- > 0;) {
    const uint64_t record_bytes = RecordBytes(blocks[j].payload.size(), alignment_);
    if (taken + record_bytes > quota) continue;
    taken += record_bytes;
    keep[j] = true;
  }
  std::vector<PendingBlock> kept;
  kept.reserve(blocks.size());
  uint64_t refused = 0;
  for (size_t j = 0; j < blocks.size(); ++j) {
    if (keep[j]) {
      kept.push_back(blocks[j]);
      continue;
    }
    const uint64_t record_bytes = RecordBytes(blocks[j].payload.size(), alignment_);
    *blocks[j].status = absl::ResourceExhaustedError(
        record_bytes > quota
            ? absl::StrCat("block takes ", record_bytes, " bytes on NVMe, more than namespace ", ns,
                           "'s NVMe quota of ", quota, " bytes")
            : absl::StrCat("namespace ", ns, "'s NVMe quota of ", quota,
                           " bytes is taken by the later blocks of this write"));
    ++refused;
  }
  if (refused == 0) return;
  blocks = std::move(kept);
  absl::MutexLock lock(&mu_);
  nvme_.quota_rejections += refused;
  if (TierCounters* c = NamespaceCounters(ns)) c->quota_rejections += refused;
}

void NvmeTier::Impl::CommitLoop() {
  while (true) {
    std::vector<CommitJob> jobs;
    {
      absl::MutexLock lock(&pipe_mu_);
      pipe_mu_.Await(absl::Condition(
          +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->pipe_mu_) {
            return self->stopping_ || !self->commit_queue_.empty();
          },
          this));
      if (commit_queue_.empty()) return;  // stopping, and nothing left to commit
      while (!commit_queue_.empty()) {
        jobs.push_back(std::move(commit_queue_.front()));
        commit_queue_.pop_front();
      }
      committing_ = true;
    }
    // Write jobs in runs, each run one group (one fdatasync, one index batch); a reclaim job
    // alone, in its turn, so that it sees the index as the jobs before it leave it.
    for (size_t i = 0; i < jobs.size();) {
      if (!jobs[i].reclaim.empty()) {
        RunReclaimJob(jobs[i].reclaim);
        ++i;
        continue;
      }
      size_t end = i;
      while (end < jobs.size() && jobs[end].reclaim.empty()) ++end;
      CommitGroup(std::span<CommitJob>(jobs).subspan(i, end - i));
      i = end;
    }
    {
      absl::MutexLock lock(&mu_);
      for (const CommitJob& job : jobs) {
        for (const Placed& p : job.placed) log_->RemovePending(p.region);
      }
    }
    for (CommitJob& job : jobs) {
      for (const auto& call : job.calls) ReleaseCall(call);
    }
    absl::MutexLock lock(&pipe_mu_);
    committing_ = false;
  }
}

void NvmeTier::Impl::CommitGroup(std::span<CommitJob> jobs) {
  using Fate = CommitItem::Fate;
  std::vector<CommitItem> items;
  uint64_t io_errors = 0, bytes_written = 0;
  for (CommitJob& job : jobs) {
    for (size_t k = 0; k < job.placed.size(); ++k) {
      const Placed& p = job.placed[k];
      const PendingBlock& b = *p.block;
      const absl::Status& s = job.io_status[k];
      if (s.ok()) {
        items.push_back(CommitItem{&b,
                                   BlockLocation{p.region, p.offset, b.payload.size(), p.generation,
                                                 b.checksum, b.expiry_unix_s, b.codec, b.flags},
                                   TableKey(b.ns, b.key)});
        bytes_written += RecordBytes(b.payload.size(), alignment_);
        continue;
      }
      ++io_errors;
      *b.status = absl::IsResourceExhausted(s)
                      ? absl::ResourceExhaustedError(
                            absl::StrCat("NVMe device full: ", s.message(),
                                         "; free space on its filesystem or lower --nvme-capacity"))
                      : absl::UnavailableError(absl::StrCat("NVMe write failed: ", s.message()));
    }
  }

  // Durable records, then their index entries.
  absl::Status s = items.empty() ? absl::OkStatus() : device_->Sync();
  if (!s.ok()) {
    ++io_errors;
    for (const CommitItem& item : items) {
      *item.block->status =
          absl::UnavailableError(absl::StrCat("NVMe fdatasync failed: ", s.message()));
    }
    items.clear();
  }
  // The rewrite of a block a reclaim job read back stands only if no write or remove of its
  // key came after the reclaim (in this group: before it); otherwise it would bring back older
  // bytes or a removed block. Decided before the duplicates below, so that a stale rewrite
  // never hides a real write of its key.
  if (!items.empty()) {
    absl::MutexLock lock(&mu_);
    for (CommitItem& item : items) {
      const bool pending = reinserting_.erase(item.table_key) > 0;
      if (item.block->reinsert_after_reclaim && !pending) item.fate = Fate::kStale;
    }
    items.erase(std::remove_if(items.begin(), items.end(),
                               [](const CommitItem& item) {
                                 if (item.fate != Fate::kStale) return false;
                                 *item.block->status = absl::AbortedError(
                                     "not rewritten: its key was written or removed since its "
                                     "region was reclaimed");
                                 return true;
                               }),
                items.end());
  }
  // A key written twice in one group: only its last copy is indexed. (Both used to be, in one
  // atomic batch, so the first was never visible either; now it leaves no stale locator.)
  {
    absl::flat_hash_set<uint64_t> later;
    for (auto it = items.rbegin(); it != items.rend(); ++it) {
      if (!later.insert(it->table_key).second) it->fate = Fate::kSuperseded;
    }
  }
  std::vector<QuotaVictim> victims;
  if (!items.empty()) PlanQuotas(items, victims);

  bool index_failed = false;
  if (!items.empty()) {
    nvme::NvmeIndex::Batch batch;
    {
      absl::MutexLock lock(&mu_);
      for (const CommitItem& item : items) {
        const PendingBlock& b = *item.block;
        if (item.fate == Fate::kSuperseded || item.fate == Fate::kRefused) continue;
        auto it = table_.find(item.table_key);
        const bool had = it != table_.end();
        const uint32_t old_region = had ? it->second.region : 0;
        const uint32_t old_offset = had ? uint32_t{it->second.offset_units} * alignment_ : 0;
        if (item.fate == Fate::kDropped) {
          // Replaced, then dropped as its namespace's oldest: the key leaves NVMe.
          if (had) {
            batch.DeleteBlock(b.ns, b.key,
                              BlockLocation{.region = old_region, .offset = old_offset});
          }
          continue;
        }
        batch.PutBlock(b.ns, b.key, item.loc);
        if (had && (old_region != item.loc.region || old_offset != item.loc.offset)) {
          batch.DeleteLocator(old_region, old_offset);
        }
      }
    }
    for (const QuotaVictim& v : victims) {
      batch.DeleteBlock(v.ns, v.key, BlockLocation{.region = v.region, .offset = v.offset});
    }
    if (batch.Count() > 0) s = index_->Commit(batch, /*sync=*/true);
    if (!s.ok()) {
      index_failed = true;
      for (const CommitItem& item : items) {
        *item.block->status =
            absl::UnavailableError(absl::StrCat("NVMe index write failed: ", s.message()));
      }
      items.clear();
    }
  }

  absl::MutexLock lock(&mu_);
  if (index_failed) {
    // The walks moved their cursors past records that stay: the next walks start over.
    for (const QuotaVictim& v : victims) NamespaceLocked(v.ns).walk = {};
    victims.clear();
  }
  EraseVictimsLocked(victims);
  for (const CommitItem& item : items) {
    const PendingBlock& b = *item.block;
    const BlockLocation& loc = item.loc;
    TierCounters* ns_counters = NamespaceCounters(b.ns);
    if (item.fate == Fate::kRefused) {
      *b.status = absl::ResourceExhaustedError(
          absl::StrCat("namespace ", b.ns,
                       "'s NVMe quota is held by pinned blocks; unpin some or raise the quota"));
      ++nvme_.quota_rejections;
      if (ns_counters != nullptr) ++ns_counters->quota_rejections;
      continue;
    }
    for (TierCounters* c : {&counters_, ns_counters}) {
      if (c == nullptr) continue;
      ++c->puts;
      c->bytes_in += loc.length;
    }
    *b.status = absl::OkStatus();
    if (item.fate == Fate::kSuperseded) continue;
    auto it = table_.find(item.table_key);
    if (it != table_.end()) EraseLocked(b.ns, item.table_key, it->second);
    if (item.fate == Fate::kDropped) {
      ++nvme_.quota_drops;
      if (ns_counters != nullptr) ++ns_counters->quota_evictions;
      continue;
    }
    Entry e;
    e.region = loc.region;
    e.offset_units = static_cast<uint16_t>(loc.offset / alignment_);
    e.record_units = static_cast<uint16_t>(RecordBytes(loc.length, alignment_) / alignment_);
    e.expiry_unix_s = b.expiry_unix_s;
    e.flags = b.flags;
    InsertLocked(b.ns, item.table_key, e);
  }
  nvme_.io_errors += io_errors;
  if (index_failed) ++nvme_.index_errors;
  nvme_.flash_bytes_written += bytes_written;
  ++nvme_.write_batches;
}

void NvmeTier::Impl::PlanQuotas(std::vector<CommitItem>& items, std::vector<QuotaVictim>& victims) {
  using Fate = CommitItem::Fate;
  struct Plan {
    uint64_t quota = 0;
    uint64_t live = 0;  // the namespace's record bytes once the group is committed
    std::vector<size_t> items;
    std::vector<uint64_t> replaced;  // record bytes of the copy each item replaces, or 0
  };
  absl::flat_hash_map<uint32_t, Plan> plans;
  {
    absl::MutexLock lock(&mu_);
    for (size_t k = 0; k < items.size(); ++k) {
      const CommitItem& item = items[k];
      if (item.fate != Fate::kIndex) continue;
      const uint32_t ns = item.block->ns;
      auto n = ns_.find(ns);
      if (n == ns_.end() || n->second.limits.quota_bytes == 0) continue;
      auto [p, inserted] = plans.try_emplace(ns);
      if (inserted) {
        p->second.quota = n->second.limits.quota_bytes;
        p->second.live = n->second.used_bytes;
      }
      auto t = table_.find(item.table_key);
      const uint64_t replaced =
          t == table_.end() ? 0 : uint64_t{t->second.record_units} * alignment_;
      p->second.items.push_back(k);
      p->second.replaced.push_back(replaced);
      // (Saturating: two keys whose table keys collide share one entry, maybe another
      // namespace's.)
      const uint64_t grown = p->second.live + RecordBytes(item.loc.length, alignment_);
      p->second.live = grown > replaced ? grown - replaced : 0;
    }
  }
  for (auto& [ns, p] : plans) {
    if (p.live <= p.quota) continue;
    // Every record in the table is older than this group's blocks: those go first, oldest
    // first, except the copies this group replaces (already counted out).
    absl::flat_hash_set<uint64_t> exclude;
    for (size_t k : p.items) exclude.insert(items[k].table_key);
    p.live -= OldestRecords(ns, p.live - p.quota, exclude, victims);
    // Then the group's own blocks, earliest first (writes queued together, e.g. two demotion
    // batches, can exceed the quota between them).
    for (size_t j = 0; j < p.items.size() && p.live > p.quota; ++j) {
      CommitItem& item = items[p.items[j]];
      if ((item.block->flags & nvme::kFlagPinned) != 0) continue;
      item.fate = Fate::kDropped;
      p.live -= RecordBytes(item.loc.length, alignment_);
    }
    // Only pinned records are left over the quota: refuse new pinned blocks, earliest first;
    // their keys keep the copies they had.
    for (size_t j = 0; j < p.items.size() && p.live > p.quota; ++j) {
      CommitItem& item = items[p.items[j]];
      if (item.fate != Fate::kIndex) continue;
      item.fate = Fate::kRefused;
      p.live = p.live + p.replaced[j] - RecordBytes(item.loc.length, alignment_);
    }
  }
}

uint64_t NvmeTier::Impl::OldestRecords(uint32_t ns, uint64_t bytes,
                                       const absl::flat_hash_set<uint64_t>& exclude,
                                       std::vector<QuotaVictim>& victims) {
  // (generation, region) of the regions holding the namespace's records, as a min-heap: most
  // walks need only the oldest one or two.
  std::vector<std::pair<uint64_t, uint32_t>> regions;
  Namespace::WalkCursor cursor;
  {
    absl::MutexLock lock(&mu_);
    auto it = ns_.find(ns);
    if (it == ns_.end()) return 0;
    cursor = it->second.walk;
    regions.reserve(it->second.region_bytes.size());
    for (const auto& [region, live] : it->second.region_bytes) {
      regions.emplace_back(log_->generation(region), region);
    }
  }
  std::make_heap(regions.begin(), regions.end(), std::greater<>());
  // Locators of the namespace read per index scan.
  constexpr size_t kChunk = 64;
  uint64_t found = 0;
  std::vector<std::pair<uint32_t, BlockKey>> chunk;
  while (found < bytes && !regions.empty()) {
    std::pop_heap(regions.begin(), regions.end(), std::greater<>());
    const auto [generation, region] = regions.back();
    regions.pop_back();
    uint32_t from = cursor.generation == generation && cursor.region == region ? cursor.offset : 0;
    // The first live record the walk had to leave (pinned, or replaced by the write being
    // committed): the next walk must look at it again.
    std::optional<uint32_t> left;
    bool more = true, failed = false;
    while (more && found < bytes) {
      chunk.clear();
      uint32_t next = from;
      // In offset order, which is write order within the region.
      const absl::Status scan = index_->ScanRegion(
          region, from, [&](uint32_t offset, uint32_t owner, const BlockKey& key) {
            next = offset + 1;
            if (owner == ns) chunk.emplace_back(offset, key);
            return chunk.size() < kChunk;
          });
      absl::MutexLock lock(&mu_);
      if (!scan.ok()) {
        // Its records stay (younger ones make room instead); a cost in hits, not correctness.
        ++nvme_.index_errors;
        failed = true;
        break;
      }
      more = chunk.size() == kChunk;
      for (const auto& [offset, key] : chunk) {
        if (found >= bytes) {
          next = offset;  // not looked at: the next walk starts with it
          break;
        }
        const uint64_t tk = TableKey(ns, key);
        auto it = table_.find(tk);
        if (it == table_.end() || it->second.region != region ||
            uint32_t{it->second.offset_units} * alignment_ != offset) {
          continue;  // a stale locator
        }
        if ((it->second.flags & nvme::kFlagPinned) != 0 || exclude.contains(tk)) {
          if (!left) left = offset;
          continue;
        }
        victims.push_back(QuotaVictim{ns, key, tk, region, offset});
        found += uint64_t{it->second.record_units} * alignment_;
      }
      from = next;
    }
    if (failed) continue;
    absl::MutexLock lock(&mu_);
    auto it = ns_.find(ns);
    if (it != ns_.end()) it->second.walk = {generation, region, left.value_or(from)};
  }
  return found;
}

void NvmeTier::Impl::EraseVictimsLocked(std::span<const QuotaVictim> victims) {
  for (const QuotaVictim& v : victims) {
    auto it = table_.find(v.table_key);
    if (it == table_.end() || it->second.region != v.region ||
        uint32_t{it->second.offset_units} * alignment_ != v.offset) {
      continue;  // gone meanwhile (a read found it damaged)
    }
    EraseLocked(v.ns, v.table_key, it->second);
    ++nvme_.quota_drops;
    if (TierCounters* c = NamespaceCounters(v.ns)) ++c->quota_evictions;
  }
}

absl::Status NvmeTier::Impl::SetNamespaceLimits(uint32_t ns, const NvmeNamespaceLimits& limits) {
  WriteLock wlock(this);
  // Acknowledged writes are in the table, and no region is reclaimed until this returns: the
  // commit queue fills only under write_mu_.
  Drain();
  uint64_t over = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = ns_.find(ns);
    if (it == ns_.end()) {
      return absl::NotFoundError(
          absl::StrCat("namespace ", ns, " is not registered with the NVMe tier"));
    }
    it->second.limits = limits;
    if (limits.quota_bytes != 0 && it->second.used_bytes > limits.quota_bytes) {
      over = it->second.used_bytes - limits.quota_bytes;
    }
  }
  if (over == 0) return absl::OkStatus();
  std::vector<QuotaVictim> victims;
  OldestRecords(ns, over, {}, victims);
  if (victims.empty()) return absl::OkStatus();  // what is over the quota is pinned
  nvme::NvmeIndex::Batch batch;
  for (const QuotaVictim& v : victims) {
    batch.DeleteBlock(v.ns, v.key, BlockLocation{.region = v.region, .offset = v.offset});
  }
  const absl::Status s = index_->Commit(batch, /*sync=*/true);
  absl::MutexLock lock(&mu_);
  if (!s.ok()) {
    ++nvme_.index_errors;
    NamespaceLocked(ns).walk = {};  // it moved past records that stay
    return absl::UnavailableError(
        absl::StrCat("NVMe index write failed while dropping namespace ", ns,
                     " down to its new quota (the quota holds; its next write drops down to it): ",
                     s.message()));
  }
  EraseVictimsLocked(victims);
  return absl::OkStatus();
}

std::vector<absl::Status> NvmeTier::Impl::Remove(uint32_t ns, std::span<const BlockKey> keys) {
  std::vector<absl::Status> statuses(keys.size(), absl::NotFoundError("not cached"));
  WriteLock wlock(this);
  Drain();  // a write of one of these keys acknowledged before the call is in the table
  nvme::NvmeIndex::Batch batch;
  std::vector<size_t> found;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      // A rewrite of the block queued by a reclaim job must not bring it back.
      reinserting_.erase(TableKey(ns, keys[i]));
      auto it = table_.find(TableKey(ns, keys[i]));
      if (it == table_.end()) continue;
      batch.DeleteBlock(ns, keys[i],
                        BlockLocation{.region = it->second.region,
                                      .offset = uint32_t{it->second.offset_units} * alignment_});
      found.push_back(i);
    }
  }
  if (found.empty()) return statuses;
  const absl::Status s = index_->Commit(batch, /*sync=*/true);
  absl::MutexLock lock(&mu_);
  if (!s.ok()) {
    ++nvme_.index_errors;
    for (size_t i : found) statuses[i] = absl::UnavailableError(s.message());
    return statuses;
  }
  for (size_t i : found) {
    const uint64_t tk = TableKey(ns, keys[i]);
    auto it = table_.find(tk);
    if (it != table_.end()) EraseLocked(ns, tk, it->second);
    statuses[i] = absl::OkStatus();
    for (TierCounters* c : {&counters_, NamespaceCounters(ns)}) {
      if (c != nullptr) ++c->removes;
    }
  }
  return statuses;
}

std::vector<absl::Status> NvmeTier::Impl::SetPinned(uint32_t ns, std::span<const BlockKey> keys,
                                                    bool pinned) {
  std::vector<absl::Status> statuses(keys.size(), absl::NotFoundError("not cached"));
  WriteLock wlock(this);
  Drain();
  nvme::NvmeIndex::Batch batch;
  std::vector<size_t> found;
  for (size_t i = 0; i < keys.size(); ++i) {
    {
      absl::MutexLock lock(&mu_);
      if (!table_.contains(TableKey(ns, keys[i]))) continue;
    }
    absl::StatusOr<BlockLocation> loc = index_->GetBlock(ns, keys[i]);
    if (!loc.ok()) {
      if (!absl::IsNotFound(loc.status())) statuses[i] = loc.status();
      continue;
    }
    loc->flags = pinned ? (loc->flags | nvme::kFlagPinned) : (loc->flags & ~nvme::kFlagPinned);
    batch.PutBlock(ns, keys[i], *loc);
    found.push_back(i);
  }
  if (found.empty()) return statuses;
  const absl::Status s = index_->Commit(batch, /*sync=*/true);
  absl::MutexLock lock(&mu_);
  if (!s.ok()) {
    ++nvme_.index_errors;
    for (size_t i : found) statuses[i] = absl::UnavailableError(s.message());
    return statuses;
  }
  for (size_t i : found) {
    const uint64_t tk = TableKey(ns, keys[i]);
    auto it = table_.find(tk);
    if (it != table_.end()) {
      Entry e = it->second;
      EraseLocked(ns, tk, e);  // re-inserted so the region's pinned bytes follow
      e.flags = pinned ? (e.flags | nvme::kFlagPinned) : (e.flags & ~nvme::kFlagPinned);
      InsertLocked(ns, tk, e);
    }
    statuses[i] = absl::OkStatus();
  }
  return statuses;
}

}  // namespace kvtier::tiers
