// DramTier: the default tier. Block bytes live in one shared-memory arena (a memfd) that the
// daemon maps and hands to local clients, so a local put or get copies straight between the
// client's buffer and the arena; the daemon never touches those bytes.
//
// Layout of the arena (the fd's contents):
//   [generation table: one uint64 per page, generation_table_bytes()]
//   [data: capacity_bytes, carved into slabs, each slab into equal slots of one size class]
// A slot is page-aligned; its generation lives at table index (slot offset / page_bytes).
// Generations only grow: a slot's generation is bumped (release store) every time it is freed,
// so a reader that copied under an expired lease detects it (seqlock-style, docs/protocol.md).
//
// Blocks move through: ReservePut -> (client copies) -> CommitPut -> visible to Lookup/Get ->
// AcquireRead pins it under a read lease -> Release. Leases expire after
// lease_timeout (ExpireLeases()), and ReleaseOwner() drops every lease of a disconnected
// client, so a crashed client cannot pin memory forever. Pinned (leased) blocks are never
// evicted; capacity is a hard bound: when nothing can be evicted, a put gets
// kResourceExhausted for that block.
//
// Expired leases: a read lease that expires drops its pins at once (the block stays cached;
// only a later eviction bumps the slot's generation). A put lease that expires leaves the index
// at once, but its slots are only reused once its owner has answered (CommitPut, Release)
// or one more lease_timeout has passed: a slow writer may still be copying into
// them, and its bytes must not land in another block's slot. An expired lease is remembered
// for one lease_timeout after expiry, so Release says "expired" rather than "unknown"; after
// that it is forgotten and Release returns kNotFound, which a client must treat as void too.
//
// Space: capacity is split into slabs per slot size (block_bytes rounded up to page_bytes);
// see tiers/src/slab_allocator.h. A namespace registered with size_steps > 1 (a compressed
// namespace) puts each block in the smallest of its size_steps slot sizes that holds the
// stored (encoded) length, so capacity counts the bytes blocks really take, and so do quotas
// (NamespaceLimits).
//
// Encoded blocks: the tier stores and returns bytes as given, plus each block's BlockEncoding
// (codec id and original length), which it never interprets beyond accounting: used_bytes
// counts stored bytes, raw_bytes the original bytes they stand for. Metadata lives in the daemon's
// heap, about 170 bytes per cached block, plus 8 bytes per page of generation table in the arena.
//
// Eviction approximates one global recency order across size classes, at slab granularity,
// so that slabs follow the workload instead of staying with whichever namespace filled the
// arena first. Each cached block remembers its last use (the clock at commit and at every
// read hit). When a class needs a slot and neither a free slot nor room for a new slab exists,
// its own next victim (by the policy) is compared with the next victim of every other class
// (the policy's segment first, EvictionPolicy::SegmentOf, then the last use): if another
// class's victim ranks lower, that class gives up a slab -- the one holding its victim if none
// of its blocks is pinned, else its cheapest run of unpinned slabs; otherwise the class evicts
// its own victim. A class with no slab, or whose blocks are all pinned, empties the cheapest
// run of unpinned slabs of any class. Either way the emptied slab's blocks are not simply
// lost: each moves to a free slot of its class elsewhere, made by evicting that class's
// lower-ranked blocks, and goes only when it ranks lowest itself (a copy within the arena, at
// most one slab's bytes per reclaim). Stats count reclaims and moves. ReclaimAhead lets a
// maintenance thread take a growing class's next slab before a put has to.
//
// Thread-safe: every method may be called from any thread (one internal mutex; short critical
// sections, no I/O under it). Nothing here blocks on I/O.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/common/block_key.h"
#include "kvtier/common/clock.h"
#include "kvtier/tiers/eviction_policy.h"
#include "kvtier/tiers/tier_stats.h"

namespace kvtier::tiers {

using NamespaceId = uint32_t;
using OwnerId = uint64_t;  // who holds a lease: the daemon uses the connection id
using LeaseId = uint64_t;  // never 0

struct DramTierOptions {
  // Bytes of block data the tier may hold (the arena's data part). Hard bound. Default 1 GiB.
  // Must be a multiple of page_bytes and at least one slab. Fixed at creation.
  uint64_t capacity_bytes = 1ull << 30;
  // Slot alignment and generation-table granularity. Default 4096. Power of two >= 4096.
  uint32_t page_bytes = 4096;
  // The arena is carved into slabs of this size; each slab serves one size class. A block
  // larger than a slab gets a slab of its own (rounded up to pages). Default 16 MiB.
  uint64_t slab_bytes = 16ull << 20;
  // A lease not released within this time expires: read pins drop, unfinished puts are
  // reclaimed. Default 10 s.
  int64_t lease_timeout_ns = 10'000'000'000;
  // Name shown in /proc/<pid>/fd for the memfd. Default "kvtier-dram".
  std::string memfd_name = "kvtier-dram";
  // Reserve the arena's memory at creation (fallocate on the memfd), so that a host without
  // enough memory fails Create() with kResourceExhausted instead of a client or the daemon
  // taking SIGBUS on first touch of a page later. Default true; tests may turn it off.
  bool preallocate = true;
  // Called, without the tier's lock, while a slab reclaim copies blocks out of the slabs it
  // empties (dram_tier_impl.h): for tests and tracing. Unset by default.
  std::function<void()> on_reclaim_copy;

  // kInvalidArgument naming the bad option and what would be accepted.
  absl::Status Validate() const;
};

// How a block's stored bytes encode its original bytes (kvtier/compression/codec.h's CodecId
// values; the tier does not decode). codec 0 (stored): the bytes are the block itself.
struct BlockEncoding {
  uint8_t codec = 0;
  // Bytes of the block before encoding; 0 means the stored length (always so for codec 0).
  uint64_t raw_length = 0;
};

// Where one block sits in the arena. `offset` is from the start of the arena (fd offset 0).
struct SlotRef {
  uint64_t offset = 0;
  uint64_t length = 0;      // stored bytes of the block
  uint64_t generation = 0;  // the slot's generation while this ref is valid
  BlockEncoding encoding;   // set for committed blocks (AcquireRead, ExtendRead, handoffs)
};

// A committed block leaving the tier to make room, as shown to an EvictionListener. `bytes`
// points into the arena and is valid only during the call.
struct EvictedBlock {
  NamespaceId ns = 0;
  BlockKey key;
  std::span<const std::byte> bytes;
  uint32_t hits = 0;           // read hits since the block was committed (saturates at 65535)
  bool persisted = false;      // the same bytes are known to sit in a lower tier (see ReservePut)
  int64_t ttl_left_nanos = 0;  // 0: no TTL; else how long the block has left (a lower tier
                               // keeps the expiry)
  BlockEncoding encoding;
};

// Sees every block the tier evicts for space (not blocks removed by Remove), just before its
// slot is freed, so that it can copy the bytes out (the daemon demotes them to NVMe). Called
// with the tier's lock held: it must be quick (a memcpy into a staging buffer, no I/O, no
// waiting) and must not call back into the tier.
class EvictionListener {
 public:
  virtual ~EvictionListener() = default;
  virtual void OnEvict(const EvictedBlock& block) = 0;
};

// One committed block as listed by ListBlocks.
struct BlockListing {
  NamespaceId ns = 0;
  BlockKey key;
  uint64_t offset = 0;  // in the arena
  uint64_t length = 0;
  uint32_t hits = 0;
  bool persisted = false;
  int64_t ttl_left_nanos = 0;  // 0: no TTL
  BlockEncoding encoding;
};

// Where the blocks of a live put lease sit, for a caller that must read them before the commit
// (write-through to NVMe).
struct PutLeaseBlocks {
  NamespaceId ns = 0;
  int64_t ttl_nanos = 0;       // the put's TTL (ReserveOptions, or the namespace default)
  std::vector<BlockKey> keys;  // in the order of CommitPut's codes
  std::vector<SlotRef> slots;  // with the encodings given to ReservePut
};

// A read lease that CommitPut also pins the committed blocks under (CommitOptions::read).
struct ReadHandoff {
  OwnerId owner = 0;
  // In: the live read lease of `owner` to extend, or 0 for a new one. Out: the lease holding
  // the blocks (unchanged when none was pinned).
  LeaseId lease = 0;
  // Out: one slot per block of the put lease, in commit order, when they were pinned; empty
  // when they were not (an unknown, expired or foreign read lease, or an expired put lease).
  std::vector<SlotRef> slots;
};

struct ReserveOptions {
  // The caller knows these exact bytes sit in a lower tier already (a promotion from NVMe);
  // the flag travels to the EvictionListener, which then need not write them again.
  bool persisted = false;
  // > 0: the blocks expire this long after their commit; 0: the namespace's default TTL
  // (NamespaceLimits), if any. An expired block is a miss for every call, is dropped by
  // ExpireLeases or when its space is wanted (never demoted), and counts in
  // TierCounters::expirations. A block pinned with SetPinned does not expire while pinned.
  int64_t ttl_nanos = 0;
  // Empty (every block stored as is), or one encoding per key. A raw_length below the length
  // or above the namespace's block_bytes, or a codec other than 0 in a namespace without
  // size steps: that key's code is kInvalidArgument.
  std::span<const BlockEncoding> encodings;
};

struct CommitOptions {
  // Marks the committed blocks as ReservePut's `persisted` does (write-through puts).
  bool persisted = false;
  // Empty, or one final length per block of the lease (in commit order), each from 1 to the
  // length reserved: a promotion reserves the namespace's block size and learns the stored
  // length only from the read. Any other size or value: every code is kInvalidArgument and
  // the lease stays open.
  std::span<const uint64_t> lengths;
  // Empty, or one TTL per block of the lease (in commit order) replacing ReserveOptions's: 0
  // none, else nanoseconds from the commit. A promotion learns a block's remaining TTL from
  // the read. Any other size: every code is kInvalidArgument and the lease stays open.
  std::span<const int64_t> ttls;
  // Empty, or one encoding per block of the lease (in commit order) replacing ReservePut's: a
  // promotion learns it from the read. Checked as ReserveOptions::encodings (against the final
  // lengths); any bad entry or size: every code is kInvalidArgument and the lease stays open.
  std::span<const BlockEncoding> encodings;
  // Non-null: the committed blocks are also pinned for reading under read->lease, in the same
  // critical section as the commit, so that no eviction comes between the two -- a get's
  // blocks promoted from NVMe. They count as hits that the get's AcquireRead had counted as
  // misses, as with ExtendRead. A read lease that cannot take them: they are committed
  // unpinned.
  ReadHandoff* read = nullptr;
};

// A namespace's memory controls in the DRAM tier (SetNamespaceLimits).
struct NamespaceLimits {
  // Most bytes of slots the namespace's blocks (committed or being written) may take; 0: no
  // quota. Each block counts the slot it occupies, as the tier's capacity does: block_bytes
  // rounded up to pages, or in a namespace with size steps the step that holds its stored
  // length (AddNamespace), so compressed blocks let more blocks into the same quota. A put
  // that would go past the quota first evicts the namespace's own coldest blocks (demoted as
  // any eviction), as many as its slot needs, never another namespace's; when the blocks it
  // could evict would not make room (the rest are in use), nothing is evicted and the put gets
  // kResourceExhausted. A quota below one full-size slot counts as one, so that a block of any
  // size fits. Default 0.
  uint64_t quota_bytes = 0;
  // Under memory pressure, victims come from the lowest priority that has an evictable block
  // first, within a size class and when a class takes a slab from another; the policy orders
  // blocks within one priority. At most kMaxPriorityLevels distinct priorities (counting the
  // default 0) across namespaces.
  int32_t priority = 0;
  // The TTL of puts that ask for none (ReserveOptions::ttl_nanos 0); 0: blocks do not expire.
  int64_t default_ttl_nanos = 0;
};

// Result of ReservePut / AcquireRead: one code and one slot per key, in request order.
struct LeaseGrant {
  LeaseId lease_id = 0;  // 0 when no key was granted
  std::vector<absl::StatusCode> codes;
  std::vector<SlotRef> slots;  // valid where codes[i] == kOk
};

class DramTier {
 public:
  // Creates the memfd, sizes it, maps it. kInvalidArgument for bad options, kResourceExhausted
  // / kInternal (with errno text) when the memory cannot be had. `clock` must outlive the tier.
  // `policy` decides eviction order within a size class (NewLruPolicy() when null). It gets
  // each block through OnInsertBlock with a fingerprint (the key's first 8 bytes) and, when the
  // previous key of the same put batch was granted too, that block as its prefix parent, so
  // the policies of kvtier/tiers/policies.h (prefix-slru included) can be used as they are.
  static absl::StatusOr<std::unique_ptr<DramTier>> Create(const DramTierOptions& options,
                                                          const Clock* clock,
                                                          std::unique_ptr<EvictionPolicy> policy);
  ~DramTier();
  DramTier(const DramTier&) = delete;
  DramTier& operator=(const DramTier&) = delete;

  // The arena: fd to pass to clients (owned by the tier), total mapped size, and the daemon's
  // own mapping (for inline TCP puts/gets, which copy between socket buffers and slots).
  int arena_fd() const;
  uint64_t arena_bytes() const;
  uint64_t generation_table_bytes() const;
  uint32_t page_bytes() const;
  std::byte* arena_base() const;

  // The current generation of the slot at arena `offset` (acquire load; lock-free). The
  // daemon's own copies (inline TCP gets) compare it with SlotRef::generation after copying,
  // exactly as a client does through its mapping. REQUIRES: offset < arena_bytes().
  uint64_t SlotGeneration(uint64_t offset) const;

  // Registers a namespace and its fixed block size. Idempotent for the same size and steps;
  // kInvalidArgument if block_bytes is 0 or larger than the capacity, or size_steps is 0 or
  // above kMaxSizeSteps; kAlreadyExists if `ns` is registered with another block size or
  // steps. Namespaces are never unregistered.
  // size_steps: 1 (default), every block takes a slot of block_bytes; n > 1 (compressed
  // namespaces), a block takes the smallest slot of ceil(block_bytes * k / n) bytes, k in
  // 1..n, rounded up to pages, that holds its stored length -- at most block_bytes / n (or a
  // page) more than it needs, from at most n size classes.
  absl::Status AddNamespace(NamespaceId ns, uint64_t block_bytes, uint32_t size_steps = 1);
  static constexpr uint32_t kMaxSizeSteps = 64;

  // Number of leading keys that are committed in the tier (the longest cached prefix). Does
  // not count as a use for eviction. Unknown namespace: 0.
  size_t LookupPrefix(NamespaceId ns, std::span<const BlockKey> keys);

  // Reserves a slot per key for `owner`, evicting unpinned blocks as needed (of the size class,
  // or a slab of another class whose next victim is older; see the top of this file).
  // codes[i]: kOk (slot reserved), kAlreadyExists (committed or being written already),
  // kInvalidArgument (length 0 or > block_bytes, duplicate key in the batch, unknown ns),
  // kResourceExhausted (nothing evictable). Reserved slots are invisible until CommitPut.
  // For a key repeated in the batch, the first occurrence is reserved and the later ones get
  // kInvalidArgument. Once one key gets kResourceExhausted, the later new keys of the batch get
  // it too without another search. Leases past their deadline are expired first (as by
  // ExpireLeases), so space held by crashed clients is reclaimed before anything is evicted.
  // lengths.size() != keys.size() or an unknown ns: every code is kInvalidArgument.
  LeaseGrant ReservePut(OwnerId owner, NamespaceId ns, std::span<const BlockKey> keys,
                        std::span<const uint64_t> lengths, const ReserveOptions& options = {});

  // Publishes the blocks of a ReservePut lease. One code per block granted by ReservePut, in
  // the order of the keys whose ReservePut code was kOk: kOk, kDeadlineExceeded when the
  // lease expired first (the slots are reclaimed; all blocks of a lease share its fate), or
  // kAborted for a block whose key was removed (Remove) while it was being written. The
  // lease ends either way. kNotFound for an unknown lease, or one that belongs to another
  // owner; kInvalidArgument for a read lease.
  absl::StatusOr<std::vector<absl::StatusCode>> CommitPut(OwnerId owner, LeaseId lease,
                                                          const CommitOptions& options = {});

  // The namespace, keys and slots of a live (unexpired) put lease of `owner`, in commit order.
  // kNotFound for an unknown lease or another owner's, kInvalidArgument for a read lease,
  // kDeadlineExceeded once it has expired. The slots' bytes are the client's to write until it
  // commits; read them only after the client said it is done (PutCommit).
  absl::StatusOr<PutLeaseBlocks> GetPutLeaseBlocks(OwnerId owner, LeaseId lease);

  // Adds blocks to a get: pins the committed blocks among `keys` under `owner`'s live read
  // lease `lease` (or under a new read lease when `lease` is 0), as AcquireRead does, and
  // counts each block found as a hit that AcquireRead had counted as a miss (the daemon asks
  // for a get's misses again once it has promoted them from NVMe). codes[i]: kOk or
  // kNotFound; lease_id: the lease holding them (0 if none). An unknown, expired or foreign
  // lease, or a put lease: every code is kNotFound.
  LeaseGrant ExtendRead(OwnerId owner, LeaseId lease, NamespaceId ns,
                        std::span<const BlockKey> keys);

  // Sets a namespace's quota and priority (see NamespaceLimits); a lowered quota evicts the
  // namespace's coldest committed blocks at once until their slots fit in it (blocks in use
  // stay until released, and count against it until then).
  // kNotFound for an unknown namespace; kInvalidArgument for one priority too many (nothing
  // changes then).
  absl::Status SetNamespaceLimits(NamespaceId ns, const NamespaceLimits& limits);

  // Pins (true) or unpins committed blocks: a pinned block is never evicted (a system prompt's
  // prefix, say) until it is unpinned or removed; when everything is pinned, puts get
  // kResourceExhausted. Pins do not count: pinning twice needs one unpin. codes[i]: kOk or
  // kNotFound. Remove still removes a pinned block.
  std::vector<absl::StatusCode> SetPinned(NamespaceId ns, std::span<const BlockKey> keys,
                                          bool pinned);

  // present[i] = whether keys[i] is committed in the tier. Counts nothing and is not a use.
  std::vector<bool> Present(NamespaceId ns, std::span<const BlockKey> keys);
  // Present, and each present block counts as used now for eviction (the policy's OnAccess,
  // as a read's), in key order, without pinning it or counting a hit: what a prefetch hint
  // does for blocks already in DRAM. An engine that says it will need a block soon has told
  // the cache the one thing its policy cannot see (docs/policy.md, "Why not 45 %").
  std::vector<bool> Touch(NamespaceId ns, std::span<const BlockKey> keys);

  // Every committed block, most recently used first (a clean shutdown saves them in that order
  // while its time lasts). The offsets stay valid only while nothing is put or evicted: call it
  // when the tier no longer serves requests.
  std::vector<BlockListing> ListBlocks() const;

  // Sets the listener for evictions (null: none). Call before the tier is shared between
  // threads; the listener must outlive the tier or be reset first.
  void SetEvictionListener(EvictionListener* listener);

  // Pins the committed blocks among `keys` under a read lease and counts hits/misses.
  // codes[i]: kOk or kNotFound. A get is a use for eviction.
  LeaseGrant AcquireRead(OwnerId owner, NamespaceId ns, std::span<const BlockKey> keys);

  // Ends a read or put lease. Returns true if it had expired already (for a read lease: any
  // copy made under it is void). kNotFound for an unknown lease or another owner's.
  // Releasing a put lease without committing abandons the put. A lease whose deadline has
  // passed counts as expired even if ExpireLeases has not run yet.
  absl::StatusOr<bool> Release(OwnerId owner, LeaseId lease);

  // Drops every lease of `owner` (its connection closed): read pins drop at once; unfinished
  // puts are abandoned (their keys leave the index at once) but their slots are reused only
  // one lease_timeout later, because a closed connection does not prove that the client
  // process stopped writing into them.
  void ReleaseOwner(OwnerId owner);

  // Expires leases older than lease_timeout and forgets tombstones older than twice that;
  // returns how many leases expired in this call. Also drops blocks whose TTL has run out (a
  // bounded batch per call). Call periodically (e.g. every second).
  size_t ExpireLeases();

  // Maintenance, for a thread of the daemon's own (not the request path). A put that finds its
  // size class full and no free space pays for a slab reclaim, the copies of the blocks it
  // moves included (milliseconds for a 16 MiB slab). While a class keeps needing slabs --
  // a put reclaimed one for it within the last kReclaimDemandWindowNs -- this takes the class's
  // next slab before a put has to: once fewer than half a slab's worth of the class's slots are
  // free and free space holds no slab, it reclaims one by the rule a put would follow (a slab
  // of the class whose next victim ranks below this class's own; nothing when this class's own
  // victim ranks lowest, since a put then evicts within its class at no copy). The slab goes
  // back to free space, where the class's next put finds it. So the tier holds at most one
  // slab free ahead of need, and only while a class grows.
  enum class AheadResult {
    kReclaimed,  // a slab was reclaimed: call again
    kWaiting,    // a class is growing, but no reclaim was due now: call again soon (~1 ms)
    kIdle,       // no class needed a slab lately: call again later (~50 ms)
  };
  static constexpr int64_t kReclaimDemandWindowNs = 1'000'000'000;
  AheadResult ReclaimAhead();
  // How long a maintenance thread waits after `r` before it calls ReclaimAhead again.
  static constexpr std::chrono::microseconds AheadPause(AheadResult r) {
    return r == AheadResult::kReclaimed ? std::chrono::microseconds(0)
           : r == AheadResult::kWaiting ? std::chrono::microseconds(1'000)
                                        : std::chrono::microseconds(50'000);
  }

  // Removes committed blocks. codes[i]: kOk or kNotFound. A pinned block disappears from the
  // index at once; its slot is freed when its last lease ends. A block still being written
  // under a put lease (a client's put, a promotion from NVMe) is dropped too: its CommitPut
  // says kAborted, so that no block of a removed key appears after Remove has returned (its
  // code here stays kNotFound: nothing was cached yet).
  std::vector<absl::StatusCode> Remove(NamespaceId ns, std::span<const BlockKey> keys);

  // Accounts bytes served by a get (the daemon calls this once the bytes went out) -- the tier
  // cannot see shared-arena copies itself, so the daemon reports them after a release.
  void RecordBytesOut(NamespaceId ns, uint64_t bytes);

  TierSnapshot Snapshot() const;

 private:
  class Impl;
  explicit DramTier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier::tiers
