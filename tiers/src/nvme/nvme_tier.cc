// NvmeTier: the public facade, lookups, the read path and stats. Writes and eviction are in
// tier_write.cc, startup in tier_recovery.cc; tier_impl.h describes the shared state.
//
// Read path: DRAM table (present? expired?) -> RocksDB Get by full key (location, generation,
// checksum) -> one device read of the payload only -> seeded checksum check. The header is not
// read: the checksum, seeded with namespace, key and length, fails for anything but the bytes
// written for this key (record.h); an entry whose generation is not its region's current one
// is stale and never read.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "kvtier/common/status_macros.h"
#include "tiers/src/nvme/record.h"
#include "tiers/src/nvme/tier_impl.h"
#include "tiers/src/nvme/xxh3.h"

namespace kvtier::tiers {

using nvme::AlignedBytes;
using nvme::BlockLocation;

absl::Status NvmeTierOptions::Validate() const {
  if (index_path.empty()) {
    return absl::InvalidArgumentError(
        "NVMe tier index_path is empty: name a directory for the "
        "RocksDB index");
  }
  if (region_bytes < (1ull << 20) || region_bytes > (128ull << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("NVMe region size ", region_bytes,
                                                   " bytes is outside 1 MiB .. 128 MiB (16-64 MiB "
                                                   "recommended)"));
  }
  if (!(max_reinsert_fraction >= 0.0 && max_reinsert_fraction <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("NVMe max_reinsert_fraction ", max_reinsert_fraction, " must be within 0..1"));
  }
  return absl::OkStatus();
}

// --- facade ---

absl::StatusOr<std::unique_ptr<NvmeTier>> NvmeTier::Create(
    const NvmeTierOptions& options, std::unique_ptr<NvmeDevice> device, const Clock* unix_clock,
    std::unique_ptr<NvmeAdmissionPolicy> admission) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  if (device == nullptr || unix_clock == nullptr) {
    return absl::InvalidArgumentError("NvmeTier::Create needs a device and a clock");
  }
  if (admission == nullptr) admission = NewAdmitAllPolicy();
  auto impl = std::make_unique<Impl>(options, std::move(device), unix_clock, std::move(admission));
  KVTIER_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<NvmeTier>(new NvmeTier(std::move(impl)));
}

NvmeTier::NvmeTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NvmeTier::~NvmeTier() = default;

absl::Status NvmeTier::AddNamespace(uint32_t ns, uint64_t block_bytes) {
  return impl_->AddNamespace(ns, block_bytes);
}
uint32_t NvmeTier::alignment() const { return impl_->alignment(); }
uint64_t NvmeTier::DirectReadBytes(uint64_t length) const {
  return nvme::RoundUp(length, impl_->alignment());
}
absl::Status NvmeTier::RegisterMemory(std::span<std::byte> memory) {
  return impl_->RegisterMemory(memory);
}
bool NvmeTier::Contains(uint32_t ns, const BlockKey& key) const { return impl_->Contains(ns, key); }
uint64_t NvmeTier::StoredLengthBound(uint32_t ns, const BlockKey& key) const {
  return impl_->StoredLengthBound(ns, key);
}
size_t NvmeTier::LookupPrefix(uint32_t ns, std::span<const BlockKey> keys) {
  return impl_->LookupPrefix(ns, keys);
}
std::vector<absl::Status> NvmeTier::Write(uint32_t ns, std::span<const BlockKey> keys,
                                          std::span<const std::span<const std::byte>> blocks,
                                          const NvmeWriteOptions& options) {
  std::vector<absl::Status> result;
  absl::Notification committed;
  impl_->WriteAsync(ns, keys, blocks, options, [&](std::vector<absl::Status> statuses) {
    result = std::move(statuses);
    committed.Notify();
  });
  committed.WaitForNotification();
  return result;
}
void NvmeTier::WriteAsync(uint32_t ns, std::span<const BlockKey> keys,
                          std::span<const std::span<const std::byte>> blocks,
                          const NvmeWriteOptions& options,
                          std::function<void(std::vector<absl::Status>)> done) {
  impl_->WriteAsync(ns, keys, blocks, options, std::move(done));
}
absl::StatusOr<NvmeReadResult> NvmeTier::Read(uint32_t ns, const BlockKey& key,
                                              std::span<std::byte> dst) {
  return std::move(impl_->ReadBatch(ns, {&key, 1}, {&dst, 1})[0]);
}
std::vector<absl::StatusOr<NvmeReadResult>> NvmeTier::ReadBatch(
    uint32_t ns, std::span<const BlockKey> keys, std::span<const std::span<std::byte>> dsts) {
  return impl_->ReadBatch(ns, keys, dsts);
}
std::vector<absl::Status> NvmeTier::Remove(uint32_t ns, std::span<const BlockKey> keys) {
  return impl_->Remove(ns, keys);
}
std::vector<absl::Status> NvmeTier::SetPinned(uint32_t ns, std::span<const BlockKey> keys,
                                              bool pinned) {
  return impl_->SetPinned(ns, keys, pinned);
}
absl::Status NvmeTier::SetNamespaceLimits(uint32_t ns, const NvmeNamespaceLimits& limits) {
  return impl_->SetNamespaceLimits(ns, limits);
}
NvmeNamespaceLimits NvmeTier::Limits(uint32_t ns) const { return impl_->Limits(ns); }
uint64_t NvmeTier::DeviceBytes(uint64_t length) const {
  return nvme::RecordBytes(length, impl_->alignment());
}
NvmeTierSnapshot NvmeTier::Snapshot() const { return impl_->Snapshot(); }
uint64_t NvmeTier::LogMark() const { return impl_->LogMark(); }

// --- Impl: shared helpers ---

NvmeTier::Impl::Impl(const NvmeTierOptions& options, std::unique_ptr<NvmeDevice> device,
                     const Clock* clock, std::unique_ptr<NvmeAdmissionPolicy> admission)
    : options_(options),
      device_(std::move(device)),
      clock_(clock),
      admission_(std::move(admission)),
      alignment_(device_->alignment()) {
  writer_ = std::thread([this] { WriteLoop(); });
  committer_ = std::thread([this] { CommitLoop(); });
}

NvmeTier::Impl::~Impl() {
  DrainAll();
  {
    absl::MutexLock lock(&pipe_mu_);
    stopping_ = true;
  }
  writer_.join();
  committer_.join();
  // A flushed memtable means the next start replays no log: part of the startup-time budget.
  if (index_ != nullptr) (void)index_->Flush();
}

uint64_t NvmeTier::Impl::TableKey(uint32_t ns, const BlockKey& key) {
  std::byte buf[4 + BlockKey::kSize];
  std::memcpy(buf, &ns, 4);
  std::memcpy(buf + 4, key.bytes.data(), BlockKey::kSize);
  return nvme::Xxh3(buf, sizeof(buf));
}

uint32_t NvmeTier::Impl::NowUnixSeconds() const {
  return static_cast<uint32_t>(std::clamp<int64_t>(clock_->NowNanos() / 1'000'000'000, 0,
                                                   std::numeric_limits<uint32_t>::max()));
}

void NvmeTier::Impl::EraseLocked(uint32_t ns, uint64_t table_key, Entry e) {
  table_.erase(table_key);
  const uint64_t bytes = uint64_t{e.record_units} * alignment_;
  log_->RemoveLive(e.region, bytes, (e.flags & nvme::kFlagPinned) != 0);
  Namespace& n = NamespaceLocked(ns);
  --n.blocks;
  n.used_bytes -= bytes;
  auto it = n.region_bytes.find(e.region);
  if (it != n.region_bytes.end() && (it->second -= static_cast<uint32_t>(bytes)) == 0) {
    n.region_bytes.erase(it);
  }
}

void NvmeTier::Impl::InsertLocked(uint32_t ns, uint64_t table_key, const Entry& e) {
  table_[table_key] = e;
  const uint64_t bytes = uint64_t{e.record_units} * alignment_;
  log_->AddLive(e.region, bytes, (e.flags & nvme::kFlagPinned) != 0);
  Namespace& n = NamespaceLocked(ns);
  ++n.blocks;
  n.used_bytes += bytes;
  n.region_bytes[e.region] += static_cast<uint32_t>(bytes);
}

NvmeNamespaceLimits NvmeTier::Impl::Limits(uint32_t ns) const {
  absl::MutexLock lock(&mu_);
  auto it = ns_.find(ns);
  return it == ns_.end() ? NvmeNamespaceLimits{} : it->second.limits;
}

// --- lookups ---

bool NvmeTier::Impl::Contains(uint32_t ns, const BlockKey& key) const {
  const uint32_t now_s = NowUnixSeconds();
  absl::MutexLock lock(&mu_);
  auto it = table_.find(TableKey(ns, key));
  return it != table_.end() && !Expired(it->second, now_s);
}

uint64_t NvmeTier::Impl::StoredLengthBound(uint32_t ns, const BlockKey& key) const {
  absl::MutexLock lock(&mu_);
  auto it = table_.find(TableKey(ns, key));
  if (it == table_.end() || it->second.record_units == 0) return 0;
  return uint64_t{it->second.record_units - 1u} * alignment_;  // the first unit is the header
}

size_t NvmeTier::Impl::LookupPrefix(uint32_t ns, std::span<const BlockKey> keys) {
  const uint32_t now_s = NowUnixSeconds();
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  while (n < keys.size()) {
    auto it = table_.find(TableKey(ns, keys[n]));
    if (it == table_.end() || Expired(it->second, now_s)) break;
    ++n;
  }
  for (TierCounters* c : {&counters_, NamespaceCounters(ns)}) {
    if (c == nullptr) continue;
    ++c->lookups;
    c->lookup_keys += keys.size();
    c->lookup_hit_keys += n;
  }
  return n;
}

// --- reads ---

std::vector<absl::StatusOr<NvmeReadResult>> NvmeTier::Impl::ReadBatch(
    uint32_t ns, std::span<const BlockKey> keys, std::span<const std::span<std::byte>> dsts) {
  struct Slot {
    BlockLocation loc;
    IoSegment segment;
    AlignedBytes staging;  // when dst cannot take the direct read
  };
  const size_t n = keys.size();
  std::vector<absl::StatusOr<NvmeReadResult>> results(n, absl::NotFoundError("not cached"));
  if (dsts.size() != n) {
    for (auto& r : results) {
      r = absl::InvalidArgumentError("ReadBatch: keys and dsts differ in number");
    }
    return results;
  }
  std::vector<Slot> slots(n);
  uint64_t expired = 0;
  uint64_t index_errors = 0;
  const uint32_t now_s = NowUnixSeconds();

  // 1. Which keys are cached, and where (the table, then the index for the full location).
  const auto lookup_start = std::chrono::steady_clock::now();
  std::vector<bool> present(n, false);
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < n; ++i) {
      auto it = table_.find(TableKey(ns, keys[i]));
      if (it == table_.end()) continue;
      if (Expired(it->second, now_s)) {
        ++expired;
        continue;
      }
      present[i] = true;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (!present[i]) continue;
    absl::StatusOr<BlockLocation> loc = index_->GetBlock(ns, keys[i]);
    present[i] = loc.ok();
    if (loc.ok()) {
      slots[i].loc = *loc;
    } else if (!absl::IsNotFound(loc.status())) {  // NotFound: removed or evicted meanwhile
      ++index_errors;
      results[i] = absl::NotFoundError(absl::StrCat("NVMe index: ", loc.status().message()));
    }
  }
  {
    // An entry of an older generation than its region's points at overwritten space.
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < n; ++i) {
      if (present[i] && (slots[i].loc.region >= sb_.region_count ||
                         log_->generation(slots[i].loc.region) != slots[i].loc.generation)) {
        present[i] = false;
      }
    }
  }
  const auto device_start = std::chrono::steady_clock::now();
  std::vector<IoOp> ops;
  std::vector<size_t> op_slot;
  ops.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (!present[i]) continue;
    Slot& s = slots[i];
    if (dsts[i].size() < s.loc.length) {
      results[i] = absl::InvalidArgumentError(absl::StrCat(
          "read buffer of ", dsts[i].size(), " bytes for a block of ", s.loc.length, " bytes"));
      continue;
    }
    const uint64_t read_bytes = nvme::RoundUp(s.loc.length, alignment_);
    const bool direct = (reinterpret_cast<uintptr_t>(dsts[i].data()) & (alignment_ - 1)) == 0 &&
                        dsts[i].size() >= read_bytes;
    if (direct) {
      s.segment = {dsts[i].data(), read_bytes};
    } else {
      s.staging = nvme::AllocateAligned(read_bytes, alignment_);
      s.segment = {s.staging.get(), read_bytes};
    }
    IoOp op;
    op.type = IoOp::Type::kRead;
    op.offset = RegionOffset(s.loc.region) + s.loc.offset + alignment_;
    op.segments = {&s.segment, 1};
    ops.push_back(op);
    op_slot.push_back(i);
  }

  // 2. All device reads in flight together; each block is verified (and copied out of its
  // staging buffer) as soon as it arrives, while the others are still being read.
  enum : uint8_t { kPending, kIoError, kBadChecksum, kGood };
  std::vector<uint8_t> outcome(ops.size(), kPending);
  std::atomic<uint64_t> verify_nanos{0};  // the thread pool engine verifies on its workers
  (void)device_->Submit(ops, [&](size_t k) {
    const size_t i = op_slot[k];
    const Slot& s = slots[i];
    if (!ops[k].status.ok()) {
      outcome[k] = kIoError;
      return;
    }
    const auto verify_start = std::chrono::steady_clock::now();
    const std::span<const std::byte> payload(s.segment.data, s.loc.length);
    const bool good = nvme::PayloadChecksum(ns, keys[i], payload) == s.loc.checksum;
    if (good && s.staging != nullptr) {
      std::memcpy(dsts[i].data(), s.staging.get(), s.loc.length);
    }
    outcome[k] = good ? kGood : kBadChecksum;
    verify_nanos.fetch_add(nvme::NanosSince(verify_start), std::memory_order_relaxed);
  });
  const uint64_t device_nanos = nvme::NanosSince(device_start);

  // 3. Count.
  uint64_t io_errors = 0, checksum_failures = 0, bytes_read = 0;
  std::vector<size_t> hit_slots;
  std::vector<size_t> suspect_keys;  // failed a check: stale (raced an eviction) or damaged
  for (size_t k = 0; k < ops.size(); ++k) {
    const size_t i = op_slot[k];
    Slot& s = slots[i];
    if (outcome[k] == kIoError) {
      ++io_errors;
      results[i] =
          absl::UnavailableError(absl::StrCat("NVMe read failed: ", ops[k].status.message()));
      continue;
    }
    bytes_read += s.segment.length;
    if (outcome[k] == kBadChecksum) {
      suspect_keys.push_back(i);
      continue;
    }
    const uint32_t expiry = s.loc.expiry_unix_s;
    results[i] =
        NvmeReadResult{s.loc.length, s.loc.codec,
                       expiry == 0 ? 0 : std::max<uint32_t>(1, expiry - std::min(expiry, now_s))};
    hit_slots.push_back(i);
  }

  absl::MutexLock lock(&mu_);
  nvme_.read_lookup_nanos += nvme::NanosBetween(lookup_start, device_start);
  // (Across ops of one batch, verification overlaps the device; subtracting it may undercount
  // the device's share of a batch, never a single read's.)
  nvme_.read_verify_nanos += verify_nanos.load();
  nvme_.read_device_nanos += device_nanos - std::min(device_nanos, verify_nanos.load());
  for (size_t i : suspect_keys) {
    const Slot& s = slots[i];
    // A region reclaimed while the read was in flight is an ordinary miss; a region still at
    // the entry's generation holds damaged bytes: count them and forget the block (its index
    // entry is dropped at the next start, when the generation no longer matches, or replaced
    // by the next write of the key).
    if (log_->generation(s.loc.region) == s.loc.generation) {
      ++checksum_failures;
      const uint64_t tk = TableKey(ns, keys[i]);
      auto it = table_.find(tk);
      if (it != table_.end() && it->second.region == s.loc.region &&
          uint64_t{it->second.offset_units} * alignment_ == s.loc.offset) {
        EraseLocked(ns, tk, it->second);
      }
      results[i] = absl::NotFoundError("NVMe record failed its checksum; not served");
    }
  }
  for (size_t i : hit_slots) {
    auto it = table_.find(TableKey(ns, keys[i]));
    if (it != table_.end() && it->second.hits < std::numeric_limits<uint16_t>::max()) {
      ++it->second.hits;
    }
  }
  uint64_t bytes_out = 0;
  for (size_t i : hit_slots) bytes_out += slots[i].loc.length;
  const uint64_t misses = n - hit_slots.size();
  for (TierCounters* c : {&counters_, NamespaceCounters(ns)}) {
    if (c == nullptr) continue;
    c->hits += hit_slots.size();
    c->misses += misses;
    c->bytes_out += bytes_out;
  }
  nvme_.expired += expired;
  nvme_.index_errors += index_errors;
  nvme_.io_errors += io_errors;
  nvme_.checksum_failures += checksum_failures;
  nvme_.flash_bytes_read += bytes_read;
  return results;
}

// --- stats ---

NvmeTierSnapshot NvmeTier::Impl::Snapshot() const {
  NvmeTierSnapshot s;
  s.rocksdb_memory_bytes = index_->MemoryBytes();
  absl::MutexLock lock(&mu_);
  s.region_bytes = sb_.region_bytes;
  s.regions = sb_.region_count;
  s.regions_in_use = log_->regions_in_use();
  s.alignment = alignment_;
  s.engine = std::string(device_->engine());
  s.admission_policy = std::string(admission_->Name());
  s.tier.capacity_bytes = uint64_t{sb_.region_count} * sb_.region_bytes;
  s.tier.used_bytes = log_->live_bytes();
  s.tier.blocks = table_.size();
  s.tier.counters = counters_;
  uint64_t region_map_bytes = 0;
  for (const auto& [id, n] : ns_) {
    s.tier.namespaces.push_back(NamespaceSnapshot{.namespace_id = id,
                                                  .block_bytes = n.block_bytes,
                                                  .blocks = n.blocks,
                                                  .used_bytes = n.used_bytes,
                                                  .quota_bytes = n.limits.quota_bytes,
                                                  .priority = n.limits.priority,
                                                  .counters = n.counters});
    region_map_bytes +=
        n.region_bytes.capacity() * (sizeof(std::pair<const uint32_t, uint32_t>) + 1);
  }
  std::sort(s.tier.namespaces.begin(), s.tier.namespaces.end(),
            [](const NamespaceSnapshot& a, const NamespaceSnapshot& b) {
              return a.namespace_id < b.namespace_id;
            });
  s.nvme = nvme_;
  // flat_hash_map: one slot (key + Entry) and one control byte per bucket; per namespace, its
  // fixed part and its map of live bytes per region.
  s.dram_index_bytes = table_.capacity() * (sizeof(std::pair<const uint64_t, Entry>) + 1) +
                       ns_.capacity() * (sizeof(std::pair<const uint32_t, Namespace>) + 1) +
                       region_map_bytes;
  s.recovery = recovery_;
  return s;
}

}  // namespace kvtier::tiers
