// HugePageAllocator: a standard allocator for the daemon's large, randomly accessed tables (the
// ghost filter, the tiers' key indexes). Every lookup in such a table lands on a different 4 KiB
// page, so at millions of blocks each one costs a TLB miss as well as a cache miss, and a page
// walk is dearer still in a virtual machine. Allocations of at least 2 MiB are mapped on their
// own, 2 MiB-aligned, and advised for transparent huge pages (MADV_HUGEPAGE), which works where
// the kernel's THP mode is `madvise` (Debian's and Ubuntu's default) or `always`; smaller ones
// come from operator new. Without THP the advice is ignored and the memory is ordinary.
//
// Stateless: all instances compare equal, and memory from one may be freed by another.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <new>

namespace kvtier {

namespace huge_pages {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

inline size_t MappedBytes(size_t bytes) {
  return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
}

// `bytes` (a multiple of kHugePageBytes), 2 MiB-aligned, advised for huge pages; throws
// std::bad_alloc when the mapping fails.
inline void* Map(size_t bytes) {
  // Map one huge page more, then trim the head and tail that are not aligned.
  const size_t span = bytes + kHugePageBytes;
  void* p = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (start + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  if (aligned > start) ::munmap(p, aligned - start);
  const uintptr_t end = start + span;
  if (end > aligned + bytes)
    ::munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  // Advice only: a kernel without THP keeps ordinary pages.
  ::madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

inline void Unmap(void* p, size_t bytes) { ::munmap(p, bytes); }

}  // namespace huge_pages

template <typename T>
class HugePageAllocator {
 public:
  using value_type = T;

  HugePageAllocator() noexcept = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit

  T* allocate(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    const size_t bytes = n * sizeof(T);
    if (bytes < huge_pages::kHugePageBytes) {
      return static_cast<T*>(::operator new (bytes, std::align_val_t{alignof(T)}));
    }
    return static_cast<T*>(huge_pages::Map(huge_pages::MappedBytes(bytes)));
  }

  void deallocate(T* p, size_t n) noexcept {
    const size_t bytes = n * sizeof(T);
    if (bytes < huge_pages::kHugePageBytes) {
      // The unsized form: clang declares the sized one only with -fsized-deallocation.
      ::operator delete (p, std::align_val_t{alignof(T)});
      return;
    }
    huge_pages::Unmap(p, huge_pages::MappedBytes(bytes));
  }

  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace kvtier
