// NvmeTier::Impl, shared by the files that implement it: nvme_tier.cc (reads, lookups, stats),
// tier_write.cc (writes, region eviction, removes, pins) and tier_recovery.cc (format, startup
// checks, index rebuild).
//
// DRAM block table. One flat_hash_map entry per cached block, keyed by a 64-bit hash of
// (namespace, key), holding what lookups, eviction and reinsertion need without touching RocksDB:
// region, offset and size in alignment units, TTL deadline, hit count, flags. 8 + 16 bytes per
// slot plus one control byte, at 44-87% load: about 30-55 bytes per block (measured figure in
// docs/nvme.md). The full key and the rest of the location (length, generation, checksum,
// codec) stay in RocksDB and are fetched per read. Two blocks whose hashes collide (odds
// about n^2 / 2^65) share a slot; the read path still verifies the full key (index lookup by
// full key, checksum seeded with it), so a collision can lose a block, never serve a wrong one.
//
// Writes run through a pipeline so that the device keeps writing while earlier batches are
// made durable: the caller validates and checksums its batch (WriteAsync) -> the write thread
// places it in the active region (evicting a region when needed) and writes the records -> the
// commit thread fdatasyncs, writes the index (one synced batch), updates the table and runs
// `done`. A stage takes everything queued while it was busy, so consecutive batches share one
// pair of syncs; the write stage keeps one device stream open while calls keep coming
// (tier_write_stage.cc), so the device does not drain between them.
//
// Quotas. Each namespace keeps its live record bytes per region (a small map: one entry per
// region holding its records, not per block). A namespace's oldest records are found by
// walking those regions oldest generation first and reading each one's 'L' entries from the
// index in offset order (write order), a chunk at a time, from where the namespace's last
// walk stopped (a cursor per namespace), so that a namespace at its quota reads about as many
// locators as it drops. The walk runs only where no region can be reclaimed meanwhile: on the
// commit thread (the write thread drains the commit queue before it reclaims a region) or
// under write_mu_ with the pipeline drained.
//
// Locks. write_mu_ serializes placement with eviction, Remove, SetPinned and AddNamespace;
// pipe_mu_ guards the pipeline's queues; mu_ guards the table, the region log and the counters
// and is held only for short sections with no I/O. Order: write_mu_, pipe_mu_, mu_. Readers
// take only mu_, so writes in flight never block a read.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "kvtier/tiers/nvme_tier.h"
#include "tiers/src/huge_page_map.h"
#include "tiers/src/nvme/index.h"
#include "tiers/src/nvme/io_util.h"
#include "tiers/src/nvme/region_log.h"
#include "tiers/src/nvme/superblock.h"

namespace kvtier::tiers {

class NvmeTier::Impl {
  class WriteLock;

 public:
  Impl(const NvmeTierOptions& options, std::unique_ptr<NvmeDevice> device, const Clock* clock,
       std::unique_ptr<NvmeAdmissionPolicy> admission);
  ~Impl();

  // Startup: superblock, index, checks, table (tier_recovery.cc).
  absl::Status Open();

  absl::Status AddNamespace(uint32_t ns, uint64_t block_bytes);
  uint32_t alignment() const { return alignment_; }
  absl::Status RegisterMemory(std::span<std::byte> memory) {
    return device_->RegisterMemory(memory);
  }
  bool Contains(uint32_t ns, const BlockKey& key) const;
  uint64_t StoredLengthBound(uint32_t ns, const BlockKey& key) const;
  size_t LookupPrefix(uint32_t ns, std::span<const BlockKey> keys);
  void WriteAsync(uint32_t ns, std::span<const BlockKey> keys,
                  std::span<const std::span<const std::byte>> blocks,
                  const NvmeWriteOptions& options,
                  std::function<void(std::vector<absl::Status>)> done);
  std::vector<absl::StatusOr<NvmeReadResult>> ReadBatch(uint32_t ns, std::span<const BlockKey> keys,
                                                        std::span<const std::span<std::byte>> dsts);
  std::vector<absl::Status> Remove(uint32_t ns, std::span<const BlockKey> keys);
  std::vector<absl::Status> SetPinned(uint32_t ns, std::span<const BlockKey> keys, bool pinned);
  absl::Status SetNamespaceLimits(uint32_t ns, const NvmeNamespaceLimits& limits);
  NvmeNamespaceLimits Limits(uint32_t ns) const;
  NvmeTierSnapshot Snapshot() const;
  uint64_t LogMark() const;

 private:
  // One cached block in the DRAM table (see the file comment).
  struct Entry {
    uint32_t region = 0;
    uint16_t offset_units = 0;  // record offset within the region / alignment
    uint16_t record_units = 0;  // record size / alignment
    uint32_t expiry_unix_s = 0;
    uint16_t hits = 0;
    uint8_t flags = 0;
    uint8_t reserved = 0;
  };
  static_assert(sizeof(Entry) == 16);

  struct Namespace {
    uint64_t block_bytes = 0;  // 0: seen only in recovered records, not registered yet
    uint64_t blocks = 0;
    uint64_t used_bytes = 0;  // record bytes on the device
    // Live record bytes per region holding any (a region's bytes fit 32 bits: <= 128 MiB).
    absl::flat_hash_map<uint32_t, uint32_t> region_bytes;
    // Where the last quota walk stopped: the region (at that generation) and the offset its
    // next walk starts from. Every record before it in the region is gone or is not the
    // namespace's (a walk stops at the first live record it leaves, pinned or not; records
    // are only ever appended after it). Reset when an index write fails.
    struct WalkCursor {
      uint64_t generation = 0;  // 0: none
      uint32_t region = 0;
      uint32_t offset = 0;
    } walk;
    NvmeNamespaceLimits limits;  // not persisted
    TierCounters counters;
  };

  // A block on its way to the device (a Write's or a reinsertion's).
  struct PendingBlock {
    uint32_t ns = 0;
    BlockKey key;
    std::span<const std::byte> payload;
    uint8_t codec = 0;
    uint8_t flags = 0;
    uint32_t expiry_unix_s = 0;
    absl::Status* status = nullptr;  // where the outcome goes (in its WriteCall)
    uint64_t checksum = 0;           // record.h's PayloadChecksum, computed by the caller
    // A block of a region the commit thread reclaimed, written again: indexed only if no write
    // or remove of its key came after that reclaim (reinserting_ still holds the key), so that
    // it never brings back older bytes or a removed block.
    bool reinsert_after_reclaim = false;
  };

  // One WriteAsync call, or one region's reinsertions: the blocks, their outcomes, and what
  // still has to happen before `done` may run.
  struct WriteCall {
    std::vector<PendingBlock> blocks;
    std::vector<absl::Status> statuses;
    // Commit jobs not finished, plus one held by the writer until it has queued them all.
    size_t outstanding = 1;  // guarded by pipe_mu_
    std::function<void(std::vector<absl::Status>)> done;
    uint64_t keep_from = 0;  // NvmeWriteOptions::keep_from
  };

  // A block placed in the active region.
  struct Placed {
    const PendingBlock* block;
    WriteCall* call;
    uint32_t region;
    uint32_t offset;
    uint64_t generation;
  };

  // A region a reclaim job frees, and the generation recorded for it.
  struct ReclaimTarget {
    uint32_t region = 0;
    uint64_t generation = 0;
  };

  // Records written to the device, for the commit thread: fdatasync, index, table. Or, with
  // `reclaim` set (and nothing placed), regions for the commit thread to reclaim in its turn.
  struct CommitJob {
    std::vector<std::shared_ptr<WriteCall>> calls;  // each holds one count for this job
    std::vector<Placed> placed;
    std::vector<absl::Status> io_status;
    std::vector<ReclaimTarget> reclaim;
  };

  // The calls the write stage (or a reinsertion) works on, and how far their blocks are placed.
  struct PlaceCursor {
    std::vector<std::shared_ptr<WriteCall>> calls;
    size_t call = 0;   // the first call with blocks not yet placed (calls.size(): none)
    size_t block = 0;  // its first block not yet placed
    // The active region is full and the next must be evicted (or could not be opened:
    // open_error), which waits for the commits in flight.
    bool blocked = false;
    absl::Status open_error;
    std::vector<std::shared_ptr<WriteCall>> deferred;  // last holds, for ReleaseCall
  };
  struct WriteSegment;  // tier_write_stage.cc

  // A block at the commit stage: written and synced, about to be indexed.
  struct CommitItem {
    enum class Fate : uint8_t {
      kIndex,       // indexed (the normal case)
      kSuperseded,  // a later item of the same group writes the same key: never indexed
      kDropped,     // its namespace's quota drops it at once (the oldest of what is left)
      kRefused,     // the quota cannot hold it: only pinned records stand in the way
      kStale,       // a reclaimed block's rewrite after a write or remove of its key: never
                    // indexed (PendingBlock::reinsert_after_reclaim)
    };
    const PendingBlock* block;
    nvme::BlockLocation loc;
    uint64_t table_key = 0;
    Fate fate = Fate::kIndex;
  };

  // A live record dropped to keep its namespace within its quota.
  struct QuotaVictim {
    uint32_t ns = 0;
    BlockKey key;
    uint64_t table_key = 0;
    uint32_t region = 0;
    uint32_t offset = 0;
  };

  // Blocks of an evicted region worth keeping, read back before the region is reused.
  struct Reinsert {
    uint32_t ns = 0;
    BlockKey key;
    nvme::BlockLocation loc;
    nvme::AlignedBytes data;
  };

  static uint64_t TableKey(uint32_t ns, const BlockKey& key);
  uint64_t RegionOffset(uint32_t region) const {
    return sb_.data_offset + uint64_t{region} * sb_.region_bytes;
  }
  uint32_t NowUnixSeconds() const;
  bool Expired(const Entry& e, uint32_t now_s) const {
    return e.expiry_unix_s != 0 && now_s >= e.expiry_unix_s;
  }
  Namespace& NamespaceLocked(uint32_t ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ns_[ns]; }
  // The namespace's counters, or null for a namespace the tier does not know (so that lookups
  // of made-up namespaces do not grow the map).
  TierCounters* NamespaceCounters(uint32_t ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = ns_.find(ns);
    return it == ns_.end() ? nullptr : &it->second.counters;
  }
  // Removes a table entry and its accounting. `e` by value: callers pass the entry being
  // erased.
  void EraseLocked(uint32_t ns, uint64_t table_key, Entry e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InsertLocked(uint32_t ns, uint64_t table_key, const Entry& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- write path (tier_write.cc) ---
  // The pipeline's stages after the caller's (validation, checksums): placement and record
  // writes (under write_mu_), then fdatasync, index and table (commit), one thread each. Each
  // stage takes what queued up while it was busy, so a slow stage works on larger groups
  // instead of falling behind.
  void WriteLoop();
  void CommitLoop();
  // Commits a run of write jobs (not reclaim jobs) as one group.
  void CommitGroup(std::span<CommitJob> jobs);
  // Refuses the blocks of one write call that its namespace's quota cannot hold (see
  // NvmeTier::Write), removing them from `blocks` and counting them.
  void RefuseOverQuota(uint32_t ns, uint64_t quota, std::vector<PendingBlock>& blocks);
  // Places and writes the cursor's blocks, opening (and evicting) regions as needed; queues
  // commit jobs. With `take_queued` (the write stage), calls queued meanwhile join the same
  // device submission (tier_write_stage.cc). Drops the writer's hold on each call once it is
  // wholly placed; holds that were a call's last go to cur.deferred, for the caller to drop
  // (ReleaseCall) outside write_mu_.
  void WriteBlocks(PlaceCursor& cur, bool take_queued) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Places the cursor's blocks in the active region, opening quiet regions as needed, until
  // every block is placed or the next region would have to be evicted (cur.blocked).
  void PlaceBlocks(PlaceCursor& cur, std::vector<Placed>& placed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // The headers, ops and commit job of placed records; takes the job's holds on its calls.
  std::unique_ptr<WriteSegment> BuildSegment(PlaceCursor& cur, std::vector<Placed> placed);
  // Writes placed records, and (with take_queued) the records of calls queued meanwhile, as one
  // device stream; each group goes to the commit thread when written. Returns when nothing is
  // in flight. `evictions_left` is reset for each new group of calls.
  void StreamRecords(PlaceCursor& cur, std::vector<Placed> placed, bool take_queued,
                     int& evictions_left) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Drops the writer's hold on the calls the cursor has passed (see WriteBlocks) and takes them
  // out of it.
  void DropWriterHolds(PlaceCursor& cur);
  // Drops one hold on `call` (the writer's, or a finished job's); runs `done` on the last one.
  void ReleaseCall(const std::shared_ptr<WriteCall>& call);
  // Waits until every queued commit job is committed.
  void Drain();
  // Waits until the whole pipeline is idle (for shutdown).
  void DrainAll();
  // Reclaims the next region and makes it the active one, reinserting its hot blocks; with it,
  // up to reclaim_batch_ - 1 more of the oldest are reclaimed and left clean (none written at
  // or after `keep_from`, see NvmeWriteOptions). Waits for every commit in flight first.
  // REQUIRES: no record placed and not yet written.
  absl::Status OpenNextRegion(int& evictions_left, uint64_t keep_from)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Opens the next region without waiting for the commits in flight, if it is quiet (holds no
  // live or pending record: a free region, one emptied by removals, or one reclaimed ahead);
  // false, opening nothing, if it is not. Records placed and not yet written may be
  // outstanding.
  absl::StatusOr<bool> OpenQuietRegion() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // OpenNextRegion's work once the regions are chosen: deletes their index entries and records
  // their new generations (one batch, synced unless every region is clean), opens the first,
  // leaves the others clean, and reinserts the hot blocks CollectRegion picked.
  absl::Status ReclaimRegions(std::span<const uint32_t> regions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Queues a reclaim of the next reclaim_batch_ oldest regions on the commit thread when few
  // quiet regions are left and none is queued, so that the writer finds clean regions when it
  // needs them instead of waiting (not for calls with a keep_from mark, which reclaim only
  // through OpenNextRegion's checks).
  void ReclaimAhead(uint64_t keep_from) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Whether a reclaim job is queued or running.
  bool ReclaimPending();
  // A queued reclaim, on the commit thread: as ReclaimRegions, but every region is left clean
  // and the blocks to keep are queued for the writer (QueueReinserts).
  void RunReclaimJob(std::span<const ReclaimTarget> targets);
  // A write call of blocks read back from a reclaimed region; its payloads point into
  // `reinserts`, which must outlive it. `after_reclaim`: PendingBlock::reinsert_after_reclaim.
  static std::shared_ptr<WriteCall> NewReinsertCall(std::span<const Reinsert> reinserts,
                                                    bool after_reclaim);
  // Queues the blocks a reclaim job read back as one write call, ahead of the other calls.
  void QueueReinserts(std::vector<Reinsert> reinserts);
  // Whether OpenNextRegion would now reclaim live records of a region whose generation is at
  // least `mark` (NvmeWriteOptions::keep_from; 0: never).
  bool ReclaimsFrom(uint64_t mark) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Decides the fate of `items` whose namespaces have quotas (see NvmeTier::Write), and which
  // of their namespaces' recorded blocks go to make room. Blocks on index reads.
  // REQUIRES: on the commit thread (no region is reclaimed meanwhile).
  void PlanQuotas(std::vector<CommitItem>& items, std::vector<QuotaVictim>& victims);
  // Appends to `victims` the namespace's live unpinned records, least recently written first,
  // until their record bytes reach `bytes` or none is left; table keys in `exclude` are
  // skipped. Returns the bytes found; moves the namespace's walk cursor. Blocks on index reads
  // (scans of up to 64 of the namespace's locators, from the cursor on). REQUIRES: no region
  // is reclaimed meanwhile (see the file comment).
  uint64_t OldestRecords(uint32_t ns, uint64_t bytes, const absl::flat_hash_set<uint64_t>& exclude,
                         std::vector<QuotaVictim>& victims);
  // Removes dropped records from the table (those still where the victim says), counting them.
  void EraseVictimsLocked(std::span<const QuotaVictim> victims) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads back the blocks of `region` chosen for reinsertion (appended to `reinserts`) and
  // fills `batch` with the deletions of all its index entries; `members` gets the (ns, table
  // key) pairs to erase. REQUIRES: no commit in flight can touch the region (the writer, under
  // write_mu_ with the commit queue drained; or the commit thread, in its turn).
  void CollectRegion(uint32_t region, nvme::NvmeIndex::Batch& batch,
                     std::vector<std::pair<uint32_t, uint64_t>>& members,
                     std::vector<Reinsert>& reinserts);

  // --- startup (tier_recovery.cc) ---
  absl::Status CheckSuperblock();
  absl::Status Format();
  nvme::IndexIdentity Identity() const;
  // Empties the index and, if enabled, refills it from the device's records.
  absl::Status RebuildIndex(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status ScanDevice(nvme::NvmeIndex::Batch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status LoadTable() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status VerifyRegions() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Reads the first alignment unit of every region; generation 0 where no valid header.
  absl::StatusOr<std::vector<uint64_t>> FirstHeaderGenerations();

  const NvmeTierOptions options_;
  std::unique_ptr<NvmeDevice> device_;
  const Clock* const clock_;
  std::unique_ptr<NvmeAdmissionPolicy> admission_;
  const uint32_t alignment_;
  nvme::Superblock sb_;
  std::unique_ptr<nvme::NvmeIndex> index_;

  mutable absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  uint64_t next_generation_ ABSL_GUARDED_BY(write_mu_) = 1;
  // Threads other than the write stage waiting for write_mu_ (WriteLock): the stage's stream
  // stops taking new calls while there are any.
  mutable std::atomic<int> write_mu_wanted_{0};
  // NvmeTierOptions::reclaim_batch_regions, resolved at startup.
  uint32_t reclaim_batch_ = 1;

  // The pipeline's queues. WriteAsync waits while kMaxQueuedCalls calls are waiting for the
  // write stage, so that a fast producer cannot queue unbounded work.
  static constexpr size_t kMaxQueuedCalls = 8;
  absl::Mutex pipe_mu_ ABSL_ACQUIRED_AFTER(write_mu_);
  std::deque<std::shared_ptr<WriteCall>> write_queue_ ABSL_GUARDED_BY(pipe_mu_);
  std::deque<CommitJob> commit_queue_ ABSL_GUARDED_BY(pipe_mu_);
  bool writing_ ABSL_GUARDED_BY(pipe_mu_) = false;
  bool reclaim_pending_ ABSL_GUARDED_BY(pipe_mu_) = false;  // see ReclaimAhead
  bool committing_ ABSL_GUARDED_BY(pipe_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(pipe_mu_) = false;
  std::thread writer_;
  std::thread committer_;
  // The admission policy is not thread-safe; WriteAsync callers take turns.
  absl::Mutex admit_mu_;

  mutable absl::Mutex mu_;
  internal::HugePageMap<uint64_t, Entry> table_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, Namespace> ns_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<nvme::RegionLog> log_ ABSL_GUARDED_BY(mu_);
  // Table keys of blocks a reclaim job read back and queued for rewriting: a write or remove
  // of the key takes it out, and the rewrite is indexed only if it is still here.
  absl::flat_hash_set<uint64_t> reinserting_ ABSL_GUARDED_BY(mu_);
  TierCounters counters_ ABSL_GUARDED_BY(mu_);
  NvmeCounters nvme_ ABSL_GUARDED_BY(mu_);
  NvmeRecoveryInfo recovery_ ABSL_GUARDED_BY(mu_);
};

// write_mu_ taken by a thread other than the write stage (Remove, SetPinned, ...): announced
// first, so that a stream of writes ends at its next group and lets it in.
class ABSL_SCOPED_LOCKABLE NvmeTier::Impl::WriteLock {
 public:
  explicit WriteLock(const Impl* impl) ABSL_EXCLUSIVE_LOCK_FUNCTION(impl->write_mu_) : impl_(impl) {
    impl_->write_mu_wanted_.fetch_add(1, std::memory_order_relaxed);
    impl_->write_mu_.Lock();
    impl_->write_mu_wanted_.fetch_sub(1, std::memory_order_relaxed);
  }
  ~WriteLock() ABSL_UNLOCK_FUNCTION() { impl_->write_mu_.Unlock(); }
  WriteLock(const WriteLock&) = delete;
  WriteLock& operator=(const WriteLock&) = delete;

 private:
  const Impl* const impl_;
};

}  // namespace kvtier::tiers
