// The eviction policies a tier can run, by name, and the default.
//
// Every policy implements EvictionPolicy (eviction_policy.h) and keeps one ordering per size
// class. All of them are O(1) per OnInsert/OnAccess/OnRemove; PickVictim is O(1) amortised and
// walks further only past blocks the tier says it cannot evict (pinned, or, for prefix-slru,
// blocks with cached children). docs/policy.md has their hit rates on traces against Belady's
// optimum and their measured cost per operation.
//
//   lru          least recently used (NewLruPolicy in eviction_policy.h).
//   s3fifo       S3-FIFO (Yang et al., SOSP'23): a small FIFO that new blocks pass through, a
//                main FIFO with 2-bit reuse counters, and a ghost of blocks the small FIFO
//                dropped, so one-hit blocks leave early and returning ones go straight to main.
//   sieve        SIEVE (Zhang et al., NSDI'24): one FIFO with a visited bit and a moving hand.
//   arc          ARC (Megiddo and Modha, FAST'03): recency and frequency lists whose split
//                adapts to hits in their ghost lists.
//   tinylfu      W-TinyLFU (Einziger et al., TOS'17): a 1 % LRU window, a segmented LRU main
//                area, and admission into main only for blocks a count-min sketch says are used
//                more often than main's victim.
//   prefix-slru  The default. A segmented LRU built for prefix caches: blocks start in a
//                probation segment and move to a protected one when reused, or when they come
//                back while a ghost filter still remembers them; the protected segment holds at
//                most 80 % of the class, so a burst of one-off prompts cannot flush the reused
//                ones. Prefix-aware: a child never outlives its parent (leaf-first eviction),
//                and a block whose parent leaves the tier becomes the next victim, since no
//                prefix lookup can reach it any more.
//
// Policies that remember blocks across evictions (s3fifo, arc, tinylfu, prefix-slru) need the
// tier to pass BlockInfo::fingerprint through OnInsertBlock; without it they still run, but
// forget every block the moment it is evicted. Only prefix-slru uses BlockInfo::parent.
//
// Not thread-safe, like every EvictionPolicy: the tier calls it under its own lock.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/tiers/eviction_policy.h"

namespace kvtier::tiers {

inline constexpr std::string_view kDefaultPolicyName = "prefix-slru";

struct PolicyOptions {
  // How many blocks the tier holds when full, over all size classes. Sizes the memory of what a
  // policy remembers beyond the cached blocks (ghosts, frequency sketch); segment sizes follow
  // the number of cached blocks per class instead, so a tier whose capacity moves between
  // classes needs no retuning. Default 1M; must be at least 1. Fixed at construction.
  uint64_t capacity_blocks = uint64_t{1} << 20;

  absl::Status Validate() const;
};

// Names accepted by NewPolicy, the default first.
std::span<const std::string_view> PolicyNames();

// Makes the named policy. InvalidArgument for an unknown name (the message lists the known
// ones) or options that fail Validate().
absl::StatusOr<std::unique_ptr<EvictionPolicy>> NewPolicy(std::string_view name,
                                                          const PolicyOptions& options = {});

// The individual policies; NewPolicy is the usual way in. REQUIRES: options.Validate() is ok.
std::unique_ptr<EvictionPolicy> NewS3FifoPolicy(const PolicyOptions& options);
std::unique_ptr<EvictionPolicy> NewSievePolicy();
std::unique_ptr<EvictionPolicy> NewArcPolicy();
std::unique_ptr<EvictionPolicy> NewTinyLfuPolicy(const PolicyOptions& options);
std::unique_ptr<EvictionPolicy> NewPrefixSlruPolicy(const PolicyOptions& options);

}  // namespace kvtier::tiers
