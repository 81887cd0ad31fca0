#include "kvtier/common/huge_page_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace kvtier {
namespace {

// The VmFlags of the mapping that holds `p`, from /proc/self/smaps ("" if not found).
std::string VmFlagsOf(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < 17) {
      inside = lo <= addr && addr < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

TEST(HugePageAllocatorTest, LargeBlocksAreAlignedAdvisedAndUsable) {
  HugePageAllocator<uint64_t> alloc;
  const size_t n = (size_t{5} << 20) / sizeof(uint64_t) + 3;  // 5 MiB and a bit
  uint64_t* p = alloc.allocate(n);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % huge_pages::kHugePageBytes, 0u);
  for (size_t i = 0; i < n; ++i) p[i] = i * 7;
  for (size_t i = 0; i < n; i += 4099) ASSERT_EQ(p[i], i * 7);
  // MADV_HUGEPAGE marks the mapping "hg" whatever the kernel's THP mode, on a kernel built
  // with THP at all (which has this file).
  if (std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good()) {
    EXPECT_NE(VmFlagsOf(p).find(" hg"), std::string::npos) << VmFlagsOf(p);
  }
  alloc.deallocate(p, n);
}

TEST(HugePageAllocatorTest, SmallBlocksComeFromTheHeap) {
  HugePageAllocator<uint64_t> alloc;
  uint64_t* p = alloc.allocate(100);
  for (size_t i = 0; i < 100; ++i) p[i] = i;
  EXPECT_EQ(VmFlagsOf(p).find(" hg"), std::string::npos);
  alloc.deallocate(p, 100);
}

TEST(HugePageAllocatorTest, AVectorGrowsAcrossTheThresholdKeepingItsContents) {
  std::vector<uint32_t, HugePageAllocator<uint32_t>> v;
  for (uint32_t i = 0; i < (3u << 20); ++i) v.push_back(i * 3);  // 12 MiB at the end
  for (uint32_t i = 0; i < v.size(); i += 997) ASSERT_EQ(v[i], i * 3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % huge_pages::kHugePageBytes, 0u);
  EXPECT_TRUE(HugePageAllocator<uint32_t>() == HugePageAllocator<double>());
}

}  // namespace
}  // namespace kvtier
