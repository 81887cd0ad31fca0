#include <cstdlib>
#include <cstring>
#include <new>
#include <random>

#include "absl/strings/str_cat.h"
#include "bench.h"
#include "kvtier/common/status_macros.h"

namespace kvtier::bench::nvme {

AlignedArena::AlignedArena(size_t bytes)
    : data(static_cast<std::byte*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096))),
      size(bytes) {
  if (data == nullptr) throw std::bad_alloc();
}
AlignedArena::~AlignedArena() { std::free(data); }

BlockKey BenchKey(uint64_t i) {
  BlockKey k;
  std::mt19937_64 rng(i + 0x5eed);
  for (size_t b = 0; b < BlockKey::kSize; b += 8) {
    const uint64_t v = rng();
    std::memcpy(k.bytes.data() + b, &v, 8);
  }
  return k;
}

void FillPayload(uint64_t i, std::span<std::byte> out) {
  std::memset(out.data(), 0xa5, out.size());
  StampPayload(i, out);
}

void StampPayload(uint64_t i, std::span<std::byte> out) {
  for (size_t at = 0; at + 8 <= out.size(); at += 4096) std::memcpy(out.data() + at, &i, 8);
}

bool CheckPayload(uint64_t i, std::span<const std::byte> in) {
  for (size_t at = 0; at + 8 <= in.size(); at += 4096) {
    if (std::memcmp(in.data() + at, &i, 8) != 0) return false;
  }
  return in.size() <= 8 || in[8] == std::byte{0xa5};
}

absl::StatusOr<std::unique_ptr<tiers::NvmeTier>> OpenBenchTier(const Config& c,
                                                               const Clock* clock) {
  tiers::NvmeDeviceOptions d;
  d.path = c.file;
  d.capacity_bytes = c.capacity_bytes;
  // fio's --iodepth is the I/Os in flight in all; readers share it (each ring takes qd/readers),
  // so more readers overlap their index lookups and batch tails, never more I/O than fio's.
  const uint32_t readers = std::max<uint32_t>(1, c.readers);
  d.queue_depth = std::max<uint32_t>(1, c.queue_depth / readers);
  d.rings = std::max<uint32_t>(4, readers);
  if (c.engine == "io_uring") {
    d.engine = tiers::NvmeDeviceOptions::Engine::kIoUring;
  } else if (c.engine == "thread_pool") {
    d.engine = tiers::NvmeDeviceOptions::Engine::kThreadPool;
  } else if (c.engine != "auto") {
    return absl::InvalidArgumentError(absl::StrCat("unknown engine ", c.engine));
  }
  KVTIER_ASSIGN_OR_RETURN(auto device, tiers::OpenFileDevice(d));
  tiers::NvmeTierOptions o;
  o.index_path = c.file + ".index";
  o.region_bytes = c.region_bytes;
  o.reclaim_batch_regions = c.reclaim_batch;
  KVTIER_ASSIGN_OR_RETURN(auto tier, tiers::NvmeTier::Create(o, std::move(device), clock, nullptr));
  KVTIER_RETURN_IF_ERROR(tier->AddNamespace(1, c.block_bytes));
  if (c.quota_bytes != 0) {
    KVTIER_RETURN_IF_ERROR(tier->SetNamespaceLimits(1, {.quota_bytes = c.quota_bytes}));
  }
  return tier;
}

absl::StatusOr<std::vector<uint64_t>> PresentIds(const tiers::NvmeTier& tier) {
  const uint64_t present = tier.Snapshot().tier.blocks;
  if (present == 0) {
    return absl::FailedPreconditionError("the tier is empty: run --mode write first");
  }
  std::vector<uint64_t> ids;
  ids.reserve(present);
  // Evicted ids lie below the present ones: a write run fills the tier more than once at most
  // a few times over, so the scan stops well before this bound.
  const uint64_t limit = 64 * present + (uint64_t{1} << 20);
  for (uint64_t id = 0; id < limit && ids.size() < present; ++id) {
    if (tier.Contains(1, BenchKey(id))) ids.push_back(id);
  }
  return ids;
}

}  // namespace kvtier::bench::nvme
