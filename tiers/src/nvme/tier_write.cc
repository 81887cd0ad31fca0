// NvmeTier writes: appending records to the active region, reclaiming regions (oldest first,
// hot and pinned blocks reinserted), removes, pins and namespaces.
//
// Crash ordering, step by step:
//   write:   records -> device (write stage), fdatasync -> index entries ('B' and 'L'),
//            synced -> visible (commit stage);
//   reclaim: index entries of the region deleted + its new generation recorded, synced ->
//            only then is the region written again.
// A crash between the steps leaves either records nobody points to (space, reclaimed with the
// region) or index entries for a region whose generation has moved on (dropped at startup, and
// failing the seeded checksum if read). Neither can serve wrong bytes.
#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
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
  absl::MutexLock wlock(&write_mu_);
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
  {
    absl::MutexLock lock(&mu_);
    auto it = ns_.find(ns);
    if (it != ns_.end()) block_bytes = it->second.block_bytes;
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

void NvmeTier::Impl::WriteLoop() {
  while (true) {
    std::vector<std::shared_ptr<WriteCall>> calls;
    {
      absl::MutexLock lock(&pipe_mu_);
      pipe_mu_.Await(absl::Condition(
          +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->pipe_mu_) {
            return self->stopping_ || !self->write_queue_.empty();
          },
          this));
      if (write_queue_.empty()) return;
      calls.assign(std::make_move_iterator(write_queue_.begin()),
                   std::make_move_iterator(write_queue_.end()));
      write_queue_.clear();
      writing_ = true;
    }
    {
      absl::MutexLock wlock(&write_mu_);
      int evictions_left = static_cast<int>(sb_.region_count) + 1;
      WriteBlocks(calls, evictions_left);
    }
    for (const auto& call : calls) ReleaseCall(call);
    absl::MutexLock lock(&pipe_mu_);
    writing_ = false;
  }
}

void NvmeTier::Impl::WriteBlocks(std::span<const std::shared_ptr<WriteCall>> calls,
                                 int& evictions_left) {
  std::vector<Placed> placed;
  for (size_t c = 0; c < calls.size(); ++c) {
    const std::vector<PendingBlock>& blocks = calls[c]->blocks;
    size_t i = 0;
    while (i < blocks.size()) {
      const PendingBlock& b = blocks[i];
      const uint64_t record_bytes = RecordBytes(b.payload.size(), alignment_);
      if (record_bytes > sb_.region_bytes) {
        *b.status = absl::InvalidArgumentError("block does not fit an NVMe region");
        ++i;
        continue;
      }
      std::optional<uint32_t> offset;
      uint32_t region = 0;
      uint64_t generation = 0;
      {
        absl::MutexLock lock(&mu_);
        offset = log_->Allocate(record_bytes);
        if (offset) {
          region = *log_->active();
          generation = log_->generation(region);
        }
      }
      if (offset) {
        placed.push_back(Placed{&b, calls[c].get(), region, *offset, generation});
        ++i;
        continue;
      }
      // The active region is full: write what it got, then move to the next region.
      if (!placed.empty()) {
        WriteRecords(calls, std::move(placed));
        placed.clear();
        continue;
      }
      const absl::Status s = OpenNextRegion(evictions_left);
      if (!s.ok()) {
        for (; c < calls.size(); ++c, i = 0) {
          for (; i < calls[c]->blocks.size(); ++i) *calls[c]->blocks[i].status = s;
        }
        return;
      }
    }
  }
  if (!placed.empty()) WriteRecords(calls, std::move(placed));
}

void NvmeTier::Impl::WriteRecords(std::span<const std::shared_ptr<WriteCall>> calls,
                                  std::vector<Placed> placed) {
  const size_t n = placed.size();
  AlignedBytes headers = nvme::AllocateAligned(n * alignment_, alignment_);
  std::vector<AlignedBytes> staging(n);
  std::vector<std::array<IoSegment, 2>> segments(n);
  std::vector<IoOp> ops(n);
  for (size_t k = 0; k < n; ++k) {
    const Placed& p = placed[k];
    const PendingBlock& b = *p.block;
    const uint64_t len = b.payload.size();
    std::byte* header = headers.get() + k * alignment_;
    nvme::EncodeRecordHeader(nvme::RecordHeader{b.ns, b.key, len, p.generation, b.checksum,
                                                b.expiry_unix_s, b.codec, b.flags},
                             {header, alignment_});
    segments[k][0] = {header, alignment_};
    // Aligned payloads (the DRAM arena's slots are) go to the device as they are; others are
    // copied into a padded buffer, since O_DIRECT takes whole aligned units.
    if ((reinterpret_cast<uintptr_t>(b.payload.data()) & (alignment_ - 1)) == 0 &&
        len % alignment_ == 0) {
      segments[k][1] = {const_cast<std::byte*>(b.payload.data()), len};
    } else {
      staging[k] = nvme::AllocateAligned(len, alignment_);
      std::memcpy(staging[k].get(), b.payload.data(), len);
      segments[k][1] = {staging[k].get(), RoundUp(len, alignment_)};
    }
    ops[k].type = IoOp::Type::kWrite;
    ops[k].offset = RegionOffset(p.region) + p.offset;
    ops[k].segments = segments[k];
  }
  (void)device_->Submit(ops);
  CommitJob job{{}, std::move(placed), {}};
  job.io_status.reserve(n);
  for (IoOp& op : ops) job.io_status.push_back(std::move(op.status));
  absl::MutexLock lock(&pipe_mu_);
  for (const auto& call : calls) {
    const bool involved = std::any_of(job.placed.begin(), job.placed.end(),
                                      [&](const Placed& p) { return p.call == call.get(); });
    if (!involved) continue;
    ++call->outstanding;
    job.calls.push_back(call);
  }
  commit_queue_.push_back(std::move(job));
}

void NvmeTier::Impl::ReleaseCall(const std::shared_ptr<WriteCall>& call) {
  {
    absl::MutexLock lock(&pipe_mu_);
    if (--call->outstanding > 0) return;
  }
  if (call->done) call->done(std::move(call->statuses));
}

void NvmeTier::Impl::Drain() {
  absl::MutexLock lock(&pipe_mu_);
  pipe_mu_.Await(absl::Condition(
      +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->pipe_mu_) {
        return self->commit_queue_.empty() && !self->committing_;
      },
      this));
}

void NvmeTier::Impl::DrainAll() {
  absl::MutexLock lock(&pipe_mu_);
  pipe_mu_.Await(absl::Condition(
      +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->pipe_mu_) {
        return self->write_queue_.empty() && self->commit_queue_.empty() && !self->writing_ &&
               !self->committing_;
      },
      this));
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
    CommitGroup(jobs);
    for (CommitJob& job : jobs) {
      for (const auto& call : job.calls) ReleaseCall(call);
    }
    absl::MutexLock lock(&pipe_mu_);
    committing_ = false;
  }
}

void NvmeTier::Impl::CommitGroup(std::vector<CommitJob>& jobs) {
  struct Item {
    const PendingBlock* block;
    BlockLocation loc;
  };
  std::vector<Item> items;
  uint64_t io_errors = 0, bytes_written = 0;
  for (CommitJob& job : jobs) {
    for (size_t k = 0; k < job.placed.size(); ++k) {
      const Placed& p = job.placed[k];
      const PendingBlock& b = *p.block;
      const absl::Status& s = job.io_status[k];
      if (s.ok()) {
        items.push_back({&b, BlockLocation{p.region, p.offset, b.payload.size(), p.generation,
                                           b.checksum, b.expiry_unix_s, b.codec, b.flags}});
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
    for (const Item& item : items) {
      *item.block->status =
          absl::UnavailableError(absl::StrCat("NVMe fdatasync failed: ", s.message()));
    }
    items.clear();
  }
  bool index_failed = false;
  if (!items.empty()) {
    nvme::NvmeIndex::Batch batch;
    {
      absl::MutexLock lock(&mu_);
      for (const Item& item : items) {
        const PendingBlock& b = *item.block;
        batch.PutBlock(b.ns, b.key, item.loc);
        auto it = table_.find(TableKey(b.ns, b.key));
        if (it != table_.end()) {
          const uint32_t old_offset = uint32_t{it->second.offset_units} * alignment_;
          if (it->second.region != item.loc.region || old_offset != item.loc.offset) {
            batch.DeleteLocator(it->second.region, old_offset);
          }
        }
      }
    }
    s = index_->Commit(batch, /*sync=*/true);
    if (!s.ok()) {
      index_failed = true;
      for (const Item& item : items) {
        *item.block->status =
            absl::UnavailableError(absl::StrCat("NVMe index write failed: ", s.message()));
      }
      items.clear();
    }
  }

  absl::MutexLock lock(&mu_);
  for (const Item& item : items) {
    const PendingBlock& b = *item.block;
    const BlockLocation& loc = item.loc;
    const uint64_t tk = TableKey(b.ns, b.key);
    auto it = table_.find(tk);
    if (it != table_.end()) EraseLocked(b.ns, tk, it->second);
    Entry e;
    e.region = loc.region;
    e.offset_units = static_cast<uint16_t>(loc.offset / alignment_);
    e.record_units = static_cast<uint16_t>(RecordBytes(loc.length, alignment_) / alignment_);
    e.expiry_unix_s = b.expiry_unix_s;
    e.flags = b.flags;
    InsertLocked(b.ns, tk, e);
    for (TierCounters* c : {&counters_, NamespaceCounters(b.ns)}) {
      if (c == nullptr) continue;
      ++c->puts;
      c->bytes_in += loc.length;
    }
    *b.status = absl::OkStatus();
  }
  nvme_.io_errors += io_errors;
  if (index_failed) ++nvme_.index_errors;
  nvme_.flash_bytes_written += bytes_written;
  ++nvme_.write_batches;
}

absl::Status NvmeTier::Impl::OpenNextRegion(int& evictions_left) {
  if (evictions_left-- <= 0) {
    return absl::ResourceExhaustedError(
        "NVMe tier full: every region holds pinned blocks; unpin blocks or raise "
        "--nvme-capacity");
  }
  // Blocks still being committed must be in the index before a region's entries are listed.
  Drain();
  std::optional<uint32_t> target;
  {
    absl::MutexLock lock(&mu_);
    target = log_->NextToOpen();
  }
  if (!target) {
    return absl::ResourceExhaustedError(
        "NVMe tier full: every region is mostly pinned blocks; unpin blocks or raise "
        "--nvme-capacity");
  }
  const uint32_t region = *target;

  nvme::NvmeIndex::Batch batch;
  std::vector<std::pair<uint32_t, uint64_t>> members;
  std::vector<Reinsert> reinserts;
  CollectRegion(region, batch, members, reinserts);
  const uint64_t generation = next_generation_;
  batch.PutRegion(region, generation);
  batch.PutNextGeneration(generation + 1);
  // Synced before a byte of the region is overwritten: afterwards, no index entry points into
  // the region's previous generation.
  const absl::Status s = index_->Commit(batch, /*sync=*/true);
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    ++nvme_.index_errors;
    return absl::UnavailableError(
        absl::StrCat("NVMe index write failed while reclaiming a region: ", s.message()));
  }
  next_generation_ = generation + 1;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [ns, tk] : members) {
      auto it = table_.find(tk);
      if (it != table_.end() && it->second.region == region) EraseLocked(ns, tk, it->second);
    }
    log_->Open(region, generation);
    if (!members.empty()) ++nvme_.region_evictions;
  }

  auto call = std::make_shared<WriteCall>();
  call->statuses.resize(reinserts.size());
  call->blocks.reserve(reinserts.size());
  for (size_t k = 0; k < reinserts.size(); ++k) {
    const Reinsert& r = reinserts[k];
    call->blocks.push_back(PendingBlock{r.ns,
                                        r.key,
                                        {r.data.get(), r.loc.length},
                                        r.loc.codec,
                                        r.loc.flags,
                                        r.loc.expiry_unix_s,
                                        &call->statuses[k],
                                        r.loc.checksum});
  }
  // They fit the fresh region (CollectRegion keeps them within it), so this opens no region.
  const std::shared_ptr<WriteCall> calls[] = {call};
  WriteBlocks(calls, evictions_left);
  ReleaseCall(call);
  Drain();  // `reinserts` owns their bytes until they are committed
  uint64_t reinserted = 0;
  for (const absl::Status& st : call->statuses) reinserted += st.ok() ? 1 : 0;
  absl::MutexLock lock(&mu_);
  nvme_.reinserted_blocks += reinserted;
  nvme_.evicted_blocks += members.size() - reinserted;
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
  // Pinned blocks come back whole; hot ones within the fraction and what pinned ones leave.
  uint64_t budget = std::min<uint64_t>(
      static_cast<uint64_t>(options_.max_reinsert_fraction * static_cast<double>(sb_.region_bytes)),
      sb_.region_bytes - std::min(pinned_bytes, sb_.region_bytes));
  for (const Live& m : live) {
    batch.DeleteBlock(m.at.ns, m.at.key, BlockLocation{.region = region, .offset = m.at.offset});
    members.emplace_back(m.at.ns, m.tk);
    if (Expired(m.entry, now_s)) continue;
    const bool pinned = (m.entry.flags & nvme::kFlagPinned) != 0;
    const uint64_t record_bytes = uint64_t{m.entry.record_units} * alignment_;
    if (!pinned && (record_bytes > budget || (!options_.reinsertion && m.entry.hits == 0))) {
      continue;
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
    reinserts.push_back(
        Reinsert{m.at.ns, m.at.key, *loc, nvme::AllocateAligned(loc->length, alignment_)});
  }
  if (reinserts.empty()) return;

  // Read them back before the region is given up; a record that fails its check is dropped.
  std::vector<IoSegment> segments(reinserts.size());
  std::vector<IoOp> ops(reinserts.size());
  for (size_t k = 0; k < reinserts.size(); ++k) {
    const Reinsert& r = reinserts[k];
    segments[k] = {r.data.get(), RoundUp(r.loc.length, alignment_)};
    ops[k].type = IoOp::Type::kRead;
    ops[k].offset = RegionOffset(region) + r.loc.offset + alignment_;
    ops[k].segments = {&segments[k], 1};
  }
  (void)device_->Submit(ops);
  uint64_t failures = 0, io_errors = 0, bytes_read = 0;
  std::vector<Reinsert> kept;
  for (size_t k = 0; k < reinserts.size(); ++k) {
    Reinsert& r = reinserts[k];
    if (!ops[k].status.ok()) {
      ++io_errors;
      continue;
    }
    bytes_read += segments[k].length;
    if (nvme::PayloadChecksum(r.ns, r.key, {r.data.get(), r.loc.length}) != r.loc.checksum) {
      ++failures;
      continue;
    }
    kept.push_back(std::move(r));
  }
  reinserts = std::move(kept);
  absl::MutexLock lock(&mu_);
  nvme_.checksum_failures += failures;
  nvme_.io_errors += io_errors;
  nvme_.flash_bytes_read += bytes_read;
}

std::vector<absl::Status> NvmeTier::Impl::Remove(uint32_t ns, std::span<const BlockKey> keys) {
  std::vector<absl::Status> statuses(keys.size(), absl::NotFoundError("not cached"));
  absl::MutexLock wlock(&write_mu_);
  Drain();  // a write of one of these keys acknowledged before the call is in the table
  nvme::NvmeIndex::Batch batch;
  std::vector<size_t> found;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
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
  absl::MutexLock wlock(&write_mu_);
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
