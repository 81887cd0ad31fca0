#include "nvme_placement.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kvtier/compression/codec.h"
#include "spdlog/spdlog.h"

namespace kvtier::server {
NvmePlacement::NvmePlacement(const NvmePlacementOptions& options, tiers::DramTier* dram,
                             tiers::NvmeTier* nvme,
                             std::unique_ptr<tiers::NvmeAdmissionPolicy> admission)
    : options_(options),
      encoder_(options.encoder != nullptr ? options.encoder
                                          : NewCpuBatchEncoder(options.compress_threads)),
      dram_(dram),
      nvme_(nvme),
      admission_(std::move(admission)) {
  if (admission_ == nullptr) admission_ = tiers::NewAdmitAllPolicy();
  dram_->SetEvictionListener(this);
  demoter_ = std::thread([this] { DemotionLoop(); });
}

NvmePlacement::~NvmePlacement() {
  dram_->SetEvictionListener(nullptr);
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  demoter_.join();
}

absl::Status NvmePlacement::AddNamespace(uint32_t ns, uint64_t block_bytes,
                                         std::optional<KvDtype> compress) {
  absl::Status s = nvme_->AddNamespace(ns, block_bytes);
  if (!s.ok()) return s;
  absl::MutexLock lock(&ns_mu_);
  NamespaceInfo& info = namespaces_[ns];
  info.block_bytes = block_bytes;
  info.compress = compress;
  return absl::OkStatus();
}

absl::Status NvmePlacement::SetLimits(uint32_t ns, const tiers::NvmeNamespaceLimits& limits) {
  // A namespace whose blocks do not fit a region is not cached on NVMe: nothing to limit.
  if (!Namespace(ns).has_value()) return absl::OkStatus();
  return nvme_->SetNamespaceLimits(ns, limits);
}

std::optional<NvmePlacement::NamespaceInfo> NvmePlacement::Namespace(uint32_t ns) const {
  absl::MutexLock lock(&ns_mu_);
  auto it = namespaces_.find(ns);
  if (it == namespaces_.end()) return std::nullopt;
  return it->second;
}

NvmePlacement::WrittenBytes NvmePlacement::Written(std::optional<uint32_t> ns) const {
  absl::MutexLock lock(&ns_mu_);
  WrittenBytes out;
  for (const auto& [id, info] : namespaces_) {
    if (ns.has_value() && id != *ns) continue;
    out.stored += info.written.stored;
    out.raw += info.written.raw;
  }
  return out;
}

void NvmePlacement::CountWritten(uint32_t ns, std::span<const std::span<const std::byte>> blocks,
                                 std::span<const tiers::BlockEncoding> encodings,
                                 std::span<const absl::Status> statuses) {
  WrittenBytes add;
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (!statuses[i].ok()) continue;
    add.stored += blocks[i].size();
    add.raw += encodings[i].codec != 0 ? encodings[i].raw_length : blocks[i].size();
  }
  absl::MutexLock lock(&ns_mu_);
  auto it = namespaces_.find(ns);
  if (it == namespaces_.end()) return;
  it->second.written.stored += add.stored;
  it->second.written.raw += add.raw;
}

namespace {

// A TTL for NVMe, which counts whole seconds: rounded up, so that a block never expires on
// flash before it would have in DRAM. 0 stays 0 (no TTL).
uint32_t TtlSeconds(int64_t nanos) {
  if (nanos <= 0) return 0;
  return static_cast<uint32_t>(
      std::min<int64_t>((nanos + 999'999'999) / 1'000'000'000, UINT32_MAX));
}

std::vector<uint8_t> Codecs(std::span<const tiers::BlockEncoding> encodings) {
  std::vector<uint8_t> out;
  out.reserve(encodings.size());
  for (const tiers::BlockEncoding& e : encodings) out.push_back(e.codec);
  return out;
}

// How a block read from NVMe into `bytes` is encoded, from its record's codec and, for kvz,
// the frame's header; nullopt for a codec this build does not know or a frame that does not
// fit the namespace (never served: the get misses, as for a failed checksum).
std::optional<tiers::BlockEncoding> EncodingOfRecord(const tiers::NvmeReadResult& read,
                                                     std::span<const std::byte> bytes,
                                                     uint64_t block_bytes) {
  const CodecId codec = static_cast<CodecId>(read.codec);
  if (codec == CodecId::kStored) return tiers::BlockEncoding{};
  if (codec != CodecId::kKvz) {
    spdlog::warn("NVMe record with codec {} ({}): not served", read.codec, CodecName(codec));
    return std::nullopt;
  }
  absl::StatusOr<FrameHeader> h = ReadFrameHeader(bytes.first(read.length));
  if (!h.ok() || h->frame_bytes != read.length || h->decompressed_bytes > block_bytes ||
      h->decompressed_bytes < read.length) {
    spdlog::warn("NVMe record with a kvz frame that does not fit its namespace: not served");
    return std::nullopt;
  }
  return tiers::BlockEncoding{.codec = read.codec, .raw_length = h->decompressed_bytes};
}

}  // namespace

void NvmePlacement::OnEvict(const tiers::EvictedBlock& block) {
  // Its bytes are on NVMe already (promoted from there, or written through).
  if (block.persisted) return;
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  const tiers::AdmissionRequest request{.namespace_id = block.ns,
                                        .key = block.key,
                                        .length = block.bytes.size(),
                                        .upper_tier_hits = block.hits};
  if (!admission_->Admit(request)) {
    admission_rejections_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (staged_bytes_ + block.bytes.size() > options_.demotion_buffer_bytes) {
    demotions_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  Staged staged{block.ns,
                block.key,
                std::make_unique_for_overwrite<std::byte[]>(block.bytes.size()),
                block.bytes.size(),
                TtlSeconds(block.ttl_left_nanos),
                block.encoding};
  std::memcpy(staged.bytes.get(), block.bytes.data(), block.bytes.size());
  staged_bytes_ += staged.length;
  ++pending_[PendingKey{block.ns, block.key}];
  queue_.push_back(std::move(staged));
}

void NvmePlacement::DemotionLoop() {
  std::vector<Staged> batch;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](NvmePlacement* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stop_ || !self->queue_.empty();
          },
          this));
      if (stop_) return;
      // One namespace per batch (a Write is per namespace), in queue order.
      const uint32_t ns = queue_.front().ns;
      uint64_t bytes = 0;
      while (!queue_.empty() && queue_.front().ns == ns && batch.size() < options_.batch_blocks &&
             (batch.empty() || bytes + queue_.front().length <= options_.batch_bytes)) {
        bytes += queue_.front().length;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    WriteBatch(batch);
    absl::MutexLock lock(&mu_);
    for (const Staged& s : batch) {
      staged_bytes_ -= s.length;
      auto it = pending_.find(PendingKey{s.ns, s.key});
      if (it != pending_.end() && --it->second == 0) pending_.erase(it);
    }
    written_.SignalAll();
    batch.clear();
  }
}

std::vector<std::unique_ptr<std::byte[]>> NvmePlacement::EncodeBlocks(
    KvDtype dtype, std::span<std::span<const std::byte>> blocks,
    std::span<tiers::BlockEncoding> encodings) const {
  const CodecOptions codec{.dtype = dtype};
  std::vector<size_t> which;
  std::vector<std::unique_ptr<std::byte[]>> frames;
  std::vector<CompressJob> jobs;
  for (size_t i = 0; i < blocks.size(); ++i) {
    // Encoded by the client already, or not whole elements (kvz would refuse it).
    if (encodings[i].codec != 0 || blocks[i].size() % KvDtypeBytes(dtype) != 0) continue;
    const size_t max = MaxCompressedSize(blocks[i].size(), codec);
    frames.push_back(std::make_unique_for_overwrite<std::byte[]>(max));
    jobs.push_back(CompressJob{.input = blocks[i], .output = {frames.back().get(), max}});
    which.push_back(i);
  }
  if (jobs.empty()) return frames;
  const absl::Time start = absl::Now();
  const absl::Status encoded = encoder_->Compress(jobs, codec);
  encode_nanos_.fetch_add(absl::ToInt64Nanoseconds(absl::Now() - start), std::memory_order_relaxed);
  if (absl::Status s = encoded; !s.ok()) {
    // Cannot happen for whole elements under 2 GiB; the blocks then go to flash as they are.
    spdlog::warn("demotion: kvz encoding failed, writing the blocks unencoded: {}", s.ToString());
    return {};
  }
  for (size_t j = 0; j < jobs.size(); ++j) {
    const size_t i = which[j];
    if (jobs[j].compressed_bytes >= blocks[i].size()) continue;  // does not pay: stored
    encodings[i] = tiers::BlockEncoding{.codec = static_cast<uint8_t>(CodecId::kKvz),
                                        .raw_length = blocks[i].size()};
    blocks[i] = {frames[j].get(), jobs[j].compressed_bytes};
  }
  return frames;
}

void NvmePlacement::WriteBatch(std::vector<Staged>& batch) {
  const uint32_t ns = batch.front().ns;
  std::vector<BlockKey> keys;
  std::vector<std::span<const std::byte>> blocks;
  std::vector<tiers::BlockEncoding> encodings;
  // A key evicted twice while staged (put again in between) is written once: the last copy.
  absl::flat_hash_map<BlockKey, size_t> last;
  std::vector<uint32_t> ttls;
  for (size_t i = 0; i < batch.size(); ++i) last[batch[i].key] = i;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (last[batch[i].key] != i) continue;
    keys.push_back(batch[i].key);
    blocks.emplace_back(batch[i].bytes.get(), batch[i].length);
    ttls.push_back(batch[i].ttl_seconds);
    encodings.push_back(batch[i].encoding);
  }
  // The frames stay alive until the write is durable.
  std::vector<std::unique_ptr<std::byte[]>> frames;
  if (std::optional<NamespaceInfo> info = Namespace(ns); info && info->compress) {
    frames = EncodeBlocks(*info->compress, blocks, encodings);
  }
  const std::vector<uint8_t> codecs = Codecs(encodings);
  const std::vector<absl::Status> statuses =
      nvme_->Write(ns, keys, blocks,
                   tiers::NvmeWriteOptions{.source = tiers::NvmeWriteOptions::Source::kDemotion,
                                           .codecs = codecs,
                                           .ttls_seconds = ttls});
  CountWritten(ns, blocks, encodings, statuses);
  uint64_t ok = 0;
  for (const absl::Status& s : statuses) ok += s.ok() ? 1 : 0;
  demotions_.fetch_add(ok, std::memory_order_relaxed);
  demotions_dropped_.fetch_add(statuses.size() - ok, std::memory_order_relaxed);
  if (ok < statuses.size()) {
    for (const absl::Status& s : statuses) {
      if (s.ok()) continue;
      spdlog::warn("demotion of {} block(s) to NVMe failed: {}", statuses.size() - ok,
                   s.ToString());
      break;
    }
  }
}

std::vector<proto::Tier> NvmePlacement::Lookup(uint32_t ns, std::span<const BlockKey> keys) {
  const size_t in_dram = dram_->LookupPrefix(ns, keys);
  std::vector<proto::Tier> tiers(in_dram, proto::TIER_DRAM);
  if (in_dram == keys.size()) return tiers;
  // Past the DRAM prefix, a block may be on NVMe, or back in DRAM after a gap.
  const std::span<const BlockKey> rest = keys.subspan(in_dram);
  const std::vector<bool> present = dram_->Present(ns, rest);
  for (size_t i = 0; i < rest.size(); ++i) {
    if (present[i]) {
      tiers.push_back(proto::TIER_DRAM);
    } else if (nvme_->Contains(ns, rest[i])) {
      tiers.push_back(proto::TIER_NVME);
    } else {
      break;
    }
  }
  return tiers;
}

bool NvmePlacement::NeedsPromotion(uint32_t ns, std::span<const BlockKey> keys) {
  const std::vector<bool> present = dram_->Present(ns, keys);
  for (size_t i = 0; i < keys.size(); ++i) {
    // Present: another promotion committed the block since the get missed it. Staged before
    // NVMe: a demotion leaves the staging set only after its block is indexed on NVMe, so
    // asking in this order never sees the block in neither place.
    if (present[i] || IsStaged(ns, keys[i]) || nvme_->Contains(ns, keys[i])) return true;
  }
  return false;
}

bool NvmePlacement::IsStaged(uint32_t ns, const BlockKey& key) const {
  absl::MutexLock lock(&mu_);
  return pending_.contains(PendingKey{ns, key});
}

void NvmePlacement::AwaitStaged(uint32_t ns, std::span<const BlockKey> keys,
                                absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  auto staged = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const BlockKey& k : keys) {
      if (pending_.contains(PendingKey{ns, k})) return true;
    }
    return false;
  };
  while (staged() && !written_.WaitWithDeadline(&mu_, deadline)) {
  }
}

std::vector<bool> NvmePlacement::Promote(uint32_t ns, std::span<const BlockKey> keys,
                                         Reader* reader) {
  std::vector<bool> promoted(keys.size(), false);
  if (reader != nullptr) {
    reader->slots.assign(keys.size(), std::nullopt);
    reader->elsewhere = 0;
  }
  uint64_t block_bytes = 0;
  {
    absl::MutexLock lock(&ns_mu_);
    auto it = namespaces_.find(ns);
    if (it == namespaces_.end()) return promoted;
    block_bytes = it->second.block_bytes;
  }
  std::vector<bool> present = dram_->Present(ns, keys);
  if (reader != nullptr) reader->elsewhere = std::count(present.begin(), present.end(), true);
  // A block evicted a moment ago may still be on its way to flash (staged): wait for that
  // write (one batch, milliseconds) so that it can be read back rather than missed.
  std::vector<BlockKey> staged;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!present[i] && !nvme_->Contains(ns, keys[i]) && IsStaged(ns, keys[i])) {
      staged.push_back(keys[i]);
    }
  }
  if (!staged.empty()) AwaitStaged(ns, staged, absl::Milliseconds(200));
  std::vector<size_t> to_read;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!present[i] && nvme_->Contains(ns, keys[i])) to_read.push_back(i);
  }
  const uint64_t page = dram_->page_bytes();
  // Two rounds at most: when a read fails (a checksum, a block evicted from NVMe meanwhile),
  // the put lease is abandoned whole -- its failed slot holds garbage and must never be
  // committed -- and the blocks that did read are reserved and read once more.
  for (int round = 0; round < 2 && !to_read.empty(); ++round) {
    std::vector<BlockKey> want;
    for (size_t i : to_read) want.push_back(keys[i]);
    // A slot that fits the record: an encoded block takes an encoded-size slot (in a
    // compressed namespace; elsewhere every slot is block_bytes).
    std::vector<uint64_t> lengths;
    for (const BlockKey& k : want) {
      const uint64_t bound = nvme_->StoredLengthBound(ns, k);
      lengths.push_back(bound == 0 ? block_bytes : std::min(block_bytes, bound));
    }
    tiers::LeaseGrant grant =
        dram_->ReservePut(kPlacementOwner, ns, want, lengths, {.persisted = true});
    for (size_t j = 0; round == 0 && j < want.size(); ++j) {
      // Being written into DRAM by another promotion (a prefetch, a get): left to it.
      if (grant.codes[j] == absl::StatusCode::kAlreadyExists && reader != nullptr) {
        ++reader->elsewhere;
      }
    }
    if (grant.lease_id == 0) break;
    std::vector<size_t> granted;  // positions in `want`
    std::vector<BlockKey> read_keys;
    std::vector<std::span<std::byte>> dsts;
    for (size_t j = 0; j < want.size(); ++j) {
      if (grant.codes[j] != absl::StatusCode::kOk) continue;
      granted.push_back(j);
      read_keys.push_back(want[j]);
      dsts.emplace_back(dram_->arena_base() + grant.slots[j].offset,
                        (grant.slots[j].length + page - 1) / page * page);
    }
    const std::vector<absl::StatusOr<tiers::NvmeReadResult>> reads =
        nvme_->ReadBatch(ns, read_keys, dsts);
    std::vector<uint64_t> final_lengths;
    std::vector<int64_t> ttls;  // what is left of each block's TTL on NVMe
    std::vector<tiers::BlockEncoding> encodings;
    std::vector<size_t> next;
    bool all_read = true;
    for (size_t k = 0; k < reads.size(); ++k) {
      std::optional<tiers::BlockEncoding> encoding;
      if (reads[k].ok() && reads[k]->length <= grant.slots[granted[k]].length) {
        encoding = EncodingOfRecord(*reads[k], dsts[k], block_bytes);
      }
      if (encoding.has_value()) {
        encodings.push_back(*encoding);
        final_lengths.push_back(reads[k]->length);
        ttls.push_back(int64_t{reads[k]->ttl_left_seconds} * 1'000'000'000);
        next.push_back(to_read[granted[k]]);
      } else {
        all_read = false;
      }
    }
    if (!all_read) {
      (void)dram_->Release(kPlacementOwner, grant.lease_id);
      to_read = std::move(next);
      continue;
    }
    tiers::ReadHandoff handoff;
    if (reader != nullptr) handoff = {.owner = reader->owner, .lease = reader->lease};
    absl::StatusOr<std::vector<absl::StatusCode>> codes =
        dram_->CommitPut(kPlacementOwner, grant.lease_id,
                         {.persisted = true,
                          .lengths = final_lengths,
                          .ttls = ttls,
                          .encodings = encodings,
                          .read = reader != nullptr ? &handoff : nullptr});
    if (codes.ok()) {
      for (size_t k = 0; k < codes->size(); ++k) {
        if ((*codes)[k] != absl::StatusCode::kOk) continue;
        const size_t i = to_read[granted[k]];
        promoted[i] = true;
        promotions_.fetch_add(1, std::memory_order_relaxed);
        if (reader != nullptr && !handoff.slots.empty()) reader->slots[i] = handoff.slots[k];
      }
      if (reader != nullptr) reader->lease = handoff.lease;
    }
    break;
  }
  return promoted;
}

proto::PrefetchReply NvmePlacement::PlanPrefetch(uint32_t ns, std::span<const BlockKey> keys,
                                                 uint32_t max_in_flight,
                                                 std::vector<BlockKey>* to_promote) {
  prefetch_requests_.fetch_add(1, std::memory_order_relaxed);
  proto::PrefetchReply reply;
  const std::vector<bool> present = dram_->Touch(ns, keys);  // a hint is a sign of reuse
  std::vector<BlockKey> on_nvme;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (present[i]) {
      reply.set_in_dram(reply.in_dram() + 1);
    } else if (nvme_->Contains(ns, keys[i])) {
      on_nvme.push_back(keys[i]);
    } else {
      reply.set_not_cached(reply.not_cached() + 1);
    }
  }
  // Reserve room under the bound (a CAS loop: concurrent plans must not overshoot it).
  uint64_t in_flight = prefetch_in_flight_.load(std::memory_order_relaxed);
  uint64_t take = 0;
  do {
    take = std::min<uint64_t>(on_nvme.size(),
                              max_in_flight > in_flight ? max_in_flight - in_flight : 0);
  } while (take > 0 && !prefetch_in_flight_.compare_exchange_weak(in_flight, in_flight + take));
  to_promote->assign(on_nvme.begin(), on_nvme.begin() + static_cast<ptrdiff_t>(take));
  reply.set_queued(static_cast<uint32_t>(take));
  reply.set_dropped(static_cast<uint32_t>(on_nvme.size() - take));
  prefetch_dropped_.fetch_add(on_nvme.size() - take, std::memory_order_relaxed);
  return reply;
}

void NvmePlacement::RunPrefetch(uint32_t ns, std::span<const BlockKey> keys) {
  const std::vector<bool> promoted = Promote(ns, keys);
  uint64_t n = 0;
  for (bool p : promoted) n += p ? 1 : 0;
  prefetch_promoted_.fetch_add(n, std::memory_order_relaxed);
  prefetch_in_flight_.fetch_sub(keys.size(), std::memory_order_relaxed);
}

absl::StatusOr<std::vector<absl::StatusCode>> NvmePlacement::WriteThroughAndCommit(
    tiers::OwnerId owner, tiers::LeaseId lease) {
  absl::StatusOr<tiers::PutLeaseBlocks> blocks = dram_->GetPutLeaseBlocks(owner, lease);
  if (!blocks.ok()) {
    // Expired or unknown: CommitPut gives the same answer the client would get without NVMe.
    return dram_->CommitPut(owner, lease);
  }
  std::vector<std::span<const std::byte>> spans;
  std::vector<tiers::BlockEncoding> encodings;
  spans.reserve(blocks->slots.size());
  for (const tiers::SlotRef& slot : blocks->slots) {
    spans.emplace_back(dram_->arena_base() + slot.offset, slot.length);
    encodings.push_back(slot.encoding);
  }
  const std::vector<uint8_t> codecs = Codecs(encodings);
  const std::vector<absl::Status> written =
      nvme_->Write(blocks->ns, blocks->keys, spans,
                   tiers::NvmeWriteOptions{.source = tiers::NvmeWriteOptions::Source::kWriteThrough,
                                           .codecs = codecs,
                                           .ttl_seconds = TtlSeconds(blocks->ttl_nanos)});
  CountWritten(blocks->ns, spans, encodings, written);
  bool all = true;
  for (const absl::Status& s : written) all &= s.ok();
  if (all) {
    absl::StatusOr<std::vector<absl::StatusCode>> codes =
        dram_->CommitPut(owner, lease, {.persisted = true});
    // The lease can run out while the device writes (a slow or failing one): the client is
    // then told that nothing was stored (DEADLINE_EXCEEDED), so NVMe must not keep the blocks
    // for a later get either. The lease no longer holds the keys in DRAM, so a get may have
    // promoted them meanwhile: they leave both tiers.
    std::vector<BlockKey> undo;
    uint64_t committed = 0;
    for (size_t i = 0; i < blocks->keys.size(); ++i) {
      if (codes.ok() && i < codes->size() && (*codes)[i] == absl::StatusCode::kOk) {
        ++committed;
      } else {
        undo.push_back(blocks->keys[i]);
      }
    }
    write_throughs_.fetch_add(committed, std::memory_order_relaxed);
    if (!undo.empty()) {
      spdlog::warn(
          "write-through put of {} block(s): the put lease expired (or the keys were removed) "
          "while NVMe wrote them; removed again",
          blocks->keys.size());
      UndoWriteThrough(blocks->ns, undo, /*dram_too=*/true);
    }
    return codes;
  }
  // All or nothing: nothing unacknowledged may stay readable. What did reach NVMe leaves it
  // while the put lease still holds the keys in DRAM, so that no get can promote it between
  // the two.
  write_through_failures_.fetch_add(written.size(), std::memory_order_relaxed);
  std::vector<BlockKey> undo;
  std::vector<absl::StatusCode> codes;
  const absl::Status* failure = nullptr;
  for (size_t i = 0; i < written.size(); ++i) {
    codes.push_back(written[i].ok() ? absl::StatusCode::kAborted : written[i].code());
    if (written[i].ok()) undo.push_back(blocks->keys[i]);
    if (!written[i].ok() && failure == nullptr) failure = &written[i];
  }
  spdlog::warn("write-through put of {} block(s) failed and was abandoned, nothing stored: {}",
               written.size(), failure->ToString());
  if (!undo.empty()) UndoWriteThrough(blocks->ns, undo, /*dram_too=*/false);
  (void)dram_->Release(owner, lease);
  return codes;
}

void NvmePlacement::UndoWriteThrough(uint32_t ns, std::span<const BlockKey> keys, bool dram_too) {
  // NVMe first: once the blocks are gone from it, no new promotion can bring them to DRAM;
  // one already reading them is dropped by the DRAM remove (DramTier::Remove aborts blocks
  // still being written) or, committed before it, removed by it.
  const std::vector<absl::Status> removed = nvme_->Remove(ns, keys);
  if (dram_too) (void)dram_->Remove(ns, keys);
  for (const absl::Status& s : removed) {
    if (s.ok() || absl::IsNotFound(s)) continue;
    spdlog::error(
        "write-through: {} block(s) of an unacknowledged put could not be removed from NVMe "
        "({}); a get may serve them",
        keys.size(), s.ToString());
    return;
  }
}

std::vector<absl::StatusCode> NvmePlacement::Remove(uint32_t ns, std::span<const BlockKey> keys) {
  std::vector<absl::StatusCode> codes = dram_->Remove(ns, keys);
  {
    // A demotion staged before this remove must land before the NVMe remove, or it would
    // bring the block back.
    absl::MutexLock lock(&mu_);
    auto staged = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const BlockKey& k : keys) {
        if (pending_.contains(PendingKey{ns, k})) return true;
      }
      return false;
    };
    while (staged()) written_.Wait(&mu_);
  }
  const std::vector<absl::Status> removed = nvme_->Remove(ns, keys);
  // A get may have started promoting a block from NVMe after the DRAM remove above and before
  // the one from NVMe: removed once more, it is gone (committed meanwhile) or its commit is
  // dropped (still being written). After this no promotion can find the block.
  const std::vector<absl::StatusCode> again = dram_->Remove(ns, keys);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (removed[i].ok() || again[i] == absl::StatusCode::kOk) {
      codes[i] = absl::StatusCode::kOk;
    } else if (!absl::IsNotFound(removed[i])) {
      codes[i] = absl::StatusCode::kUnavailable;
    }
  }
  return codes;
}

std::vector<absl::StatusCode> NvmePlacement::SetPinned(uint32_t ns, std::span<const BlockKey> keys,
                                                       bool pinned) {
  std::vector<absl::StatusCode> codes;
  for (const absl::Status& s : nvme_->SetPinned(ns, keys, pinned)) codes.push_back(s.code());
  return codes;
}

bool NvmePlacement::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(
                                   +[](NvmePlacement* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                        self->mu_) { return self->staged_bytes_ == 0; },
                                   this),
                               deadline);
}

NvmePlacement::SaveReport NvmePlacement::SaveDram(absl::Time deadline) {
  SaveReport report;
  std::vector<tiers::BlockListing> blocks = dram_->ListBlocks();
  std::erase_if(blocks, [](const tiers::BlockListing& b) { return b.persisted; });
  report.blocks = blocks.size();
  // Saved most recently used first, a namespace's blocks would drop its own hotter ones once
  // they fill its NVMe quota: so a namespace's save stops at its quota (each saved block still
  // drops older records from flash, as a demotion does).
  absl::flat_hash_map<uint32_t, uint64_t> quota_left;
  std::erase_if(blocks, [&](const tiers::BlockListing& b) {
    const uint64_t quota = nvme_->Limits(b.ns).quota_bytes;
    if (quota == 0) return false;
    auto [left, inserted] = quota_left.try_emplace(b.ns, quota);
    const uint64_t record_bytes = nvme_->DeviceBytes(b.length);
    if (record_bytes > left->second) return true;
    left->second -= record_bytes;
    return false;
  });
  report.over_quota = report.blocks - blocks.size();
  // Every record of this save lands in a region at or after the mark.
  const uint64_t mark = nvme_->LogMark();
  // Most recently used first, one namespace per write: group consecutive runs.
  size_t i = 0;
  bool full = false;
  while (i < blocks.size() && !full && absl::Now() < deadline) {
    const uint32_t ns = blocks[i].ns;
    std::vector<BlockKey> keys;
    std::vector<std::span<const std::byte>> spans;
    std::vector<uint32_t> ttls;
    std::vector<tiers::BlockEncoding> encodings;
    uint64_t bytes = 0;
    while (i < blocks.size() && blocks[i].ns == ns && keys.size() < options_.batch_blocks &&
           (keys.empty() || bytes + blocks[i].length <= options_.batch_bytes)) {
      keys.push_back(blocks[i].key);
      encodings.push_back(blocks[i].encoding);
      ttls.push_back(TtlSeconds(blocks[i].ttl_left_nanos));
      spans.emplace_back(dram_->arena_base() + blocks[i].offset, blocks[i].length);
      bytes += blocks[i].length;
      ++i;
    }
    const std::vector<uint8_t> codecs = Codecs(encodings);
    const std::vector<absl::Status> statuses =
        nvme_->Write(ns, keys, spans,
                     tiers::NvmeWriteOptions{.source = tiers::NvmeWriteOptions::Source::kShutdown,
                                             .codecs = codecs,
                                             .ttls_seconds = ttls,
                                             .keep_from = mark});
    CountWritten(ns, spans, encodings, statuses);
    for (const absl::Status& s : statuses) {
      if (s.ok()) {
        ++report.saved;
      } else if (absl::IsResourceExhausted(s)) {
        // Full of this save's blocks (or of pinned ones, or ENOSPC): the colder blocks still
        // to come would only push hotter ones out, whatever their namespace. (Not a quota:
        // the blocks were kept within their quotas above, and the save writes no pinned
        // blocks, which are the only ones a quota refuses at commit.)
        ++report.no_room;
        full = true;
      } else if (report.failed++ == 0) {
        report.first_error = s.ToString();
      }
    }
  }
  (full ? report.no_room : report.out_of_time) += blocks.size() - i;
  shutdown_saved_.fetch_add(report.saved, std::memory_order_relaxed);
  return report;
}

void NvmePlacement::FillStats(const tiers::NvmeTierSnapshot& s, proto::NvmeStats* out) const {
  out->set_promotions(promotions_.load(std::memory_order_relaxed));
  out->set_demotions(demotions_.load(std::memory_order_relaxed));
  out->set_demotions_dropped(demotions_dropped_.load(std::memory_order_relaxed));
  out->set_admission_rejections(admission_rejections_.load(std::memory_order_relaxed));
  out->set_write_throughs(write_throughs_.load(std::memory_order_relaxed));
  out->set_write_through_failures(write_through_failures_.load(std::memory_order_relaxed));
  out->set_shutdown_saved(shutdown_saved_.load(std::memory_order_relaxed));
  out->set_checksum_failures(s.nvme.checksum_failures);
  out->set_io_errors(s.nvme.io_errors);
  out->set_index_errors(s.nvme.index_errors);
  out->set_region_evictions(s.nvme.region_evictions);
  out->set_reclaimed_ahead(s.nvme.reclaimed_ahead);
  out->set_reclaim_stall_ms(
      (s.nvme.reclaim_wait_nanos + s.nvme.reclaim_list_nanos + s.nvme.reclaim_commit_nanos) /
      1'000'000);
  out->set_evicted_blocks(s.nvme.evicted_blocks);
  out->set_reinserted_blocks(s.nvme.reinserted_blocks);
  out->set_flash_bytes_written(s.nvme.flash_bytes_written);
  out->set_flash_bytes_read(s.nvme.flash_bytes_read);
  out->set_expired(s.nvme.expired);
  out->set_engine(s.engine);
  out->set_region_bytes(s.region_bytes);
  out->set_regions(s.regions);
  out->set_regions_in_use(s.regions_in_use);
  out->set_dram_index_bytes(s.dram_index_bytes);
  out->set_rocksdb_memory_bytes(s.rocksdb_memory_bytes);
  out->set_blocks_recovered(s.recovery.blocks_recovered);
  out->set_index_rebuilt(s.recovery.index_rebuilt);
  out->set_startup_ms(static_cast<uint64_t>(s.recovery.startup_nanos / 1'000'000));
  out->set_prefetch_requests(prefetch_requests_.load(std::memory_order_relaxed));
  out->set_prefetch_promoted(prefetch_promoted_.load(std::memory_order_relaxed));
  out->set_prefetch_dropped(prefetch_dropped_.load(std::memory_order_relaxed));
  out->set_quota_drops(s.nvme.quota_drops);
  out->set_quota_rejections(s.nvme.quota_rejections);
  out->set_demotion_encoder(encoder_->Describe());
  out->set_demotion_encode_ms(encode_nanos_.load(std::memory_order_relaxed) / 1'000'000);
  absl::MutexLock lock(&mu_);
  out->set_admission_policy(std::string(admission_->Name()));
  out->set_demotion_queue_bytes(staged_bytes_);
}

}  // namespace kvtier::server
