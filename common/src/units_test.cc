#include "kvtier/common/units.h"

#include <gtest/gtest.h>

namespace kvtier {
namespace {

TEST(ParseByteSize, AcceptsPlainAndBinaryAndDecimalUnits) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("256MiB"), 256ull << 20);
  EXPECT_EQ(*ParseByteSize("8GiB"), 8ull << 30);
  EXPECT_EQ(*ParseByteSize("8 gib"), 8ull << 30);
  EXPECT_EQ(*ParseByteSize("1.5GiB"), 3ull << 29);
  EXPECT_EQ(*ParseByteSize("2GB"), 2'000'000'000u);
  EXPECT_EQ(*ParseByteSize("64k"), 65536u);
  EXPECT_EQ(*ParseByteSize("0"), 0u);
}

TEST(ParseByteSize, RejectsGarbageWithAnActionableMessage) {
  for (const char* bad : {"", "MiB", "12 parsecs", "-5GiB", "1e3", "99999999999TiB"}) {
    auto r = ParseByteSize(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("256MiB"), std::string_view::npos);
  }
}

TEST(FormatByteSize, PicksTheLargestUnit) {
  EXPECT_EQ(FormatByteSize(512), "512 B");
  EXPECT_EQ(FormatByteSize(3ull << 29), "1.50 GiB");
  EXPECT_EQ(FormatByteSize(64 << 10), "64.00 KiB");
}

}  // namespace
}  // namespace kvtier
