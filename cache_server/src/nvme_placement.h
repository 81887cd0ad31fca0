// NvmePlacement: how blocks move between the DRAM tier and the NVMe tier inside kvtierd.
//
//   demotion     DRAM evicts a block -> OnEvict copies it into a bounded staging buffer (under
//                the DRAM tier's lock: a memcpy, no I/O) if the admission policy takes it ->
//                the demotion thread writes staged blocks to NVMe in batches (one fdatasync and
//                one synced index write per batch), off the request path. When the staging
//                buffer is full the block is dropped and counted: puts never wait for flash.
//                Blocks whose exact bytes are on NVMe already (promoted from it, written
//                through) are not written again.
//   promotion    a get of blocks that are on NVMe but not in DRAM reserves DRAM slots, reads
//                the records straight into them (O_DIRECT, registered buffers where the kernel
//                allows), verifies their checksums and commits them, marked persisted; the get
//                is then served from DRAM like any other (the reply says TIER_NVME for them).
//   write-through (option) a put's blocks are written to NVMe from their reserved DRAM slots
//                before the DRAM commit and the acknowledgement: all of a put's blocks, or none
//                (a failed NVMe write abandons the put and removes what did reach NVMe).
//   remove       removes from both tiers; waits for staged demotions of the same keys first, so
//                that a demotion queued before the remove cannot bring the block back.
//   shutdown     Drain writes what is staged, then SaveDram writes DRAM blocks not yet on NVMe,
//                most recently used first, until the time budget runs out (or, per namespace,
//                its NVMe quota is filled).
//   compression  in a namespace registered with a dtype to compress (COMPRESSION_KVZ), the
//                demotion thread encodes stored blocks with kvz before writing them (a
//                BatchEncoder: the CPU codec, or a GPU where the daemon has one), and keeps the
//                encoding only where it is smaller. Blocks already encoded
//                (by the client) go to flash as they are, as do write-through and shutdown
//                writes (on the put's path and against a time budget: no encoding there).
//                Every record keeps its codec; a promotion brings it back to DRAM with the
//                block, in a slot of about the encoded size, and the get serves the frame.
//
// Admission is decided here, before the copy (the NVMe tier is created admitting everything),
// so that a refused block costs no memcpy under the DRAM lock.
//
// Promote, WriteThroughAndCommit, Remove, SetLimits, Drain and SaveDram block on device or index
// I/O: the daemon runs them on its NVMe threads, never on a network thread. Lookup never does
// I/O.
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kvtier.pb.h"
#include "kvtier/compression/batch_encoder.h"
#include "kvtier/compression/kv_codec.h"
#include "kvtier/tiers/dram_tier.h"
#include "kvtier/tiers/nvme_admission.h"
#include "kvtier/tiers/nvme_tier.h"

namespace kvtier::server {

// The DRAM lease owner the daemon uses for its own copies (promotions). Connection ids count
// up from 1 and never reach it.
inline constexpr tiers::OwnerId kPlacementOwner = ~tiers::OwnerId{0};

struct NvmePlacementOptions {
  uint64_t demotion_buffer_bytes = 256ull << 20;
  // Blocks and bytes per demotion write batch.
  size_t batch_blocks = 64;
  uint64_t batch_bytes = 32ull << 20;
  // What encodes a demotion batch of a compressed namespace (batch_encoder.h; a GPU one writes
  // the same bytes). Null (default): the CPU codec on compress_threads threads.
  std::shared_ptr<BatchEncoder> encoder;
  // Threads of the default CPU encoder (the demotion thread included). Default 2.
  int compress_threads = 2;
};

class NvmePlacement final : public tiers::EvictionListener {
 public:
  // Registers itself as `dram`'s eviction listener and starts the demotion thread. `admission`
  // null: admit every demoted block. `dram` and `nvme` must outlive it.
  NvmePlacement(const NvmePlacementOptions& options, tiers::DramTier* dram, tiers::NvmeTier* nvme,
                std::unique_ptr<tiers::NvmeAdmissionPolicy> admission);
  // Unregisters, then stops the demotion thread; blocks still staged are dropped (call Drain
  // first to keep them).
  ~NvmePlacement() override;
  NvmePlacement(const NvmePlacement&) = delete;
  NvmePlacement& operator=(const NvmePlacement&) = delete;

  void OnEvict(const tiers::EvictedBlock& block) override;

  // Registers a namespace with the NVMe tier (a synced index write) and remembers its block
  // size for promotions and, when `compress` is set, the dtype its demotions are encoded for.
  absl::Status AddNamespace(uint32_t ns, uint64_t block_bytes,
                            std::optional<KvDtype> compress = std::nullopt);

  // Sets the namespace's NVMe quota and priority (NvmeTier::SetNamespaceLimits; a lowered quota
  // drops records at once). OK and nothing done for a namespace not cached on NVMe. Blocks on
  // a synced index write.
  absl::Status SetLimits(uint32_t ns, const tiers::NvmeNamespaceLimits& limits);

  // Stored and original bytes of the blocks this placement wrote to NVMe since it started.
  struct WrittenBytes {
    uint64_t stored = 0;
    uint64_t raw = 0;
  };
  // Of one namespace, or (nullopt) of all.
  WrittenBytes Written(std::optional<uint32_t> ns) const;

  // Where each block of the longest prefix cached in either tier is: counts the DRAM tier's
  // lookup statistics; no I/O.
  std::vector<proto::Tier> Lookup(uint32_t ns, std::span<const BlockKey> keys);

  // Whether a get that missed `keys` in DRAM may still find some (no I/O), and so needs
  // Promote: they are on NVMe or on their way there, or in DRAM by now (another promotion
  // committed them since the miss).
  bool NeedsPromotion(uint32_t ns, std::span<const BlockKey> keys);
  // The get a promotion reads for: the blocks it promotes are pinned under the get's read
  // lease as they are committed (tiers::ReadHandoff), so that other clients' puts and
  // promotions cannot evict them before the get copies them out.
  struct Reader {
    uint64_t owner = 0;
    uint64_t lease = 0;  // in: the get's read lease, or 0; out: the lease holding the blocks
    std::vector<std::optional<tiers::SlotRef>> slots;  // out: keys[i]'s slot when pinned here
    // Out: blocks in DRAM already, or being written into DRAM by another promotion right now:
    // the get pins them with ExtendRead (once committed).
    size_t elsewhere = 0;
  };
  // Reads the blocks among `keys` that are on NVMe and not in DRAM into DRAM. promoted[i] says
  // whether keys[i] was. A block that another promotion (a prefetch, another get) is writing
  // into DRAM right now is left to it. Blocks on device reads.
  std::vector<bool> Promote(uint32_t ns, std::span<const BlockKey> keys, Reader* reader = nullptr);

  // Prefetch, first half (no I/O): sorts `keys` into in DRAM, on NVMe only, and in no tier, and
  // admits the NVMe ones while fewer than `max_in_flight` prefetched keys are being promoted;
  // the rest are dropped. `*to_promote` gets the admitted keys: pass them to RunPrefetch (on an
  // NVMe thread), which must be called exactly once for every non-empty result.
  proto::PrefetchReply PlanPrefetch(uint32_t ns, std::span<const BlockKey> keys,
                                    uint32_t max_in_flight, std::vector<BlockKey>* to_promote);
  // Prefetch, second half: promotes the keys (blocking on device reads).
  void RunPrefetch(uint32_t ns, std::span<const BlockKey> keys);

  // Write-through: writes the blocks of `owner`'s put lease to NVMe, then commits them in DRAM
  // (persisted). When a block cannot be written (EIO, a torn write, a failed fdatasync, a full
  // device), the whole put is abandoned: that block's code is the NVMe error
  // (kResourceExhausted: device full; kUnavailable: I/O) and the others' kAborted; what did
  // reach NVMe is removed again, and the blocks count in write_through_failures. When the lease
  // expires while NVMe writes (kDeadlineExceeded from the commit), the blocks are removed from
  // both tiers. Errors as DramTier::CommitPut. Blocks on device writes.
  absl::StatusOr<std::vector<absl::StatusCode>> WriteThroughAndCommit(tiers::OwnerId owner,
                                                                      tiers::LeaseId lease);

  // Pins or unpins the blocks held on NVMe: kOk or kNotFound per key (kUnavailable when the
  // index write failed). Blocks on a synced index write.
  std::vector<absl::StatusCode> SetPinned(uint32_t ns, std::span<const BlockKey> keys, bool pinned);

  // Removes from both tiers: kOk when either held the block, kNotFound when neither did,
  // kUnavailable when the NVMe index could not be updated (the block may come back from NVMe).
  std::vector<absl::StatusCode> Remove(uint32_t ns, std::span<const BlockKey> keys);

  // Waits until the staged demotions are written, or until `deadline`. True when drained.
  bool Drain(absl::Time deadline);
  // What SaveDram did with the DRAM blocks not on NVMe yet. Invariant (tested):
  // blocks == saved + failed + over_quota + no_room + out_of_time.
  struct SaveReport {
    uint64_t blocks = 0;       // DRAM blocks not on NVMe yet when the save began
    uint64_t saved = 0;        // durable and indexed on NVMe: served after a restart
    uint64_t failed = 0;       // refused by NVMe (I/O error): lost
    uint64_t over_quota = 0;   // left out: their namespace's NVMe quota was full: lost
    uint64_t no_room = 0;      // left out: NVMe is full of what this save wrote (or full): lost
    uint64_t out_of_time = 0;  // left out: the time budget ran out first: lost
    std::string first_error;   // of the failed ones, if any
  };
  // Writes DRAM blocks not on NVMe yet, most recently used first, until `deadline` (checked
  // before each write batch: the batch in flight at the deadline finishes, at most
  // NvmePlacementOptions::batch_blocks / batch_bytes) or until NVMe could only take more by
  // reclaiming regions this save wrote (NvmeWriteOptions::keep_from: the blocks saved first are
  // the hottest, and must not make room for colder ones). Call only once the DRAM tier serves
  // no more requests.
  SaveReport SaveDram(absl::Time deadline);

  // This layer's counters and the NVMe tier's figures (from `nvme`, a snapshot of it).
  void FillStats(const tiers::NvmeTierSnapshot& nvme, proto::NvmeStats* out) const;
  tiers::NvmeTierSnapshot NvmeSnapshot() const { return nvme_->Snapshot(); }

 private:
  struct Staged {
    uint32_t ns;
    BlockKey key;
    std::unique_ptr<std::byte[]> bytes;
    uint64_t length;
    uint32_t ttl_seconds;  // what is left of its TTL; 0: none
    tiers::BlockEncoding encoding;
  };
  struct NamespaceInfo {
    uint64_t block_bytes = 0;
    std::optional<KvDtype> compress;
    WrittenBytes written;
  };
  struct PendingKey {
    uint32_t ns;
    BlockKey key;
    template <typename H>
    friend H AbslHashValue(H h, const PendingKey& k) {
      return H::combine(std::move(h), k.ns, k.key);
    }
    friend bool operator==(const PendingKey&, const PendingKey&) = default;
  };

  void DemotionLoop();
  // Removes the blocks of an unacknowledged write-through put from NVMe (and from DRAM too
  // when `dram_too`: the put lease no longer keeps promotions out). Logs what it cannot remove.
  void UndoWriteThrough(uint32_t ns, std::span<const BlockKey> keys, bool dram_too);
  // Whether a demotion of the block is staged or being written.
  bool IsStaged(uint32_t ns, const BlockKey& key) const;
  // Waits until no demotion of `keys` is staged, or `timeout`.
  void AwaitStaged(uint32_t ns, std::span<const BlockKey> keys, absl::Duration timeout);
  // Writes one batch of one namespace; returns when it is durable.
  void WriteBatch(std::vector<Staged>& batch);
  // Encodes the stored blocks among `blocks` with kvz for `dtype` where that makes them
  // smaller: their spans and encodings are replaced by the frames', which live in the
  // returned buffers.
  std::vector<std::unique_ptr<std::byte[]>> EncodeBlocks(
      KvDtype dtype, std::span<std::span<const std::byte>> blocks,
      std::span<tiers::BlockEncoding> encodings) const;
  // The namespace's registration, if any.
  std::optional<NamespaceInfo> Namespace(uint32_t ns) const;
  // Adds to the namespace's written-bytes counters.
  void CountWritten(uint32_t ns, std::span<const std::span<const std::byte>> blocks,
                    std::span<const tiers::BlockEncoding> encodings,
                    std::span<const absl::Status> statuses);

  const NvmePlacementOptions options_;
  const std::shared_ptr<BatchEncoder> encoder_;
  tiers::DramTier* const dram_;
  tiers::NvmeTier* const nvme_;

  mutable absl::Mutex ns_mu_;
  absl::flat_hash_map<uint32_t, NamespaceInfo> namespaces_ ABSL_GUARDED_BY(ns_mu_);

  mutable absl::Mutex mu_;
  std::unique_ptr<tiers::NvmeAdmissionPolicy> admission_ ABSL_GUARDED_BY(mu_);
  std::deque<Staged> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t staged_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // queued and being written
  // Staged demotions per key, until they are durable (Remove waits for them).
  absl::flat_hash_map<PendingKey, uint32_t> pending_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar written_;  // signalled after every demotion batch

  std::atomic<uint64_t> promotions_{0};
  std::atomic<uint64_t> demotions_{0};
  std::atomic<uint64_t> demotions_dropped_{0};
  std::atomic<uint64_t> admission_rejections_{0};
  std::atomic<uint64_t> write_throughs_{0};
  std::atomic<uint64_t> write_through_failures_{0};
  std::atomic<uint64_t> shutdown_saved_{0};
  mutable std::atomic<uint64_t> encode_nanos_{0};  // in encoder_->Compress
  std::atomic<uint64_t> prefetch_requests_{0};
  std::atomic<uint64_t> prefetch_promoted_{0};
  std::atomic<uint64_t> prefetch_dropped_{0};
  std::atomic<uint64_t> prefetch_in_flight_{0};  // keys between PlanPrefetch and RunPrefetch

  std::thread demoter_;
};

}  // namespace kvtier::server
