// Helpers shared by the NVMe devices: errno to absl::Status, op validation, aligned memory.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "kvtier/tiers/nvme_device.h"

namespace kvtier::tiers::nvme {

// ENOSPC/EDQUOT -> kResourceExhausted, EACCES/EPERM -> kPermissionDenied, ENOENT ->
// kNotFound, EINVAL -> kInvalidArgument, anything else -> kUnavailable. The message is
// "<what>: <strerror>".
absl::Status ErrnoStatus(int err, std::string_view what);

// kInvalidArgument when the op is misaligned, empty, has too many segments or reaches past
// `device_bytes`; OK otherwise.
absl::Status ValidateIoOp(const IoOp& op, uint32_t alignment, uint64_t device_bytes);

// Total bytes of an op's segments.
size_t IoOpBytes(const IoOp& op);

struct FreeDeleter {
  void operator()(std::byte* p) const;
};
using AlignedBytes = std::unique_ptr<std::byte[], FreeDeleter>;

// Zero-filled memory aligned to `alignment` (a power of two), `bytes` rounded up to it.
// Throws std::bad_alloc when memory cannot be had, as operator new does.
AlignedBytes AllocateAligned(size_t bytes, size_t alignment);

// Nanoseconds from `from` to `to` (or now), for the tier's time counters.
inline uint64_t NanosBetween(std::chrono::steady_clock::time_point from,
                             std::chrono::steady_clock::time_point to) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count());
}
inline uint64_t NanosSince(std::chrono::steady_clock::time_point from) {
  return NanosBetween(from, std::chrono::steady_clock::now());
}

}  // namespace kvtier::tiers::nvme
