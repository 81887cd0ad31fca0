// NvmeTier startup: superblock, index, checks of the index against the device, DRAM table.
//
//   1. Superblock: format a new (all-zero) device; refuse foreign data; reformat a damaged
//      superblock (it is a cache); refuse another layout unless reformat_on_mismatch.
//   2. Index: open it (NvmeIndex::Open discards one RocksDB cannot open). Rebuild it when it
//      was discarded, is new while the device holds records, or describes another device
//      (instance id or layout differ).
//   3. Table: load every 'B' entry whose generation is its region's current one; drop the
//      rest. Damage found while scanning (a corrupt SST block) rebuilds the index.
//   4. Regions: read each region's first record header. A region whose device generation is
//      newer than the index's was reclaimed behind the index's back (its log tail was lost):
//      its entries are dropped. The next generation starts above every one seen anywhere.
#include <algorithm>
#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "kvtier/common/units.h"
#include "spdlog/spdlog.h"
#include "tiers/src/nvme/record.h"
#include "tiers/src/nvme/tier_impl.h"

namespace kvtier::tiers {

using nvme::AlignedBytes;
using nvme::BlockLocation;
using nvme::RecordBytes;

namespace {

// Regions whose headers are read in one batch during checks and scans.
constexpr uint32_t kRegionsPerBatch = 256;
// Index entries per WriteBatch while a rebuilt index is filled.
constexpr size_t kRebuildBatchEntries = 20000;

uint64_t RandomInstanceId() {
  std::random_device rd;
  uint64_t id = (uint64_t{rd()} << 32) ^ rd();
  return id == 0 ? 1 : id;
}

}  // namespace

nvme::IndexIdentity NvmeTier::Impl::Identity() const {
  return nvme::IndexIdentity{sb_.instance_id, sb_.format, sb_.capacity_bytes, sb_.region_bytes,
                             sb_.alignment};
}

absl::Status NvmeTier::Impl::Open() {
  const auto start = std::chrono::steady_clock::now();
  if (options_.region_bytes % alignment_ != 0 || alignment_ > nvme::kDataOffset) {
    return absl::InvalidArgumentError(absl::StrCat("NVMe region size ", options_.region_bytes,
                                                   " is not a multiple of the device alignment ",
                                                   alignment_));
  }
  const uint64_t size = device_->size_bytes();
  const uint64_t regions =
      size > nvme::kDataOffset ? (size - nvme::kDataOffset) / options_.region_bytes : 0;
  if (regions < 2 || regions > UINT32_MAX) {
    return absl::FailedPreconditionError(
        absl::StrCat("NVMe capacity ", FormatByteSize(size), " holds ", regions, " regions of ",
                     FormatByteSize(options_.region_bytes),
                     "; at least 2 are needed: raise --nvme-capacity "
                     "to at least ",
                     nvme::kDataOffset + 2 * options_.region_bytes, " bytes"));
  }
  KVTIER_RETURN_IF_ERROR(CheckSuperblock());

  absl::MutexLock wlock(&write_mu_);
  {
    absl::MutexLock lock(&mu_);
    log_ = std::make_unique<nvme::RegionLog>(sb_.region_count, sb_.region_bytes);
  }
  reclaim_batch_ = options_.reclaim_batch_regions != 0
                       ? std::min(options_.reclaim_batch_regions, sb_.region_count)
                       : static_cast<uint32_t>(
                             std::clamp<uint64_t>((uint64_t{256} << 20) / sb_.region_bytes, 1,
                                                  std::max<uint32_t>(1, sb_.region_count / 8)));
  nvme::NvmeIndex::OpenReport report;
  KVTIER_ASSIGN_OR_RETURN(index_, nvme::NvmeIndex::Open(options_.index_path,
                                                        options_.index_block_cache_bytes, &report));

  bool formatted;
  {
    absl::MutexLock lock(&mu_);
    formatted = recovery_.formatted;
  }
  std::string rebuild_reason;
  if (report.recreated) {
    rebuild_reason = absl::StrCat("it could not be opened (", report.reason, ")");
  } else if (!formatted) {
    absl::StatusOr<std::optional<nvme::IndexIdentity>> id = index_->GetIdentity();
    if (!id.ok()) {
      rebuild_reason = absl::StrCat("its identity is unreadable (", id.status().message(), ")");
    } else if (!id->has_value()) {
      rebuild_reason = "it is new or empty while the device is formatted";
    } else if (**id != Identity()) {
      rebuild_reason = "it describes another device or layout";
    }
  }
  if (formatted) {
    // Whatever the index held described the device's previous contents.
    KVTIER_RETURN_IF_ERROR(index_->Clear());
    nvme::NvmeIndex::Batch batch;
    batch.PutIdentity(Identity());
    KVTIER_RETURN_IF_ERROR(index_->Commit(batch, /*sync=*/true));
  } else if (!rebuild_reason.empty()) {
    KVTIER_RETURN_IF_ERROR(RebuildIndex(rebuild_reason));
  }

  absl::Status loaded = LoadTable();
  if (absl::IsDataLoss(loaded)) {
    // RocksDB found damage past Open (a corrupt table block): start over from the device.
    index_.reset();
    KVTIER_RETURN_IF_ERROR(nvme::NvmeIndex::Destroy(options_.index_path));
    nvme::NvmeIndex::OpenReport again;
    KVTIER_ASSIGN_OR_RETURN(
        index_,
        nvme::NvmeIndex::Open(options_.index_path, options_.index_block_cache_bytes, &again));
    {
      absl::MutexLock lock(&mu_);
      table_.clear();
      ns_.clear();
      log_ = std::make_unique<nvme::RegionLog>(sb_.region_count, sb_.region_bytes);
    }
    KVTIER_RETURN_IF_ERROR(RebuildIndex(absl::StrCat("it is damaged (", loaded.message(), ")")));
    loaded = LoadTable();
  }
  KVTIER_RETURN_IF_ERROR(loaded);
  KVTIER_RETURN_IF_ERROR(VerifyRegions());

  absl::MutexLock lock(&mu_);
  recovery_.blocks_recovered = table_.size();
  recovery_.startup_nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count();
  spdlog::info(
      "NVMe tier: {} engine, {} in {} regions of {}, {} blocks served again ({} dropped by "
      "checks), started in {:.1f} ms{}",
      device_->engine(), FormatByteSize(uint64_t{sb_.region_count} * sb_.region_bytes),
      sb_.region_count, FormatByteSize(sb_.region_bytes), recovery_.blocks_recovered,
      recovery_.blocks_dropped, static_cast<double>(recovery_.startup_nanos) / 1e6,
      recovery_.formatted ? " (device formatted)" : "");
  return absl::OkStatus();
}

absl::Status NvmeTier::Impl::CheckSuperblock() {
  AlignedBytes unit = nvme::AllocateAligned(alignment_, alignment_);
  IoSegment segment{unit.get(), alignment_};
  IoOp op;
  op.type = IoOp::Type::kRead;
  op.offset = 0;
  op.segments = {&segment, 1};
  KVTIER_RETURN_IF_ERROR(device_->Submit({&op, 1}));
  absl::StatusOr<nvme::Superblock> found = nvme::DecodeSuperblock({unit.get(), alignment_});

  const uint64_t size = device_->size_bytes();
  sb_ = nvme::Superblock{};
  sb_.alignment = alignment_;
  sb_.capacity_bytes = size;
  sb_.region_bytes = options_.region_bytes;
  sb_.region_count = static_cast<uint32_t>((size - nvme::kDataOffset) / options_.region_bytes);

  if (absl::IsNotFound(found.status())) return Format();
  if (absl::IsFailedPrecondition(found.status())) {
    return absl::FailedPreconditionError(
        "the NVMe device holds data that is not a kvtier NVMe tier (no kvtier superblock); "
        "refusing to overwrite it. Point --nvme-path at a new file, or if its contents are "
        "disposable, zero its first 4 KiB (dd if=/dev/zero of=PATH bs=4096 count=1 "
        "conv=notrunc)");
  }
  if (!found.ok()) {
    spdlog::error("NVMe superblock is damaged ({}); reformatting: the cached blocks are dropped",
                  found.status().ToString());
    return Format();
  }
  std::string diff;
  auto compare = [&](std::string_view what, uint64_t on_device, uint64_t wanted) {
    if (on_device == wanted) return;
    absl::StrAppend(&diff, diff.empty() ? "" : ", ", AbslView(what), " ", on_device,
                    " (options: ", wanted, ")");
  };
  compare("format version", found->format, sb_.format);
  compare("alignment", found->alignment, sb_.alignment);
  compare("capacity", found->capacity_bytes, sb_.capacity_bytes);
  compare("region bytes", found->region_bytes, sb_.region_bytes);
  compare("data offset", found->data_offset, sb_.data_offset);
  compare("region count", found->region_count, sb_.region_count);
  if (diff.empty()) {
    sb_ = *found;
    return absl::OkStatus();
  }
  if (options_.reformat_on_mismatch) {
    spdlog::warn("NVMe device was formatted with {}; reformatting: the cached blocks are dropped",
                 diff);
    return Format();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the NVMe device was formatted with ", diff,
      ": start with the settings it was formatted with, or allow reformatting (drops the cached "
      "blocks)"));
}

absl::Status NvmeTier::Impl::Format() {
  sb_.instance_id = RandomInstanceId();
  sb_.created_unix_s = static_cast<uint64_t>(clock_->NowNanos() / 1'000'000'000);
  AlignedBytes unit = nvme::AllocateAligned(alignment_, alignment_);
  nvme::EncodeSuperblock(sb_, {unit.get(), alignment_});
  IoSegment segment{unit.get(), alignment_};
  IoOp op;
  op.type = IoOp::Type::kWrite;
  op.offset = 0;
  op.segments = {&segment, 1};
  KVTIER_RETURN_IF_ERROR(device_->Submit({&op, 1}));
  KVTIER_RETURN_IF_ERROR(device_->Sync());
  absl::MutexLock lock(&mu_);
  recovery_.formatted = true;
  return absl::OkStatus();
}

absl::Status NvmeTier::Impl::RebuildIndex(const std::string& reason) {
  spdlog::warn("NVMe index {}: {}; rebuilding it {}", options_.index_path, reason,
               options_.rebuild_from_device ? "from a scan of the device's records"
                                            : "empty (rebuild_from_device is off)");
  {
    absl::MutexLock lock(&mu_);
    recovery_.index_rebuilt = true;
    recovery_.reason = reason;
  }
  KVTIER_RETURN_IF_ERROR(index_->Clear());
  if (options_.rebuild_from_device) {
    nvme::NvmeIndex::Batch batch;
    KVTIER_RETURN_IF_ERROR(ScanDevice(batch));
    KVTIER_RETURN_IF_ERROR(index_->Commit(batch, /*sync=*/false));
    absl::MutexLock lock(&mu_);
    recovery_.rebuilt_from_device = true;
  }
  // The identity goes last: a crash during the rebuild leaves an index without one, which the
  // next start rebuilds again.
  nvme::NvmeIndex::Batch batch;
  batch.PutIdentity(Identity());
  return index_->Commit(batch, /*sync=*/true);
}

absl::Status NvmeTier::Impl::ScanDevice(nvme::NvmeIndex::Batch& batch) {
  struct Found {
    uint32_t ns;
    BlockKey key;
    BlockLocation loc;
  };
  absl::flat_hash_map<uint64_t, Found> best;
  std::vector<uint64_t> region_gen(sb_.region_count, 0);
  AlignedBytes buffer = nvme::AllocateAligned(size_t{kRegionsPerBatch} * alignment_, alignment_);

  // Each region's records form a chain: header, payload, next header. Follow the chains of a
  // group of regions in lockstep, one header per region per batch of reads.
  for (uint32_t first = 0; first < sb_.region_count; first += kRegionsPerBatch) {
    struct Cursor {
      uint32_t region;
      uint64_t offset = 0;
      uint64_t generation = 0;
      bool active = true;
    };
    std::vector<Cursor> cursors;
    for (uint32_t r = first; r < std::min(sb_.region_count, first + kRegionsPerBatch); ++r) {
      cursors.push_back(Cursor{r});
    }
    while (true) {
      std::vector<IoSegment> segments;
      std::vector<IoOp> ops;
      std::vector<Cursor*> reading;
      segments.reserve(cursors.size());
      for (Cursor& c : cursors) {
        if (!c.active) continue;
        segments.push_back({buffer.get() + reading.size() * alignment_, alignment_});
        IoOp op;
        op.type = IoOp::Type::kRead;
        op.offset = RegionOffset(c.region) + c.offset;
        op.segments = {&segments.back(), 1};
        ops.push_back(op);
        reading.push_back(&c);
      }
      if (ops.empty()) break;
      (void)device_->Submit(ops);
      for (size_t k = 0; k < ops.size(); ++k) {
        Cursor& c = *reading[k];
        c.active = false;
        if (!ops[k].status.ok()) continue;
        absl::StatusOr<nvme::RecordHeader> h =
            nvme::DecodeRecordHeader({segments[k].data, segments[k].length});
        if (!h.ok() || h->generation == 0 || h->length == 0) continue;
        if (c.generation == 0) c.generation = h->generation;
        // A record of another generation is left from the region's previous life: the chain of
        // the current generation ends here.
        if (h->generation != c.generation) continue;
        const uint64_t record_bytes = RecordBytes(h->length, alignment_);
        if (c.offset + record_bytes > sb_.region_bytes) continue;
        const BlockLocation loc{c.region,
                                static_cast<uint32_t>(c.offset),
                                h->length,
                                h->generation,
                                h->payload_checksum,
                                h->expiry_unix_s,
                                h->codec,
                                h->flags};
        auto [it, inserted] = best.try_emplace(TableKey(h->namespace_id, h->key),
                                               Found{h->namespace_id, h->key, loc});
        // The newest copy wins: higher generation, or later in the same region.
        if (!inserted && it->second.key == h->key &&
            (loc.generation > it->second.loc.generation ||
             (loc.generation == it->second.loc.generation && loc.offset > it->second.loc.offset))) {
          it->second = Found{h->namespace_id, h->key, loc};
        }
        c.offset += record_bytes;
        c.active = c.offset < sb_.region_bytes;
      }
    }
    for (const Cursor& c : cursors) region_gen[c.region] = c.generation;
  }

  uint64_t max_gen = 0;
  for (uint32_t r = 0; r < sb_.region_count; ++r) {
    if (region_gen[r] == 0) continue;
    batch.PutRegion(r, region_gen[r]);
    max_gen = std::max(max_gen, region_gen[r]);
  }
  batch.PutNextGeneration(max_gen + 1);
  for (const auto& [tk, f] : best) {
    batch.PutBlock(f.ns, f.key, f.loc);
    if (batch.Count() >= kRebuildBatchEntries) {
      KVTIER_RETURN_IF_ERROR(index_->Commit(batch, /*sync=*/false));
      batch.Clear();
    }
  }
  spdlog::info("NVMe index rebuilt from the device: {} blocks found", best.size());
  return absl::OkStatus();
}

absl::Status NvmeTier::Impl::LoadTable() {
  absl::MutexLock lock(&mu_);
  std::vector<uint64_t> gens(sb_.region_count, 0);
  KVTIER_RETURN_IF_ERROR(index_->ForEachRegion([&](uint32_t r, uint64_t g) {
    if (r < sb_.region_count) gens[r] = g;
  }));
  KVTIER_RETURN_IF_ERROR(index_->ForEachNamespace(
      [&](uint32_t ns, uint64_t block_bytes) { ns_[ns].block_bytes = block_bytes; }));
  KVTIER_ASSIGN_OR_RETURN(const uint64_t next, index_->GetNextGeneration());

  nvme::NvmeIndex::Batch drop;
  uint64_t dropped = 0;
  KVTIER_RETURN_IF_ERROR(
      index_->ForEachBlock([&](uint32_t ns, const BlockKey& key, const BlockLocation& loc) {
        const uint64_t record_bytes = RecordBytes(loc.length, alignment_);
        const bool valid = loc.region < sb_.region_count && loc.generation != 0 &&
                           gens[loc.region] == loc.generation && loc.length > 0 &&
                           loc.offset % alignment_ == 0 &&
                           loc.offset + record_bytes <= sb_.region_bytes;
        const uint64_t tk = TableKey(ns, key);
        if (!valid || table_.contains(tk)) {
          // Only the 'B' entry: the 'L' entry at that location may belong to a newer block.
          drop.DeleteBlockEntry(ns, key);
          ++dropped;
          return;
        }
        Entry e;
        e.region = loc.region;
        e.offset_units = static_cast<uint16_t>(loc.offset / alignment_);
        e.record_units = static_cast<uint16_t>(record_bytes / alignment_);
        e.expiry_unix_s = loc.expiry_unix_s;
        e.flags = loc.flags;
        InsertLocked(ns, tk, e);
      }));
  uint64_t max_gen = 0;
  for (uint32_t r = 0; r < sb_.region_count; ++r) {
    if (gens[r] != 0) log_->Restore(r, gens[r]);
    max_gen = std::max(max_gen, gens[r]);
  }
  next_generation_ = std::max(next, max_gen + 1);
  recovery_.blocks_dropped += dropped;
  if (drop.Count() > 0) KVTIER_RETURN_IF_ERROR(index_->Commit(drop, /*sync=*/true));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> NvmeTier::Impl::FirstHeaderGenerations() {
  std::vector<uint64_t> gens(sb_.region_count, 0);
  AlignedBytes buffer = nvme::AllocateAligned(size_t{kRegionsPerBatch} * alignment_, alignment_);
  for (uint32_t first = 0; first < sb_.region_count; first += kRegionsPerBatch) {
    const uint32_t count = std::min(kRegionsPerBatch, sb_.region_count - first);
    std::vector<IoSegment> segments(count);
    std::vector<IoOp> ops(count);
    for (uint32_t k = 0; k < count; ++k) {
      segments[k] = {buffer.get() + size_t{k} * alignment_, alignment_};
      ops[k].type = IoOp::Type::kRead;
      ops[k].offset = RegionOffset(first + k);
      ops[k].segments = {&segments[k], 1};
    }
    KVTIER_RETURN_IF_ERROR(device_->Submit(ops));
    for (uint32_t k = 0; k < count; ++k) {
      absl::StatusOr<nvme::RecordHeader> h =
          nvme::DecodeRecordHeader({segments[k].data, segments[k].length});
      if (h.ok()) gens[first + k] = h->generation;
    }
  }
  return gens;
}

absl::Status NvmeTier::Impl::VerifyRegions() {
  KVTIER_ASSIGN_OR_RETURN(const std::vector<uint64_t> device_gens, FirstHeaderGenerations());
  std::vector<uint32_t> stale;
  {
    absl::MutexLock lock(&mu_);
    uint64_t max_gen = 0;
    for (uint32_t r = 0; r < sb_.region_count; ++r) {
      max_gen = std::max(max_gen, device_gens[r]);
      if (log_->live_bytes(r) > 0 && device_gens[r] > log_->generation(r)) stale.push_back(r);
    }
    // Generations must never repeat on the device, including ones the index lost. A clean
    // region is opened with an unsynced index batch (tier_write.cc, ReclaimRegions), so the
    // generations of up to region_count such openings can be lost
    // with the index's tail while a record of one reached the device past the region's first
    // header; skipping region_count generations keeps each of them unused.
    next_generation_ = std::max(next_generation_, max_gen + 1) + sb_.region_count;
  }
  if (stale.empty()) return absl::OkStatus();

  nvme::NvmeIndex::Batch batch;
  std::vector<std::pair<uint32_t, BlockKey>> listed;
  for (uint32_t r : stale) {
    listed.clear();
    KVTIER_RETURN_IF_ERROR(
        index_->ForEachInRegion(r, [&](uint32_t offset, uint32_t ns, const BlockKey& key) {
          batch.DeleteBlock(ns, key, BlockLocation{.region = r, .offset = offset});
          listed.emplace_back(ns, key);
        }));
    absl::MutexLock lock(&mu_);
    for (const auto& [ns, key] : listed) {
      const uint64_t tk = TableKey(ns, key);
      auto it = table_.find(tk);
      if (it != table_.end() && it->second.region == r) {
        EraseLocked(ns, tk, it->second);
        ++recovery_.blocks_dropped;
      }
    }
    spdlog::warn(
        "NVMe region {} holds generation {} on the device but {} in the index (the index lost "
        "its reclaim); its {} index entries are dropped",
        r, device_gens[r], log_->generation(r), listed.size());
    log_->Restore(r, device_gens[r]);
    ++recovery_.regions_dropped;
  }
  return index_->Commit(batch, /*sync=*/true);
}

}  // namespace kvtier::tiers
