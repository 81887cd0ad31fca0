#include "shared_arena.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kvtier::client {

// The table is little-endian on the wire; reading it as native uint64 is only right here.
static_assert(std::endian::native == std::endian::little, "kvtier's shared arena needs LE");

absl::StatusOr<std::unique_ptr<SharedArena>> SharedArena::Map(int fd,
                                                              const proto::ArenaInfo& info) {
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  if (info.size_bytes() == 0 || info.page_bytes() == 0 ||
      info.generation_table_bytes() > info.size_bytes() ||
      info.generation_table_bytes() % sizeof(uint64_t) != 0) {
    return absl::InternalError(absl::StrCat("kvtierd announced an inconsistent shared arena: size ",
                                            info.size_bytes(), " bytes, generation table ",
                                            info.generation_table_bytes(), " bytes, page ",
                                            info.page_bytes(), " bytes"));
  }
  // MAP_POPULATE builds the page tables once, at connect: otherwise the first copy into every
  // 4 KiB page of the arena takes a page fault in the middle of a put or get. The daemon has
  // allocated the memory already, so this costs page-table setup only.
  void* base =
      mmap(nullptr, info.size_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (base == MAP_FAILED) {
    return absl::UnavailableError(absl::StrCat("cannot map kvtierd's shared arena (",
                                               info.size_bytes(),
                                               " bytes): ", std::strerror(errno)));
  }
  return std::unique_ptr<SharedArena>(
      new SharedArena(static_cast<std::byte*>(base), info.size_bytes(),
                      info.generation_table_bytes(), info.page_bytes()));
}

SharedArena::~SharedArena() { munmap(base_, size_); }

absl::Status SharedArena::CheckSlot(uint64_t offset, uint64_t length) const {
  const uint64_t page = offset / page_bytes_;
  if (offset < table_bytes_ || offset > size_ || length > size_ - offset ||
      page >= table_bytes_ / sizeof(uint64_t)) {
    return absl::InternalError(
        absl::StrCat("arena slot [", offset, ", +", length, ") is outside the ", size_,
                     "-byte arena's slot area (table ", table_bytes_, " bytes)"));
  }
  return absl::OkStatus();
}

uint64_t SharedArena::Generation(uint64_t offset) const {
  auto* table = reinterpret_cast<uint64_t*>(base_);
  return std::atomic_ref<uint64_t>(table[offset / page_bytes_]).load(std::memory_order_acquire);
}

}  // namespace kvtier::client
