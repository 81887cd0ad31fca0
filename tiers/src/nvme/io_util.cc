#include "tiers/src/nvme/io_util.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"

namespace kvtier::tiers::nvme {

absl::Status ErrnoStatus(int err, std::string_view what) {
  const std::string msg = absl::StrCat(AbslView(what), ": ", std::strerror(err));
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case ENOENT:
      return absl::NotFoundError(msg);
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

size_t IoOpBytes(const IoOp& op) {
  size_t n = 0;
  for (const IoSegment& s : op.segments) n += s.length;
  return n;
}

absl::Status ValidateIoOp(const IoOp& op, uint32_t alignment, uint64_t device_bytes) {
  if (op.segments.empty() || op.segments.size() > IoOp::kMaxSegments) {
    return absl::InvalidArgumentError(absl::StrCat(
        "I/O op with ", op.segments.size(), " segments (1..", IoOp::kMaxSegments, " allowed)"));
  }
  const uint64_t mask = alignment - 1;
  if ((op.offset & mask) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("I/O offset ", op.offset, " is not a multiple of ", alignment));
  }
  uint64_t total = 0;
  for (const IoSegment& s : op.segments) {
    if (s.length == 0 || (s.length & mask) != 0 ||
        (reinterpret_cast<uintptr_t>(s.data) & mask) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("I/O segment of ", s.length, " bytes at address ",
                       reinterpret_cast<uintptr_t>(s.data), " is not aligned to ", alignment));
    }
    total += s.length;
  }
  if (op.offset > device_bytes || total > device_bytes - op.offset) {
    return absl::InvalidArgumentError(absl::StrCat("I/O of ", total, " bytes at offset ", op.offset,
                                                   " reaches past the device's ", device_bytes,
                                                   " bytes"));
  }
  return absl::OkStatus();
}

void FreeDeleter::operator()(std::byte* p) const { std::free(p); }

AlignedBytes AllocateAligned(size_t bytes, size_t alignment) {
  const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  void* p = std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, rounded);
  return AlignedBytes(static_cast<std::byte*>(p));
}

}  // namespace kvtier::tiers::nvme
