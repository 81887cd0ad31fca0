// NvmeTier: the durable warm tier. Blocks live in log-structured regions on an NvmeDevice (a
// file or raw block device, io_uring + O_DIRECT), and a RocksDB index says where each block is,
// so that the tier survives a restart or a kill -9 and serves its blocks again.
//
// Layout on the device: a superblock (format version, capacity, region size, alignment, an
// instance id shared with the index), then equal regions of 16-64 MiB filled append-only with
// records (header unit + payload; docs/nvme.md). When the log needs room, the oldest region is
// evicted whole; the blocks the reinsertion policy calls hot (and pinned blocks) are written
// again at the head of the log, higher-priority namespaces' first (SetNamespaceLimits).
//
// Per-namespace quotas (SetNamespaceLimits): once a write commits, a namespace's live records
// take no more device bytes than its quota (unless its pinned records alone do); the write
// drops the namespace's own oldest records (least recently written) to make room, never
// another namespace's.
//
// Promise, as for every trusted cache: a block may be lost, wrong bytes are never returned.
// Every record carries its key, namespace, lengths, its region's generation, a header checksum
// and a payload checksum seeded with (namespace, key, generation, length); a read whose bytes
// fail the check is a miss, counted in checksum_failures, never served.
//
// Crash ordering. A Write returns OK for a block only after (1) its record (payload and header)
// is durable on the device (fdatasync) and then (2) its index entry is durable (RocksDB WAL,
// synced). Before a
// region is overwritten, the index entries of its blocks are deleted and its new generation is
// recorded, synced. The generation in both places catches whatever slips through (a damaged
// index, a lost log tail). A kill -9 loses at most the blocks of the batch in flight.
//
// Startup (Create): reads the superblock (formats a new device; refuses one that holds foreign
// data or another layout), opens the index (an index RocksDB cannot open is discarded, with a
// log line, and rebuilt from a scan of the device's records when rebuild_from_device is set),
// checks it against the device (instance id, layout, and each region's generation: the first
// record header of every region is read, one alignment unit per region) and loads a
// compact DRAM table of the blocks: 27-55 bytes per block with the table's load (52 measured
// at a million blocks; Snapshot().dram_index_bytes);
// everything else stays in RocksDB on disk.
//
// Thread-safe: every method may be called from any thread. Reads run concurrently with each
// other and with writes; writes go through the tier's own pipeline threads (WriteAsync);
// removes and pin changes are serialized with the placement of writes.
// Methods that touch the device or the index block on that I/O (stated per method); call them
// off a latency-critical thread. Contains, LookupPrefix and Snapshot never do I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "kvtier/common/block_key.h"
#include "kvtier/common/clock.h"
#include "kvtier/tiers/nvme_admission.h"
#include "kvtier/tiers/nvme_device.h"
#include "kvtier/tiers/tier_stats.h"

namespace kvtier::tiers {

// Wall-clock nanoseconds since the Unix epoch. The NVMe tier stores TTL deadlines as Unix time
// because they must mean the same after a restart; unlike a monotonic Clock this one can step
// when the system clock is set, which TTLs tolerate.
class UnixClock final : public Clock {
 public:
  int64_t NowNanos() const override { return absl::GetCurrentTimeNanos(); }
};

// What the reinsertion policy sees of a block in a region about to be evicted.
struct ReinsertionCandidate {
  uint32_t namespace_id = 0;
  BlockKey key;
  uint64_t length = 0;
  uint32_t hits = 0;  // reads served from NVMe since the block was written (saturates at 65535)
};
// True to write the block again at the head of the log instead of dropping it. Called under the
// tier's writer lock; must not call back into the tier.
using ReinsertionPolicy = std::function<bool(const ReinsertionCandidate&)>;

struct NvmeTierOptions {
  // Directory of the RocksDB index. Required; created if missing. Fixed for the tier's life.
  std::string index_path;
  // Size of a log region: a multiple of the device alignment, 1 MiB .. 128 MiB (16-64 MiB is
  // the intended range; smaller only for tests). Default 16 MiB. Fixed when the device is
  // formatted: reopening with another value is an error unless reformat_on_mismatch.
  uint64_t region_bytes = 16ull << 20;
  // When the device's superblock describes another layout (region size, capacity, alignment,
  // format version): true reformats it (every cached block is dropped, with a log line); false
  // (default) fails Create with kFailedPrecondition saying what differs.
  bool reformat_on_mismatch = false;
  // When the index cannot be opened, belongs to another device, or is found damaged at startup:
  // true (default) rebuilds it from a scan of the records on the device; false starts empty.
  // Blocks removed since they were written may reappear after a rebuild (their records are
  // still on the device); their bytes are still the ones written for their key.
  bool rebuild_from_device = true;
  // Decides which blocks of an evicted region are written again. Default (null): blocks read
  // at least once since they were written. Pinned blocks are always reinserted.
  ReinsertionPolicy reinsertion;
  // Reinserted bytes per evicted region, pinned blocks excepted, as a fraction of the region.
  // Default 0.5; 0 disables reinsertion of unpinned blocks.
  double max_reinsert_fraction = 0.5;
  // RocksDB block cache for the index. Default 32 MiB.
  uint64_t index_block_cache_bytes = 32ull << 20;
  // Regions reclaimed together: when the writer must evict, the oldest is opened and the others
  // are left clean (their index entries deleted in the same synced batch), so that the writer
  // opens them later without waiting for the commits in flight; and from 2 up, once few quiet
  // regions are left (half a batch plus the regions with records in flight, at most a batch),
  // the commit thread reclaims the next batch ahead of need, so that a full tier's writer need
  // not wait at all. Each such wait empties the
  // device's queue; with 16 MiB regions at 3 GB/s it came every 5 ms, and a full tier wrote
  // at 0.7 of fio's rate. The price: up to this many regions are kept free, their oldest
  // blocks leaving a little early. 0 (default): 256 MiB worth, at most an eighth of the
  // regions, at least 1 (1: no reclaim ahead).
  uint32_t reclaim_batch_regions = 0;

  // kInvalidArgument naming the bad option.
  absl::Status Validate() const;
};

// A namespace's memory controls on NVMe (SetNamespaceLimits). Held in DRAM only: not persisted,
// like the DRAM tier's limits (the deployment sets them again after a restart).
struct NvmeNamespaceLimits {
  // Most device bytes the namespace's live records may take, counted as Snapshot's used_bytes
  // counts them (DeviceBytes: the header unit and padding included); 0 (default): no quota.
  // A write that would take the namespace past it first drops the namespace's own oldest
  // unpinned records (a miss from then on; their space is reclaimed with their region), in
  // the same synced index batch that indexes the new blocks. Pinned records are never dropped
  // for a quota. Can change at any time; a lowered quota drops down to it at once.
  uint64_t quota_bytes = 0;
  // When a region is reclaimed and the reinsertion budget cannot keep every hot block, higher
  // priorities' blocks are rewritten first; no block of a priority is rewritten once a block of
  // a higher priority did not fit. Default 0. Pinned blocks are rewritten whatever it is.
  int32_t priority = 0;
};

struct NvmeWriteOptions {
  enum class Source {
    kDemotion,      // a block evicted from DRAM: subject to the admission policy
    kWriteThrough,  // a put written before it is acknowledged: always admitted
    kShutdown,      // DRAM contents saved at a clean shutdown: always admitted
  };
  Source source = Source::kDemotion;
  // Opaque to the tier: how the payload is encoded (compression codec id); returned by Read.
  uint8_t codec = 0;
  // Empty, or one codec per key replacing `codec`.
  std::span<const uint8_t> codecs;
  // Pinned blocks survive region eviction (they are always reinserted).
  bool pinned = false;
  // 0: no expiry. Otherwise the block becomes a miss this many seconds after the write.
  uint32_t ttl_seconds = 0;
  // Empty, or one TTL per key replacing ttl_seconds (blocks demoted from DRAM keep what is
  // left of theirs).
  std::span<const uint32_t> ttls_seconds;
  // Empty, or one entry per key: the block's hits in the tier above, for the admission policy.
  std::span<const uint32_t> upper_tier_hits;
  // 0 (default), or a NvmeTier::LogMark(): blocks that could only be placed by reclaiming a
  // region written at or after the mark are refused with kResourceExhausted instead (the
  // blocks before them in the call are written). A shutdown save writes most recently used
  // first and passes the mark from its start, so that once the tier is full of what it saved it
  // stops, rather than reclaim the regions holding its own first, hottest blocks.
  uint64_t keep_from = 0;
};

struct NvmeReadResult {
  uint64_t length = 0;  // payload bytes written into dst
  uint8_t codec = 0;
  uint32_t ttl_left_seconds = 0;  // 0: no TTL; else what is left of it (at least 1)
};

// NVMe-specific counters, totals since the tier was created. Invariant (tested):
// checksum_failures <= tier.counters.misses.
struct NvmeCounters {
  uint64_t checksum_failures = 0;     // records that failed a check on read (also misses)
  uint64_t io_errors = 0;             // device errors on read or write
  uint64_t index_errors = 0;          // index reads or writes that failed
  uint64_t region_evictions = 0;      // regions reclaimed
  uint64_t reclaimed_ahead = 0;       // ... of them by the commit thread, before the writer
                                      // needed them (reclaim_batch_regions > 1)
  uint64_t evicted_blocks = 0;        // blocks dropped with their region (not reinserted)
  uint64_t reinserted_blocks = 0;     // blocks written again at the head of the log
  uint64_t admission_rejections = 0;  // demoted blocks the admission policy refused
  uint64_t expired = 0;               // reads or lookups that found a block past its TTL
  uint64_t flash_bytes_written = 0;   // device bytes written: records, padding, reinsertions
  uint64_t flash_bytes_read = 0;      // device bytes read
  uint64_t write_batches = 0;         // device write batches (each one fdatasync)
  uint64_t quota_drops = 0;           // records dropped to keep a namespace within its quota
  uint64_t quota_rejections = 0;      // blocks refused: they cannot fit their namespace's quota
  // Where the write stage spent its time reclaiming regions with live records, while the
  // device had nothing to write: waiting for the commits in flight, listing the regions' index
  // entries (and reading back blocks to reinsert), and the synced index batch that frees them.
  uint64_t reclaim_wait_nanos = 0;
  uint64_t reclaim_list_nanos = 0;
  uint64_t reclaim_commit_nanos = 0;
  // Where reads spend their time, summed over ReadBatch calls: finding the blocks (the DRAM
  // table and the RocksDB index), the device (submission to the last completion, verification
  // excepted), and verifying checksums (and copying out of staging).
  uint64_t read_lookup_nanos = 0;
  uint64_t read_device_nanos = 0;
  uint64_t read_verify_nanos = 0;
};

// What Create found and did, for the startup log line and for stats.
struct NvmeRecoveryInfo {
  bool formatted = false;            // the device was new (or reformatted)
  bool index_rebuilt = false;        // the index was discarded or did not match the device
  bool rebuilt_from_device = false;  // ... and refilled from a device scan
  uint64_t blocks_recovered = 0;     // blocks served again after the restart
  uint64_t blocks_dropped = 0;       // index entries that failed the checks against the device
  uint64_t regions_dropped = 0;      // regions whose device generation was newer than the index
  int64_t startup_nanos = 0;         // time Create took
  std::string reason;                // why the index was rebuilt, if it was
};

struct NvmeTierSnapshot {
  // Figures shared with the DRAM tier: capacity (region bytes x regions), used (bytes of live
  // records), blocks, hits/misses/puts/removes/lookups, per namespace. hits + misses == keys
  // asked for by Read. Lease fields are 0.
  TierSnapshot tier;
  NvmeCounters nvme;
  uint64_t region_bytes = 0;
  uint32_t regions = 0;
  uint32_t regions_in_use = 0;
  uint32_t alignment = 0;
  std::string engine;  // "io_uring", "thread_pool" or "memory"
  std::string admission_policy;
  // DRAM metadata: the tier's block table (per block) and RocksDB's memory (mostly fixed:
  // memtable, block cache, index and filter blocks).
  uint64_t dram_index_bytes = 0;
  uint64_t rocksdb_memory_bytes = 0;
  NvmeRecoveryInfo recovery;
};

class NvmeTier {
 public:
  // Opens the tier on `device`, formatting it if it is new, and recovers the blocks its index
  // describes (see the file comment). Blocks on I/O: one superblock read, the index open and
  // scan, one read per region; a device scan when the index is rebuilt. Errors: kInvalidArgument
  // (options), kFailedPrecondition (foreign data on the device, layout mismatch without
  // reformat_on_mismatch, fewer than 2 regions fit), kUnavailable (device or index I/O, index
  // locked by another process). `unix_clock` (for TTLs; see UnixClock) must outlive the tier.
  // `admission` null: admit everything.
  static absl::StatusOr<std::unique_ptr<NvmeTier>> Create(
      const NvmeTierOptions& options, std::unique_ptr<NvmeDevice> device, const Clock* unix_clock,
      std::unique_ptr<NvmeAdmissionPolicy> admission);
  // Flushes the index's memtable (so the next start replays no log) and closes everything.
  ~NvmeTier();
  NvmeTier(const NvmeTier&) = delete;
  NvmeTier& operator=(const NvmeTier&) = delete;

  // Registers a namespace and its fixed block size (persisted). Idempotent for the same size;
  // kAlreadyExists for another size; kInvalidArgument if a block of that size cannot fit a
  // region. Blocks on a synced index write.
  absl::Status AddNamespace(uint32_t ns, uint64_t block_bytes);

  // Device alignment: a Read into `dst` is zero-copy when dst is aligned to it and at least
  // DirectReadBytes(length) long; otherwise the tier reads into its own buffer and copies.
  uint32_t alignment() const;
  uint64_t DirectReadBytes(uint64_t length) const;

  // Forwards to NvmeDevice::RegisterMemory: the daemon registers its DRAM arena so reads into
  // it use io_uring fixed buffers.
  absl::Status RegisterMemory(std::span<std::byte> memory);

  // Whether the block is cached and not expired. No I/O; not a use.
  bool Contains(uint32_t ns, const BlockKey& key) const;
  // An upper bound on a cached block's payload length (its record's size less the header
  // unit), without I/O; 0 when it is not cached. A promotion sizes its DRAM slot with it, so a
  // compressed block lands in a compressed-size slot.
  uint64_t StoredLengthBound(uint32_t ns, const BlockKey& key) const;
  // Number of leading keys that are cached (the longest cached prefix). No I/O.
  size_t LookupPrefix(uint32_t ns, std::span<const BlockKey> keys);

  // Writes blocks; blocks[i] is the payload of keys[i]. A key already cached is replaced.
  // Returns one status per key: OK once the block is durable on the device and in the index;
  // kInvalidArgument (unknown namespace, empty or longer than the namespace's block size,
  // duplicate in the batch, upper_tier_hits of the wrong size); kResourceExhausted (refused by
  // the admission policy, or the device is full: ENOSPC, or every region holds pinned blocks,
  // or only regions past options.keep_from could make room, or the namespace's quota cannot
  // hold it: see below); kUnavailable (device or index I/O
  // failed; nothing of the failed blocks is indexed).
  // Quota (NvmeNamespaceLimits::quota_bytes): a block larger than the quota is refused, and so
  // are the earliest blocks of a call whose blocks together exceed it (the call keeps its last
  // blocks that fit: later blocks would drop earlier ones anyway); the rest drop the
  // namespace's oldest records at commit. A block acknowledged OK may thus be dropped at once
  // by a block committed with it, as by any eviction. A block that only pinned records stand
  // in the way of is refused at commit. Refusals count in quota_rejections.
  // Blocks on device writes, an fdatasync and a synced index write per batch, plus a region
  // eviction when the log needs room. Run it off the request path (demotion thread); readers
  // are not blocked while it runs.
  std::vector<absl::Status> Write(uint32_t ns, std::span<const BlockKey> keys,
                                  std::span<const std::span<const std::byte>> blocks,
                                  const NvmeWriteOptions& options = {});

  // Write, pipelined: checksums the batch (on the calling thread), queues it and returns
  // (blocking only while 8 earlier batches still wait to be written); then calls `done` with
  // the statuses Write would return once the batch is durable and indexed. The tier's write
  // thread writes the records while its commit thread makes earlier batches durable (fdatasync
  // + synced index write), and batches queued together share one submission and one pair of
  // syncs. `blocks` must stay valid until `done` runs (keys and options need not). `done` runs
  // on the tier's commit thread (or on the calling thread when nothing was left to write); it
  // must be quick and must not call Write, WriteAsync, Remove, SetPinned or AddNamespace.
  void WriteAsync(uint32_t ns, std::span<const BlockKey> keys,
                  std::span<const std::span<const std::byte>> blocks,
                  const NvmeWriteOptions& options,
                  std::function<void(std::vector<absl::Status>)> done);

  // Reads a block into `dst` and verifies it. kNotFound: not cached, expired, or its record
  // failed a check (then also counted in checksum_failures) — never wrong bytes;
  // kInvalidArgument: dst shorter than the block; kUnavailable: device I/O error (a miss too).
  // dst's contents are unspecified unless OK. A hit counts as a use for reinsertion. Blocks on
  // one index lookup and one device read.
  absl::StatusOr<NvmeReadResult> Read(uint32_t ns, const BlockKey& key, std::span<std::byte> dst);
  // Reads several blocks with their device reads in flight together (up to the queue depth).
  // Result i is as Read's for keys[i] into dsts[i].
  std::vector<absl::StatusOr<NvmeReadResult>> ReadBatch(uint32_t ns, std::span<const BlockKey> keys,
                                                        std::span<const std::span<std::byte>> dsts);

  // Removes blocks: OK or kNotFound per key; kUnavailable if the index write failed (then none
  // of the batch is removed). Blocks on a synced index write.
  std::vector<absl::Status> Remove(uint32_t ns, std::span<const BlockKey> keys);

  // Pins or unpins cached blocks: OK, kNotFound, or kUnavailable (index). Blocks on a synced
  // index write.
  std::vector<absl::Status> SetPinned(uint32_t ns, std::span<const BlockKey> keys, bool pinned);

  // Replaces a namespace's limits (NvmeNamespaceLimits). A quota below the namespace's live
  // bytes drops its oldest unpinned records down to it before returning (a synced index write);
  // the limits take effect even when that write fails (then kUnavailable, and the next write
  // of the namespace drops down to the quota). kNotFound for a namespace the tier does not
  // know. Blocks on index I/O.
  absl::Status SetNamespaceLimits(uint32_t ns, const NvmeNamespaceLimits& limits);
  // The namespace's limits; defaults for a namespace never given any. No I/O.
  NvmeNamespaceLimits Limits(uint32_t ns) const;
  // Device bytes a record of a `length`-byte payload takes: one header unit plus the payload
  // padded to the alignment. What used_bytes and quotas count.
  uint64_t DeviceBytes(uint64_t length) const;

  // A mark of the log's head, for NvmeWriteOptions::keep_from: every record written after this
  // call lies in a region whose generation is at least the mark. No I/O; waits for a write
  // stage that is placing blocks.
  uint64_t LogMark() const;

  NvmeTierSnapshot Snapshot() const;

 private:
  class Impl;
  explicit NvmeTier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier::tiers
