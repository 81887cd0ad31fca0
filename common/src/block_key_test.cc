#include "kvtier/common/block_key.h"

#include <gtest/gtest.h>

#include "absl/container/flat_hash_set.h"

namespace kvtier {
namespace {

TEST(BlockKey, HexRoundTrip) {
  const std::string hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
  auto k = BlockKey::FromHex(hex);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->bytes[31], 0x1f);
  EXPECT_EQ(k->ToHex(), hex);
  EXPECT_FALSE(BlockKey::FromHex("abc").ok());
  EXPECT_FALSE(BlockKey::FromHex(std::string(64, 'z')).ok());
}

TEST(BlockKey, HashesAndComparesByAllBytes) {
  BlockKey a, b;
  b.bytes[31] = 1;  // same hash prefix, different key
  absl::flat_hash_set<BlockKey> set{a, b};
  EXPECT_EQ(set.size(), 2u);
  EXPECT_TRUE(set.contains(a));
  EXPECT_NE(a, b);
}

TEST(BlockKey, PackedViewsDoNotCopy) {
  std::string packed(3 * BlockKey::kSize, '\0');
  packed[BlockKey::kSize] = 7;
  auto keys = KeysFromPacked(packed);
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[1].bytes[0], 7);
  EXPECT_EQ(PackedFromKeys(keys).data(), packed.data());
}

}  // namespace
}  // namespace kvtier
