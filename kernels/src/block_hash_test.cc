#include "kvtier/kernels/block_hash.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "key_vectors.h"
#include "nlohmann/json.hpp"

namespace kvtier {
namespace {

using nlohmann::json;

json LoadVectors() {
  std::ifstream in(KVTIER_KEY_VECTORS);
  EXPECT_TRUE(in.good()) << "cannot open " << KVTIER_KEY_VECTORS;
  std::stringstream text;
  text << in.rdbuf();
  json doc = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(doc.is_discarded()) << KVTIER_KEY_VECTORS << " is not valid JSON";
  return doc;
}

NamespaceDescriptor Llama() {
  NamespaceDescriptor d;
  d.model_id = "meta-llama/Llama-3.1-8B-Instruct";
  d.dtype = "bf16";
  d.kv_layout = "vllm-nhd";
  d.block_tokens = 16;
  d.block_bytes = 2 << 20;
  return d;
}

std::vector<uint32_t> RandomTokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> tokens(n);
  for (uint32_t& t : tokens) t = static_cast<uint32_t>(rng());
  return tokens;
}

TEST(KeyVectorsTest, CppMatchesCheckedInVectorsByteForByte) {
  const json doc = LoadVectors();
  ASSERT_EQ(doc.value("format", ""), "kvtier.key_vectors.v1");
  ASSERT_GE(doc["cases"].size(), 10u);
  for (const json& c : doc["cases"]) {
    SCOPED_TRACE(c.value("name", "?"));
    absl::StatusOr<json> computed = ComputeKeyCase(c);
    ASSERT_TRUE(computed.ok()) << computed.status();
    EXPECT_EQ((*computed)["canonical_encoding_hex"], c["canonical_encoding_hex"]);
    EXPECT_EQ((*computed)["seed"], c["seed"]);
    EXPECT_EQ((*computed)["keys"], c["keys"]);
  }
}

TEST(KeyVectorsTest, IncrementalExtensionMatchesVectors) {
  // Feed every vector's tokens one at a time, as a decoding engine would.
  const json doc = LoadVectors();
  for (const json& c : doc["cases"]) {
    SCOPED_TRACE(c.value("name", "?"));
    absl::StatusOr<NamespaceDescriptor> d = DescriptorFromJson(c["descriptor"]);
    absl::StatusOr<std::vector<uint32_t>> tokens = TokensFromJson(c["tokens"]);
    ASSERT_TRUE(d.ok() && tokens.ok());
    const BlockKey seed = NamespaceSeed(*d);
    std::vector<BlockKey> keys;
    for (size_t n = 0; n <= tokens->size(); ++n) {
      ExtendPrefixKeys(seed, std::span(*tokens).first(n), d->block_tokens, &keys);
    }
    ASSERT_EQ(keys.size(), c["keys"].size());
    for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(keys[i].ToHex(), c["keys"][i]);
  }
}

TEST(NamespaceSeedTest, EveryFieldSeparatesNamespaces) {
  const NamespaceDescriptor base = Llama();
  const BlockKey base_seed = NamespaceSeed(base);
  std::vector<NamespaceDescriptor> variants;
  auto vary = [&](auto mutate) {
    NamespaceDescriptor d = base;
    mutate(d);
    variants.push_back(d);
  };
  vary([](auto& d) { d.model_id += "x"; });
  vary([](auto& d) { d.dtype = "fp16"; });
  vary([](auto& d) { d.dtype = "fp8e4m3"; });
  vary([](auto& d) { d.kv_layout = "vllm-hnd"; });
  vary([](auto& d) { d.block_tokens = 32; });
  vary([](auto& d) { d.tp_rank = 1, d.tp_size = 2; });
  vary([](auto& d) { d.tp_size = 2; });
  vary([](auto& d) { d.pp_rank = 1, d.pp_size = 2; });
  vary([](auto& d) { d.tenant_salt = "tenant-a"; });
  vary([](auto& d) { d.tenant_salt = std::string("\0", 1); });
  vary([](auto& d) { d.block_bytes += 1; });
  // Length prefixes keep field boundaries: moving bytes between adjacent strings changes the
  // seed even though the concatenation is the same.
  vary([](auto& d) {
    d.model_id += "bf";
    d.dtype = "16";
  });
  for (size_t i = 0; i < variants.size(); ++i) {
    EXPECT_NE(NamespaceSeed(variants[i]), base_seed) << "variant " << i;
    for (size_t j = 0; j < i; ++j) {
      EXPECT_NE(NamespaceSeed(variants[i]), NamespaceSeed(variants[j])) << i << " vs " << j;
    }
  }
}

TEST(NamespaceSeedTest, ZeroParallelSizeMeansOne) {
  NamespaceDescriptor zero = Llama();
  zero.tp_size = 0;
  zero.pp_size = 0;
  EXPECT_EQ(NamespaceSeed(zero), NamespaceSeed(Llama()));
  EXPECT_EQ(CanonicalNamespaceEncoding(zero), CanonicalNamespaceEncoding(Llama()));
}

TEST(NamespaceSeedTest, EncodingStartsWithDomainAndIsLittleEndian) {
  NamespaceDescriptor d;
  d.model_id = "m";
  d.block_tokens = 0x01020304;
  d.block_bytes = 0x1122334455667788;
  const std::string e = CanonicalNamespaceEncoding(d);
  const std::string expected = std::string("kvtier.ns.v1\0", 13) +
                               std::string("\x01\0\0\0m", 5) +         // model_id
                               std::string(4, '\0') +                  // dtype ""
                               std::string(4, '\0') +                  // kv_layout ""
                               std::string("\x04\x03\x02\x01", 4) +    // block_tokens
                               std::string("\0\0\0\0\x01\0\0\0", 8) +  // tp_rank, tp_size
                               std::string("\0\0\0\0\x01\0\0\0", 8) +  // pp_rank, pp_size
                               std::string(4, '\0') +                  // tenant_salt ""
                               std::string("\x88\x77\x66\x55\x44\x33\x22\x11", 8);
  EXPECT_EQ(e, expected);
}

TEST(HashPrefixTest, SharedPrefixGivesSharedKeys) {
  const NamespaceDescriptor d = Llama();
  std::vector<uint32_t> a = RandomTokens(10 * 16 + 5, 1);
  std::vector<uint32_t> b = a;
  b[7 * 16 + 3] ^= 1;  // first difference in block 7
  const std::vector<BlockKey> ka = HashPrefix(d, a);
  const std::vector<BlockKey> kb = HashPrefix(d, b);
  ASSERT_EQ(ka.size(), 10u);
  ASSERT_EQ(kb.size(), 10u);
  for (size_t i = 0; i < 7; ++i) EXPECT_EQ(ka[i], kb[i]) << i;
  // The chain carries the difference into every later block, even where tokens agree again.
  for (size_t i = 7; i < 10; ++i) EXPECT_NE(ka[i], kb[i]) << i;
}

TEST(HashPrefixTest, KeysOfAPrefixArePrefixOfKeys) {
  const NamespaceDescriptor d = Llama();
  const std::vector<uint32_t> tokens = RandomTokens(200, 2);
  const std::vector<BlockKey> all = HashPrefix(d, tokens);
  for (size_t n : {0, 1, 15, 16, 17, 100, 199}) {
    const std::vector<BlockKey> part = HashPrefix(d, std::span(tokens).first(n));
    ASSERT_EQ(part.size(), n / 16);
    EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin())) << n;
  }
}

TEST(HashPrefixTest, SameTokensDifferentNamespaceNeverMatch) {
  NamespaceDescriptor salted = Llama();
  salted.tenant_salt = "other-tenant";
  NamespaceDescriptor rank1 = Llama();
  rank1.tp_rank = 1;
  rank1.tp_size = 2;
  const std::vector<uint32_t> tokens = RandomTokens(64, 3);
  const std::vector<BlockKey> base = HashPrefix(Llama(), tokens);
  for (const NamespaceDescriptor& other : {salted, rank1}) {
    const std::vector<BlockKey> keys = HashPrefix(other, tokens);
    for (size_t i = 0; i < keys.size(); ++i) EXPECT_NE(keys[i], base[i]) << i;
  }
}

TEST(HashPrefixTest, ChainIsSha256OfParentAndTokens) {
  // key[i] depends on the parent key and the block tokens only, so ChainBlockKey reproduces
  // HashPrefix step by step, and AppendBlockKeys continues from any block boundary.
  const BlockKey seed = NamespaceSeed(Llama());
  const std::vector<uint32_t> tokens = RandomTokens(50, 4);
  const std::vector<BlockKey> keys = HashPrefix(seed, tokens, 16);
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0], ChainBlockKey(seed, std::span(tokens).first(16)));
  EXPECT_EQ(keys[1], ChainBlockKey(keys[0], std::span(tokens).subspan(16, 16)));
  std::vector<BlockKey> tail = {keys[0]};
  EXPECT_EQ(AppendBlockKeys(keys[0], std::span(tokens).subspan(16), 16, &tail), 2u);
  EXPECT_EQ(tail, keys);
}

TEST(HashPrefixTest, DegenerateInputsProduceNoKeys) {
  const BlockKey seed = NamespaceSeed(Llama());
  const std::vector<uint32_t> tokens = RandomTokens(40, 5);
  EXPECT_TRUE(HashPrefix(seed, {}, 16).empty());
  EXPECT_TRUE(HashPrefix(seed, std::span(tokens).first(15), 16).empty());
  EXPECT_TRUE(HashPrefix(seed, tokens, 0).empty());
  std::vector<BlockKey> too_many(5);  // claims 5 blocks of 40 tokens: inconsistent
  EXPECT_EQ(ExtendPrefixKeys(seed, tokens, 16, &too_many), 0u);
  EXPECT_EQ(too_many.size(), 5u);
}

TEST(HashPrefixTest, DeterministicAcrossThreads) {
  // Each thread reuses its own OpenSSL context; results must not depend on which thread ran.
  const NamespaceDescriptor d = Llama();
  const std::vector<uint32_t> tokens = RandomTokens(4096, 6);
  const std::vector<BlockKey> want = HashPrefix(d, tokens);
  std::vector<std::vector<BlockKey>> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got) threads.emplace_back([&] { g = HashPrefix(d, tokens); });
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

}  // namespace
}  // namespace kvtier
