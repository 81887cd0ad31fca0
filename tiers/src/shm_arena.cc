#include "tiers/src/shm_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/common/units.h"

namespace kvtier::tiers::internal {
namespace {

uint64_t RoundUp(uint64_t n, uint64_t unit) { return (n + unit - 1) / unit * unit; }

// Out-of-memory style errnos mean the host (or its cgroup, or its fd limit) cannot give us the
// arena: the operator's fix is a smaller --dram-capacity or a larger limit, so say so.
absl::Status ErrnoStatus(int err, std::string_view what, uint64_t bytes) {
  std::string msg = absl::StrCat("DRAM arena: ", AbslView(what), " failed for ",
                                 FormatByteSize(bytes), ": ", std::strerror(err));
  switch (err) {
    case ENOMEM:
    case ENOSPC:
    case EPERM:
    case EFBIG:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(
          absl::StrCat(msg, " (lower --dram-capacity, or raise the memory / memlock / fd limits)"));
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace

uint64_t ShmArena::TableBytesFor(uint32_t page_bytes, uint64_t data_bytes) {
  // The table covers itself, so its size is a fixed point; it converges in two or three steps.
  uint64_t table = RoundUp(data_bytes / page_bytes * sizeof(uint64_t), page_bytes);
  for (;;) {
    const uint64_t pages = (table + data_bytes) / page_bytes;
    const uint64_t need = RoundUp(pages * sizeof(uint64_t), page_bytes);
    if (need <= table) return table;
    table = need;
  }
}

absl::StatusOr<std::unique_ptr<ShmArena>> ShmArena::Create(std::string_view name,
                                                           uint32_t page_bytes, uint64_t data_bytes,
                                                           bool preallocate) {
  const uint64_t table_bytes = TableBytesFor(page_bytes, data_bytes);
  const uint64_t size = table_bytes + data_bytes;
  const std::string name_z(name);
  int fd = memfd_create(name_z.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return ErrnoStatus(errno, "memfd_create", size);
  auto fail = [&](std::string_view what) {
    const int err = errno;
    close(fd);
    return ErrnoStatus(err, what, size);
  };
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) return fail("ftruncate");
  if (preallocate) {
    // posix_fallocate returns the error instead of setting errno.
    const int err = posix_fallocate(fd, 0, static_cast<off_t>(size));
    if (err != 0) {
      close(fd);
      return ErrnoStatus(err, "fallocate", size);
    }
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return fail("sealing the memfd");
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail("mmap");
  return std::unique_ptr<ShmArena>(
      new ShmArena(fd, static_cast<std::byte*>(base), size, page_bytes, table_bytes));
}

ShmArena::ShmArena(int fd, std::byte* base, uint64_t size, uint32_t page_bytes,
                   uint64_t table_bytes)
    : fd_(fd),
      base_(base),
      size_(size),
      page_bytes_(page_bytes),
      table_bytes_(table_bytes),
      table_(reinterpret_cast<uint64_t*>(base)) {}

ShmArena::~ShmArena() {
  munmap(base_, size_);
  close(fd_);
}

}  // namespace kvtier::tiers::internal
