#include "kvtier/compression/codec.h"

#include <gtest/gtest.h>

namespace kvtier {
namespace {

TEST(CodecTest, StoredIsZeroOnTheWire) {
  // The numeric value is persisted in records and frames; changing it breaks existing data.
  EXPECT_EQ(static_cast<uint8_t>(CodecId::kStored), 0);
  EXPECT_EQ(CodecName(CodecId::kStored), "stored");
  EXPECT_TRUE(IsKnownCodec(CodecId::kStored));
}

TEST(CodecTest, KvzIsOneOnTheWire) {
  EXPECT_EQ(static_cast<uint8_t>(CodecId::kKvz), 1);
  EXPECT_EQ(CodecName(CodecId::kKvz), "kvz");
  EXPECT_TRUE(IsKnownCodec(CodecId::kKvz));
}

TEST(CodecTest, UnknownValuesAreNamedAndRejected) {
  for (int v = 2; v < 256; ++v) {
    const auto id = static_cast<CodecId>(v);
    EXPECT_EQ(CodecName(id), "unknown") << v;
    EXPECT_FALSE(IsKnownCodec(id)) << v;
  }
}

}  // namespace
}  // namespace kvtier
