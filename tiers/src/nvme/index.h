// NvmeIndex: the NVMe tier's durable metadata in RocksDB.
//
// Keys (one byte of kind, then big-endian numbers so that RocksDB's order is numeric):
//   'B' ns(4) key(32)        -> BlockLocation (40 bytes)       where a block's record lives
//   'L' region(4) offset(4)  -> ns(4) key(32)                  which block a record belongs to,
//                                                              so a region's blocks can be listed
//                                                              without a full scan at eviction
//   'R' region(4)            -> generation(8)                  the region's current generation
//   'N' ns(4)                -> block_bytes(8)                 registered namespaces
//   'G'                      -> next generation(8)
//   'I'                      -> IndexIdentity                  which device this index describes
// A block's 'B' and 'L' entries are written and deleted together in one WriteBatch.
//
// RocksDB is tuned for point lookups (OptimizeForPointLookup: bloom filters, hash index in data
// blocks, a block cache), keeps its write-ahead log, and recovers a damaged log tail to the last
// consistent point (kPointInTimeRecovery): entries lost that way are caught by the generation
// checks (nvme_tier.cc). An index that RocksDB cannot open at all is discarded and recreated
// empty (Open), because a cache that refuses to start is worse than a cold one.
//
// Thread-safe (RocksDB is).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/common/block_key.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace kvtier::tiers::nvme {

struct BlockLocation {
  uint32_t region = 0;
  uint32_t offset = 0;  // of the record, within its region
  uint64_t length = 0;  // payload bytes
  uint64_t generation = 0;
  uint64_t checksum = 0;  // payload checksum (record.h)
  uint32_t expiry_unix_s = 0;
  uint8_t codec = 0;
  uint8_t flags = 0;

  friend bool operator==(const BlockLocation&, const BlockLocation&) = default;
};

struct IndexIdentity {
  uint64_t instance_id = 0;
  uint32_t format = 0;
  uint64_t capacity_bytes = 0;
  uint64_t region_bytes = 0;
  uint32_t alignment = 0;

  friend bool operator==(const IndexIdentity&, const IndexIdentity&) = default;
};

class NvmeIndex {
 public:
  // A set of changes applied atomically by Commit.
  class Batch {
   public:
    Batch();
    ~Batch();
    void PutBlock(uint32_t ns, const BlockKey& key, const BlockLocation& loc);
    // Deletes the block's 'B' entry and the 'L' entry at `loc`.
    void DeleteBlock(uint32_t ns, const BlockKey& key, const BlockLocation& loc);
    void DeleteBlockEntry(uint32_t ns, const BlockKey& key);
    void DeleteLocator(uint32_t region, uint32_t offset);
    void PutRegion(uint32_t region, uint64_t generation);
    void PutNextGeneration(uint64_t generation);
    void PutNamespace(uint32_t ns, uint64_t block_bytes);
    void PutIdentity(const IndexIdentity& identity);
    size_t Count() const;
    // Empties the batch for reuse.
    void Clear();

   private:
    friend class NvmeIndex;
    std::unique_ptr<rocksdb::WriteBatch> batch_;
  };

  struct OpenReport {
    bool recreated = false;  // the old index could not be opened and was discarded
    std::string reason;
  };

  // Opens or creates the index at `path`. When RocksDB cannot open it (corruption, a damaged
  // MANIFEST or CURRENT), logs the reason, destroys it and creates an empty one; `report` says
  // so. kUnavailable when another process holds it (a lock, not damage) or when even an empty
  // index cannot be created (e.g. permissions), with RocksDB's reason.
  static absl::StatusOr<std::unique_ptr<NvmeIndex>> Open(const std::string& path,
                                                         uint64_t block_cache_bytes,
                                                         OpenReport* report);
  // Deletes the index at `path` (for a rebuild after damage found past Open).
  static absl::Status Destroy(const std::string& path);

  ~NvmeIndex();
  NvmeIndex(const NvmeIndex&) = delete;
  NvmeIndex& operator=(const NvmeIndex&) = delete;

  // Applies `batch`; with `sync` the WAL is fsynced before returning. kUnavailable on I/O
  // failure.
  absl::Status Commit(Batch& batch, bool sync);

  // kNotFound when absent; kDataLoss when RocksDB finds the stored bytes damaged or the value
  // is malformed; kUnavailable on I/O failure.
  absl::StatusOr<BlockLocation> GetBlock(uint32_t ns, const BlockKey& key);
  absl::StatusOr<std::optional<IndexIdentity>> GetIdentity();
  // 0 when absent.
  absl::StatusOr<uint64_t> GetNextGeneration();

  // Full scans, in key order, checksums verified. Errors as GetBlock; a malformed value is
  // kDataLoss.
  absl::Status ForEachNamespace(const std::function<void(uint32_t ns, uint64_t block_bytes)>& fn);
  absl::Status ForEachRegion(const std::function<void(uint32_t region, uint64_t gen)>& fn);
  absl::Status ForEachBlock(
      const std::function<void(uint32_t ns, const BlockKey& key, const BlockLocation& loc)>& fn);
  // The 'L' entries of one region, by offset.
  absl::Status ForEachInRegion(
      uint32_t region,
      const std::function<void(uint32_t offset, uint32_t ns, const BlockKey& key)>& fn);
  // The 'L' entries of one region at `from_offset` or after it, by offset, until `fn` returns
  // false. Unlike the full scans it keeps what it reads in the block cache: quota walks come
  // back to the same region. Errors as ForEachInRegion.
  absl::Status ScanRegion(
      uint32_t region, uint32_t from_offset,
      const std::function<bool(uint32_t offset, uint32_t ns, const BlockKey& key)>& fn);

  // Deletes every entry (synced).
  absl::Status Clear();
  // Writes the memtable to an SST file so that the next Open replays no log.
  absl::Status Flush();
  // DRAM RocksDB holds: table readers (index and filter blocks), memtables, block cache.
  uint64_t MemoryBytes();

 private:
  explicit NvmeIndex(std::unique_ptr<rocksdb::DB> db);
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace kvtier::tiers::nvme
