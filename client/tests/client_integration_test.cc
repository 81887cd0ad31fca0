// The client library against the real kvtierd: both data paths, prefix lookup, many clients at
// once, a client that dies holding a reservation, eviction pressure with concurrent readers,
// and kvtierctl's JSON. Every block's bytes are a function of (namespace tag, index), so any
// wrong byte anywhere is caught. Exits 77 (skipped) when kvtierd has not been built.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>

#include "frame_channel.h"
#include "kv_like_data.h"
#include "kvtier/client/client.h"
#include "kvtier/compression/codec.h"
#include "kvtier/compression/kv_codec.h"
#include "kvtier/kernels/block_hash.h"
#include "kvtier/proto/messages.h"
#include "nlohmann/json.hpp"
#include "tests/testing/daemon_process.h"
#include "tests/testing/daemon_test.h"

namespace kvtier::client {
namespace {

using kvtier::testing::DaemonOptions;
using kvtier::testing::DaemonProcess;
using std::chrono::milliseconds;

constexpr uint64_t kBlockBytes = 64 << 10;

std::vector<std::byte> Content(uint64_t tag, uint64_t index, size_t size) {
  std::vector<std::byte> out(size);
  uint64_t x = tag * 0x9e3779b97f4a7c15ull + index * 0xbf58476d1ce4e5b9ull + 1;
  for (size_t i = 0; i < size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, std::min<size_t>(8, size - i));
  }
  return out;
}

// Tokens of a sequence: block b of sequence `seq` holds tokens seq*1e6 + b*16 + t.
std::vector<uint32_t> Tokens(uint32_t seq, uint32_t blocks, uint32_t block_tokens = 16) {
  std::vector<uint32_t> t;
  for (uint32_t i = 0; i < blocks * block_tokens; ++i) t.push_back(seq * 1'000'000 + i);
  return t;
}

NamespaceDescriptor Descriptor(uint64_t block_bytes = kBlockBytes) {
  return kvtier::testing::TestDescriptor("integration-model", block_bytes, "bf16", "test");
}

struct Blocks {
  std::vector<std::vector<std::byte>> data;
  std::vector<std::span<const std::byte>> spans;
};

Blocks MakeBlocks(uint64_t tag, uint64_t first, size_t n, size_t size = kBlockBytes) {
  Blocks b;
  for (size_t i = 0; i < n; ++i) b.data.push_back(Content(tag, first + i, size));
  for (auto& d : b.data) b.spans.emplace_back(d);
  return b;
}

struct Buffers {
  std::vector<std::vector<std::byte>> data;
  std::vector<std::span<std::byte>> spans;
};

Buffers MakeBuffers(size_t n, size_t size = kBlockBytes) {
  Buffers b;
  b.data.assign(n, std::vector<std::byte>(size));
  for (auto& d : b.data) b.spans.emplace_back(d);
  return b;
}

class ClientIntegrationTest : public ::testing::Test {
 protected:
  void StartDaemon(const DaemonOptions& options = {}) {
    auto d = DaemonProcess::Start(options);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
  }

  std::unique_ptr<Client> Connect(const std::string& uri, bool arena = true) {
    ClientOptions options;
    options.client_name = "integration-test";
    options.use_shared_arena = arena;
    auto c = Client::Connect(uri, options);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // Puts, reads back, and checks every byte; returns the client's transport flag.
  void RoundTrip(Client& c, uint64_t tag) {
    auto ns = c.OpenNamespace(Descriptor());
    ASSERT_TRUE(ns.ok()) << ns.status();
    const auto keys = c.HashTokens(*ns, Tokens(tag, 32));
    ASSERT_EQ(keys.size(), 32u);
    Blocks blocks = MakeBlocks(tag, 0, 32);
    blocks.data[31].resize(1000);  // a short last block: lengths travel per block
    blocks.spans[31] = blocks.data[31];
    auto put = c.Put(*ns, keys, blocks.spans);
    ASSERT_TRUE(put.ok()) << put.status();
    for (const auto& s : *put) ASSERT_TRUE(s.ok()) << s;

    auto again = c.Put(*ns, std::span(keys).first(2), std::span(blocks.spans).first(2));
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_TRUE(absl::IsAlreadyExists((*again)[0])) << (*again)[0];

    Buffers out = MakeBuffers(33);
    std::vector<BlockKey> get_keys = keys;
    get_keys.push_back(c.HashTokens(*ns, Tokens(tag + 999, 1))[0]);  // never stored
    auto got = c.Get(*ns, get_keys, out.spans);
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t i = 0; i < 32; ++i) {
      ASSERT_TRUE((*got)[i].status.ok()) << i << ": " << (*got)[i].status;
      ASSERT_EQ((*got)[i].length, blocks.data[i].size());
      EXPECT_EQ((*got)[i].tier, proto::TIER_DRAM);
      ASSERT_EQ(std::memcmp(out.data[i].data(), blocks.data[i].data(), blocks.data[i].size()), 0)
          << "block " << i;
    }
    EXPECT_TRUE(absl::IsNotFound((*got)[32].status)) << (*got)[32].status;

    auto removed = c.Remove(*ns, std::span(keys).first(1));
    ASSERT_TRUE(removed.ok()) << removed.status();
    EXPECT_TRUE((*removed)[0].ok());
    got = c.Get(*ns, std::span(keys).first(1), std::span(out.spans).first(1));
    ASSERT_TRUE(got.ok());
    EXPECT_TRUE(absl::IsNotFound((*got)[0].status));
  }

  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(ClientIntegrationTest, SharedArenaRoundTrip) {
  StartDaemon();
  auto c = Connect(daemon_->unix_uri());
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->shared_arena()) << "the daemon did not hand over its arena";
  RoundTrip(*c, 1);
}

// PutInPlace and GetInPlace (the GPU path's zero-copy calls) with the CPU standing in for the
// copy engine: slots of the right length, nothing to write for cached keys, nothing to read for
// misses, a failing callback stores nothing and leaks no reservation, encoded blocks keep their
// codec, and connections without the arena refuse the calls.
TEST_F(ClientIntegrationTest, InPlacePutAndGetThroughTheArena) {
  StartDaemon({.tcp = true});
  auto c = Connect(daemon_->unix_uri());
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->shared_arena());
  EXPECT_FALSE(c->arena_memory().empty());
  auto ns = c->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok()) << ns.status();
  const auto keys = c->HashTokens(*ns, Tokens(40, 24));
  Blocks blocks = MakeBlocks(40, 0, 24);
  blocks.data[5].resize(4097);  // lengths travel per block
  blocks.spans[5] = blocks.data[5];
  std::vector<uint64_t> lengths;
  for (const auto& b : blocks.spans) lengths.push_back(b.size());
  const std::span<std::byte> arena = c->arena_memory();
  auto in_arena = [&](std::span<const std::byte> slot) {
    return slot.data() >= arena.data() && slot.data() + slot.size() <= arena.data() + arena.size();
  };

  // The first 16 keys, then all 24: the first 16 are cached by then and get no slot.
  for (size_t count : {size_t{16}, size_t{24}}) {
    int calls = 0;
    auto put =
        c->PutInPlace(*ns, std::span(keys).first(count), std::span(lengths).first(count),
                      [&](std::span<const std::span<std::byte>> slots) {
                        ++calls;
                        EXPECT_EQ(slots.size(), count);
                        for (size_t i = 0; i < slots.size(); ++i) {
                          if (count == 24 && i < 16) {
                            EXPECT_TRUE(slots[i].empty()) << "cached block " << i << " got a slot";
                            continue;
                          }
                          EXPECT_EQ(slots[i].size(), lengths[i]);
                          EXPECT_TRUE(in_arena(slots[i]));
                          std::memcpy(slots[i].data(), blocks.spans[i].data(), slots[i].size());
                        }
                        return absl::OkStatus();
                      });
    ASSERT_TRUE(put.ok()) << put.status();
    EXPECT_EQ(calls, 1);
    for (size_t i = 0; i < count; ++i) {
      if (count == 24 && i < 16) {
        EXPECT_TRUE(absl::IsAlreadyExists((*put)[i])) << i << ": " << (*put)[i];
      } else {
        EXPECT_TRUE((*put)[i].ok()) << i << ": " << (*put)[i];
      }
    }
  }

  // Read back with Get, and in place with a miss among the keys.
  Buffers out = MakeBuffers(24);
  auto got = c->Get(*ns, keys, out.spans);
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < 24; ++i) {
    ASSERT_TRUE((*got)[i].status.ok()) << i << ": " << (*got)[i].status;
    ASSERT_EQ(std::memcmp(out.data[i].data(), blocks.data[i].data(), lengths[i]), 0) << i;
  }
  std::vector<BlockKey> get_keys = keys;
  get_keys.push_back(c->HashTokens(*ns, Tokens(41, 1))[0]);  // never stored
  Buffers copied = MakeBuffers(25);
  auto read = c->GetInPlace(
      *ns, get_keys,
      [&](std::span<const std::span<const std::byte>> slots, std::span<const GetResult> results) {
        EXPECT_EQ(slots.size(), 25u);
        EXPECT_TRUE(slots[24].empty());
        for (size_t i = 0; i < slots.size(); ++i) {
          if (slots[i].empty()) continue;
          EXPECT_TRUE(in_arena(slots[i]));
          EXPECT_EQ(slots[i].size(), results[i].length);
          std::memcpy(copied.data[i].data(), slots[i].data(), slots[i].size());
        }
        return absl::OkStatus();
      });
  ASSERT_TRUE(read.ok()) << read.status();
  for (size_t i = 0; i < 24; ++i) {
    ASSERT_TRUE((*read)[i].status.ok()) << i << ": " << (*read)[i].status;
    EXPECT_EQ((*read)[i].length, lengths[i]);
    EXPECT_EQ((*read)[i].tier, proto::TIER_DRAM);
    EXPECT_EQ((*read)[i].codec, 0);
    ASSERT_EQ(std::memcmp(copied.data[i].data(), blocks.data[i].data(), lengths[i]), 0) << i;
  }
  EXPECT_TRUE(absl::IsNotFound((*read)[24].status)) << (*read)[24].status;

  // A failing fill: the call says why, nothing is stored, and the reservation is given back
  // (the same keys go in right away, not after the lease times out).
  const auto more = c->HashTokens(*ns, Tokens(42, 8));
  const std::vector<uint64_t> full(8, kBlockBytes);
  Blocks more_blocks = MakeBlocks(42, 0, 8);
  auto failed = c->PutInPlace(*ns, more, full, [](std::span<const std::span<std::byte>>) {
    return absl::InternalError("the copy engine failed");
  });
  EXPECT_EQ(failed.status(), absl::InternalError("the copy engine failed"));
  auto after = c->Get(*ns, more, MakeBuffers(8).spans);
  ASSERT_TRUE(after.ok()) << after.status();
  for (const auto& r : *after) EXPECT_TRUE(absl::IsNotFound(r.status)) << r.status;
  auto retried = c->PutInPlace(*ns, more, full, [&](std::span<const std::span<std::byte>> slots) {
    for (size_t i = 0; i < slots.size(); ++i) {
      std::memcpy(slots[i].data(), more_blocks.spans[i].data(), slots[i].size());
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(retried.ok()) << retried.status();
  for (const auto& s : *retried) EXPECT_TRUE(s.ok()) << s;
  // A failing read: the call says why and the connection goes on (its lease was given back).
  auto bad_read = c->GetInPlace(
      *ns, more, [](std::span<const std::span<const std::byte>>, std::span<const GetResult>) {
        return absl::InternalError("the copy engine failed");
      });
  EXPECT_EQ(bad_read.status(), absl::InternalError("the copy engine failed"));
  auto still = c->Get(*ns, more, MakeBuffers(8).spans);
  ASSERT_TRUE(still.ok()) << still.status();
  for (const auto& r : *still) EXPECT_TRUE(r.status.ok()) << r.status;
  // Lengths are checked as Put checks them, before anything is sent.
  const std::vector<uint64_t> too_long = {kBlockBytes + 1};
  auto refused = c->PutInPlace(*ns, std::span(more).first(1), too_long,
                               [](std::span<const std::span<std::byte>>) {
                                 ADD_FAILURE() << "fill called for a refused put";
                                 return absl::OkStatus();
                               });
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();

  // Encoded blocks keep their codec: a kvz frame put in place decodes on a plain Get.
  proto::NamespaceOptions kvz;
  kvz.set_compression(proto::COMPRESSION_KVZ);
  auto zns = c->OpenNamespace(
      kvtier::testing::TestDescriptor("integration-model-kvz", kBlockBytes, "bf16", "test"), kvz);
  ASSERT_TRUE(zns.ok()) << zns.status();
  const std::vector<std::byte> raw =
      kvtier::testing::GenerateKvBlock(KvDtype::kBf16, 2, 16, 2, 256, 7);
  ASSERT_EQ(raw.size(), kBlockBytes);
  auto frame = Compress(raw, CodecOptions{.dtype = KvDtype::kBf16});
  ASSERT_TRUE(frame.ok()) << frame.status();
  ASSERT_LT(frame->size(), raw.size());
  const auto zkey = c->HashTokens(*zns, Tokens(43, 1));
  const std::vector<uint64_t> frame_length = {frame->size()};
  const std::vector<uint8_t> codecs = {static_cast<uint8_t>(CodecId::kKvz)};
  const std::vector<uint64_t> raw_lengths = {raw.size()};
  auto zput = c->PutInPlace(
      *zns, zkey, frame_length,
      [&](std::span<const std::span<std::byte>> slots) {
        std::memcpy(slots[0].data(), frame->data(), frame->size());
        return absl::OkStatus();
      },
      PutOptions{.codecs = codecs, .raw_lengths = raw_lengths});
  ASSERT_TRUE(zput.ok()) << zput.status();
  ASSERT_TRUE((*zput)[0].ok()) << (*zput)[0];
  Buffers decoded = MakeBuffers(1);
  auto zget = c->Get(*zns, zkey, decoded.spans);
  ASSERT_TRUE(zget.ok()) << zget.status();
  ASSERT_TRUE((*zget)[0].status.ok()) << (*zget)[0].status;
  ASSERT_EQ((*zget)[0].length, raw.size());
  EXPECT_EQ(std::memcmp(decoded.data[0].data(), raw.data(), raw.size()), 0);
  auto zread = c->GetInPlace(
      *zns, zkey,
      [&](std::span<const std::span<const std::byte>> slots, std::span<const GetResult> results) {
        EXPECT_EQ(results[0].codec, static_cast<uint8_t>(CodecId::kKvz));
        EXPECT_EQ(results[0].raw_length, raw.size());
        EXPECT_TRUE(std::equal(slots[0].begin(), slots[0].end(), frame->begin(), frame->end()));
        return absl::OkStatus();
      });
  ASSERT_TRUE(zread.ok()) << zread.status();
  EXPECT_TRUE((*zread)[0].status.ok()) << (*zread)[0].status;

  // Without the arena there is nothing to write into: the caller uses Put and Get.
  auto tcp = Connect(daemon_->tcp_uri());
  ASSERT_NE(tcp, nullptr);
  EXPECT_TRUE(tcp->arena_memory().empty());
  auto no_arena =
      tcp->PutInPlace(*ns, std::span(more).first(1), std::span(full).first(1),
                      [](std::span<const std::span<std::byte>>) { return absl::OkStatus(); });
  EXPECT_TRUE(absl::IsFailedPrecondition(no_arena.status())) << no_arena.status();
  auto no_arena_get = tcp->GetInPlace(*ns, std::span(more).first(1),
                                      [](std::span<const std::span<const std::byte>>,
                                         std::span<const GetResult>) { return absl::OkStatus(); });
  EXPECT_TRUE(absl::IsFailedPrecondition(no_arena_get.status())) << no_arena_get.status();
}

// The two-step forms: several reservations and gets open at once on one connection, written
// and copied out of order; abort stores nothing; a commit after the write deadline stores
// nothing; a reservation is finished once; batches over max_keys_per_request are refused.
TEST_F(ClientIntegrationTest, TwoStepPutsAndGetsOverlap) {
  StartDaemon({.extra_args = {"--lease-timeout", "300"}});
  auto c = Connect(daemon_->unix_uri());
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->shared_arena());
  auto ns = c->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok()) << ns.status();
  const auto keys = c->HashTokens(*ns, Tokens(50, 12));
  Blocks blocks = MakeBlocks(50, 0, 12);
  const std::vector<uint64_t> lengths(12, kBlockBytes);
  auto first = c->ReservePut(*ns, std::span(keys).first(6), std::span(lengths).first(6));
  auto second = c->ReservePut(*ns, std::span(keys).subspan(6), std::span(lengths).subspan(6));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  for (auto* put : {&*second, &*first}) {
    const size_t base = put == &*first ? 0 : 6;
    ASSERT_EQ(put->slots().size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
      ASSERT_EQ(put->slots()[i].size(), kBlockBytes);
      std::memcpy(put->slots()[i].data(), blocks.spans[base + i].data(), kBlockBytes);
    }
  }
  for (auto* put : {&*second, &*first}) {
    auto committed = c->CommitPut(*put);
    ASSERT_TRUE(committed.ok()) << committed.status();
    for (const auto& s : *committed) EXPECT_TRUE(s.ok()) << s;
    EXPECT_TRUE(absl::IsFailedPrecondition(c->CommitPut(*put).status()));
    EXPECT_TRUE(absl::IsFailedPrecondition(c->AbortPut(*put)));
  }
  auto a = c->StartGet(*ns, std::span(keys).first(6));
  auto started_b = c->StartGet(*ns, std::span(keys).subspan(6));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(started_b.ok()) << started_b.status();
  auto b = std::optional<StartedGet>(std::move(*started_b));  // the moved-from one is finished
  EXPECT_TRUE(absl::IsFailedPrecondition(c->FinishGet(*started_b).status()));
  Buffers out = MakeBuffers(12);
  for (auto* get : {&*b, &*a}) {
    const size_t base = get == &*a ? 0 : 6;
    for (size_t i = 0; i < 6; ++i) {
      ASSERT_TRUE(get->results()[i].status.ok()) << get->results()[i].status;
      std::memcpy(out.data[base + i].data(), get->slots()[i].data(), get->slots()[i].size());
    }
    auto finished = c->FinishGet(*get);
    ASSERT_TRUE(finished.ok()) << finished.status();
    for (const auto& r : *finished) EXPECT_TRUE(r.status.ok()) << r.status;
    EXPECT_TRUE(absl::IsFailedPrecondition(c->FinishGet(*get).status()));
  }
  for (size_t i = 0; i < 12; ++i) {
    ASSERT_EQ(std::memcmp(out.data[i].data(), blocks.data[i].data(), kBlockBytes), 0) << i;
  }

  // Aborted, and committed too late: nothing stored either way.
  const auto more = c->HashTokens(*ns, Tokens(51, 2));
  auto aborted = c->ReservePut(*ns, std::span(more).first(1), std::span(lengths).first(1));
  ASSERT_TRUE(aborted.ok()) << aborted.status();
  ReservedPut moved = std::move(*aborted);  // the moved-from one is finished
  EXPECT_TRUE(absl::IsFailedPrecondition(c->AbortPut(*aborted)));
  EXPECT_TRUE(c->AbortPut(moved).ok());
  auto late = c->ReservePut(*ns, std::span(more).subspan(1), std::span(lengths).first(1));
  ASSERT_TRUE(late.ok()) << late.status();
  std::this_thread::sleep_for(milliseconds(400));  // past the 300 ms lease
  auto committed = c->CommitPut(*late);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_TRUE(absl::IsDeadlineExceeded((*committed)[0])) << (*committed)[0];
  auto gone = c->Get(*ns, more, MakeBuffers(2).spans);
  ASSERT_TRUE(gone.ok()) << gone.status();
  for (const auto& r : *gone) EXPECT_TRUE(absl::IsNotFound(r.status)) << r.status;

  const uint32_t limit = c->server_info().max_keys_per_request();
  std::vector<BlockKey> many(limit + 1, keys[0]);
  std::vector<uint64_t> many_lengths(limit + 1, 1);
  EXPECT_TRUE(absl::IsInvalidArgument(c->ReservePut(*ns, many, many_lengths).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(c->StartGet(*ns, many).status()));
}

TEST_F(ClientIntegrationTest, InlineRoundTripOverTcpAndUnix) {
  StartDaemon({.tcp = true});
  auto tcp = Connect(daemon_->tcp_uri());
  ASSERT_NE(tcp, nullptr);
  EXPECT_FALSE(tcp->shared_arena());
  RoundTrip(*tcp, 2);
  auto unix_inline = Connect(daemon_->unix_uri(), /*arena=*/false);
  ASSERT_NE(unix_inline, nullptr);
  EXPECT_FALSE(unix_inline->shared_arena());
  RoundTrip(*unix_inline, 3);
}

TEST_F(ClientIntegrationTest, LookupFindsTheLongestCachedPrefix) {
  StartDaemon();
  auto c = Connect(daemon_->unix_uri());
  ASSERT_NE(c, nullptr);
  auto ns = c->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok()) << ns.status();
  // The daemon's seed is the documented NamespaceSeed, so engines may hash keys themselves.
  EXPECT_EQ(ns->key_seed, NamespaceSeed(Descriptor()));
  const auto tokens = Tokens(7, 10);
  const auto keys = c->HashTokens(*ns, tokens);
  ASSERT_EQ(keys, HashPrefix(NamespaceSeed(Descriptor()), tokens, 16));

  Blocks blocks = MakeBlocks(7, 0, 10);
  ASSERT_TRUE(c->Put(*ns, std::span(keys).first(6), std::span(blocks.spans).first(6)).ok());
  ASSERT_TRUE(c->Put(*ns, std::span(keys).subspan(8, 1), std::span(blocks.spans).subspan(8, 1))
                  .ok());  // after a gap: not part of the prefix
  auto found = c->Lookup(*ns, keys);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->prefix_blocks, 6u);
  ASSERT_EQ(found->tiers.size(), 6u);
  for (auto t : found->tiers) EXPECT_EQ(t, proto::TIER_DRAM);

  auto other = c->OpenNamespace([] {
    NamespaceDescriptor d = Descriptor();
    d.tenant_salt = "another tenant";
    return d;
  }());
  ASSERT_TRUE(other.ok());
  found = c->Lookup(*other, keys);  // same keys, other namespace: nothing shared
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->prefix_blocks, 0u);

  auto async = c->LookupAsync(*ns, keys).get();
  ASSERT_TRUE(async.ok()) << async.status();
  EXPECT_EQ(async->prefix_blocks, 6u);
}

TEST_F(ClientIntegrationTest, ConcurrentClientsWithDistinctAndSharedKeys) {
  StartDaemon({.dram_capacity = "256MiB", .tcp = true});
  constexpr int kThreads = 8, kRounds = 15, kBatch = 8;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto c = Connect(t % 2 == 0 ? daemon_->unix_uri() : daemon_->tcp_uri());
      if (c == nullptr) return (void)++failures;
      auto ns = c->OpenNamespace(Descriptor());
      if (!ns.ok()) return (void)++failures;
      const auto shared_keys = c->HashTokens(*ns, Tokens(500, kBatch));
      Blocks shared = MakeBlocks(500, 0, kBatch);
      for (int r = 0; r < kRounds; ++r) {
        const uint32_t seq = 1000 + t * 100 + r;
        const auto keys = c->HashTokens(*ns, Tokens(seq, kBatch));
        Blocks mine = MakeBlocks(seq, 0, kBatch);
        Buffers out = MakeBuffers(kBatch), shared_out = MakeBuffers(kBatch);
        absl::StatusOr<std::vector<absl::Status>> put, shared_put;
        absl::StatusOr<std::vector<GetResult>> got, shared_got;
        if (t == 0) {  // one thread drives the async API, whose workers own more connections
          auto f1 = c->PutAsync(*ns, keys, mine.spans);
          auto f2 = c->PutAsync(*ns, shared_keys, shared.spans);
          put = f1.get();
          shared_put = f2.get();
          auto g1 = c->GetAsync(*ns, keys, out.spans);
          auto g2 = c->GetAsync(*ns, shared_keys, shared_out.spans);
          got = g1.get();
          shared_got = g2.get();
        } else {
          put = c->Put(*ns, keys, mine.spans);
          shared_put = c->Put(*ns, shared_keys, shared.spans);
          got = c->Get(*ns, keys, out.spans);
          shared_got = c->Get(*ns, shared_keys, shared_out.spans);
        }
        if (!put.ok() || !shared_put.ok() || !got.ok() || !shared_got.ok()) {
          ADD_FAILURE() << "thread " << t << ": " << put.status() << shared_put.status()
                        << got.status() << shared_got.status();
          return (void)++failures;
        }
        // A shared key's put answers AlreadyExists while another thread's put of it is still
        // being copied in, so this thread's get may come before that commit: retry the
        // misses for a while (every put commits within milliseconds here).
        for (int attempt = 0; attempt < 200; ++attempt) {
          bool missing = false;
          for (int i = 0; i < kBatch; ++i) missing |= absl::IsNotFound((*shared_got)[i].status);
          if (!missing) break;
          std::this_thread::sleep_for(milliseconds(10));
          shared_got = c->Get(*ns, shared_keys, shared_out.spans);
          if (!shared_got.ok()) {
            ADD_FAILURE() << "thread " << t << ": " << shared_got.status();
            return (void)++failures;
          }
        }
        for (int i = 0; i < kBatch; ++i) {
          EXPECT_TRUE((*put)[i].ok()) << (*put)[i];
          EXPECT_TRUE(IsStored((*shared_put)[i])) << (*shared_put)[i];
          // 256 MiB holds everything: each block must come back, byte for byte.
          EXPECT_TRUE((*got)[i].status.ok()) << (*got)[i].status;
          EXPECT_TRUE((*shared_got)[i].status.ok()) << (*shared_got)[i].status;
          if (((*got)[i].status.ok() && out.data[i] != mine.data[i]) ||
              ((*shared_got)[i].status.ok() && shared_out.data[i] != shared.data[i])) {
            ADD_FAILURE() << "wrong bytes: thread " << t << " round " << r << " block " << i;
            ++failures;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

// A client that reserves most of the DRAM tier and dies before committing must not keep that
// space: the daemon ends its leases when the connection closes (its keys leave the index at
// once) and gives the slots back one lease timeout later -- a closed connection does not prove
// that the process stopped writing into them (tiers/dram_tier.h, ReleaseOwner).
TEST_F(ClientIntegrationTest, ClientKilledMidPutDoesNotLeakCapacity) {
  StartDaemon({.dram_capacity = "64MiB", .extra_args = {"--lease-timeout", "1000"}});
  constexpr uint32_t kReserve = 800;  // 50 MiB of 64 MiB
  auto c = Connect(daemon_->unix_uri());
  ASSERT_NE(c, nullptr);
  auto ns = c->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok());
  const auto child_keys = c->HashTokens(*ns, Tokens(77, kReserve));

  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Speak the protocol by hand: hello with the arena, reserve, copy half a block, die.
    close(pipe_fds[0]);
    auto sock = Socket::Connect(*ParseEndpoint(daemon_->unix_uri()), milliseconds(2000));
    if (!sock.ok()) _exit(2);
    FrameChannel ch(*std::move(sock), milliseconds(5000));
    proto::HelloRequest hello;
    hello.set_protocol_version(proto::kProtocolVersion);
    hello.set_want_shared_arena(true);
    proto::HelloReply hello_reply;
    int arena_fd = -1;
    if (!ch.Call(proto::Opcode::kHello, hello, &hello_reply, &arena_fd).ok()) _exit(3);
    proto::OpenNamespaceRequest open;
    *open.mutable_namespace_descriptor() = proto::ToProto(Descriptor());
    proto::OpenNamespaceReply open_reply;
    if (!ch.Call(proto::Opcode::kOpenNamespace, open, &open_reply).ok()) _exit(4);
    proto::PutRequest put;
    put.set_namespace_id(open_reply.namespace_id());
    put.set_keys(std::string(PackedFromKeys(child_keys)));
    put.set_mode(proto::DATA_SHARED_ARENA);
    for (uint32_t i = 0; i < kReserve; ++i) put.add_lengths(kBlockBytes);
    proto::PutReply reserved;
    if (!ch.Call(proto::Opcode::kPut, put, &reserved).ok()) _exit(5);
    uint32_t ok = 0;
    for (int code : reserved.codes()) ok += code == 0;
    void* arena = mmap(nullptr, hello_reply.arena().size_bytes(), PROT_READ | PROT_WRITE,
                       MAP_SHARED, arena_fd, 0);
    if (arena != MAP_FAILED && ok > 0) {
      std::memset(static_cast<char*>(arena) + reserved.offsets(0), 0xee, kBlockBytes / 2);
    }
    (void)!write(pipe_fds[1], &ok, sizeof(ok));
    _exit(1);  // no commit, no release: a crash mid-put
  }
  close(pipe_fds[1]);
  uint32_t child_reserved = 0;
  ASSERT_EQ(read(pipe_fds[0], &child_reserved, sizeof(child_reserved)),
            static_cast<ssize_t>(sizeof(child_reserved)));
  close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "child status " << status;
  ASSERT_EQ(child_reserved, kReserve) << "the child could not reserve its blocks";

  // The daemon notices the closed connection asynchronously: wait for its leases to go.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    auto stats = c->Stats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (stats->server().leases_active() == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << stats->server().leases_active() << " leases still active after the child died";
    std::this_thread::sleep_for(milliseconds(20));
  }
  auto lookup = c->Lookup(*ns, child_keys);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix_blocks, 0u) << "uncommitted blocks became visible";
  // The same amount again fits only once the child's reservation is given back, which the
  // daemon does one lease timeout after the disconnect: retry for a few lease timeouts.
  const auto keys = c->HashTokens(*ns, Tokens(78, kReserve));
  Blocks blocks = MakeBlocks(78, 0, kReserve);
  const auto freed_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto put = c->Put(*ns, keys, blocks.spans);
    ASSERT_TRUE(put.ok()) << put.status();
    size_t stored = 0;
    for (const auto& s : *put) stored += IsStored(s);
    if (stored == kReserve) break;
    ASSERT_LT(std::chrono::steady_clock::now(), freed_by)
        << "only " << stored << " of " << kReserve << " blocks fit 10 s after the child died";
    std::this_thread::sleep_for(milliseconds(100));
  }
  Buffers out = MakeBuffers(kReserve);
  auto got = c->Get(*ns, keys, out.spans);
  ASSERT_TRUE(got.ok());
  for (uint32_t i = 0; i < kReserve; ++i) {
    ASSERT_TRUE((*got)[i].status.ok()) << i << ": " << (*got)[i].status;
    ASSERT_EQ(out.data[i], blocks.data[i]) << "block " << i;
  }
}

// A prefetch hint for a block in DRAM counts as a use (docs/protocol.md, prefetch): under LRU
// the hinted oldest block outlives the blocks put after it, which go first.
TEST_F(ClientIntegrationTest, APrefetchHintIsAUseForEviction) {
  StartDaemon({.dram_capacity = "64MiB", .extra_args = {"--eviction-policy", "lru"}});
  auto c = Connect(daemon_->unix_uri());
  ASSERT_NE(c, nullptr);
  auto ns = c->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok());
  constexpr uint64_t kFirst = 1000, kMore = 500;  // 64 MiB holds 1,024 blocks of 64 KiB
  const auto keys = c->HashTokens(*ns, Tokens(11, kFirst + kMore));
  auto put_range = [&](uint64_t begin, uint64_t end) {
    for (uint64_t start = begin; start < end; start += 100) {
      Blocks blocks = MakeBlocks(11, start, std::min<uint64_t>(100, end - start));
      auto put = c->Put(*ns, std::span(keys).subspan(start, blocks.spans.size()), blocks.spans);
      ASSERT_TRUE(put.ok()) << put.status();
      for (const auto& st : *put) ASSERT_TRUE(st.ok()) << st;
    }
  };
  put_range(0, kFirst);
  auto hint = c->Prefetch(*ns, std::span(keys).first(1));
  ASSERT_TRUE(hint.ok()) << hint.status();
  EXPECT_EQ(hint->in_dram, 1u);
  put_range(kFirst, kFirst + kMore);  // evicts the oldest blocks
  Buffers out = MakeBuffers(2);
  auto got = c->Get(*ns, std::span(keys).first(2), out.spans);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE((*got)[0].status.ok()) << "the hinted block was evicted: " << (*got)[0].status;
  EXPECT_EQ(out.data[0], Content(11, 0, kBlockBytes));
  EXPECT_TRUE(absl::IsNotFound((*got)[1].status)) << (*got)[1].status;
}

// Writes four times the DRAM tier's capacity while readers fetch random earlier blocks over
// the arena and TCP. Misses are expected; a hit with wrong bytes is the one forbidden outcome.
TEST_F(ClientIntegrationTest, EvictionUnderPressureNeverReturnsWrongBytes) {
  StartDaemon({.dram_capacity = "64MiB", .tcp = true});
  constexpr uint64_t kTotal = 4096, kBatch = 32;  // 256 MiB through a 64 MiB tier
  std::atomic<uint64_t> written{0};
  std::atomic<bool> done{false};
  std::atomic<uint64_t> hits{0}, misses{0}, wrong{0};
  auto writer_client = Connect(daemon_->unix_uri());
  ASSERT_NE(writer_client, nullptr);
  auto ns = writer_client->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok());
  // One chained sequence: block i's key is keys[i], its bytes Content(9, i).
  const auto keys = writer_client->HashTokens(*ns, Tokens(9, kTotal));

  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      auto c = Connect(r == 2 ? daemon_->tcp_uri() : daemon_->unix_uri());
      if (c == nullptr) return;
      std::mt19937_64 rng(r);
      Buffers out = MakeBuffers(8);
      std::vector<BlockKey> batch(8);
      std::vector<uint64_t> index(8);
      while (!done.load()) {
        const uint64_t upto = written.load();
        if (upto == 0) continue;
        for (int i = 0; i < 8; ++i) {
          index[i] = rng() % upto;
          batch[i] = keys[index[i]];
        }
        auto got = c->Get(*ns, batch, out.spans);
        ASSERT_TRUE(got.ok()) << got.status();
        for (int i = 0; i < 8; ++i) {
          if (!(*got)[i].status.ok()) {
            ++misses;
            continue;
          }
          ++hits;
          if ((*got)[i].length != kBlockBytes || out.data[i] != Content(9, index[i], kBlockBytes)) {
            ++wrong;
          }
        }
      }
    });
  }
  for (uint64_t start = 0; start < kTotal; start += kBatch) {
    Blocks blocks = MakeBlocks(9, start, kBatch);
    auto put = writer_client->Put(*ns, std::span(keys).subspan(start, kBatch), blocks.spans);
    ASSERT_TRUE(put.ok()) << put.status();
    for (const auto& s : *put) ASSERT_TRUE(s.ok() || absl::IsResourceExhausted(s)) << s;
    written = start + kBatch;
  }
  done = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(wrong.load(), 0u) << "hits " << hits << ", misses " << misses;
  EXPECT_GT(hits.load(), 0u);
  auto stats = writer_client->Stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_GE(stats->tiers_size(), 1);
  EXPECT_GT(stats->tiers(0).counters().evictions(), 0u);
  EXPECT_LE(stats->tiers(0).used_bytes(), stats->tiers(0).capacity_bytes());
  // The newest blocks survive eviction (LRU), and they read back exactly.
  Buffers out = MakeBuffers(kBatch);
  auto got = writer_client->Get(*ns, std::span(keys).subspan(kTotal - kBatch, kBatch), out.spans);
  ASSERT_TRUE(got.ok());
  for (uint64_t i = 0; i < kBatch; ++i) {
    if ((*got)[i].status.ok()) {
      EXPECT_EQ(out.data[i], Content(9, kTotal - kBatch + i, kBlockBytes));
    }
  }
}

// Runs kvtierctl and returns {exit status, stdout}.
std::pair<int, std::string> RunCtl(const std::string& args) {
  const std::string cmd = std::string(KVTIERCTL_PATH) + " " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST_F(ClientIntegrationTest, KvtierctlJsonStatsFieldsAndInvariants) {
  if (access(KVTIERCTL_PATH, X_OK) != 0) GTEST_SKIP() << KVTIERCTL_PATH << " is not built";
  StartDaemon();
  auto c = Connect(daemon_->unix_uri());
  ASSERT_NE(c, nullptr);
  auto ns = c->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok());
  const auto keys = c->HashTokens(*ns, Tokens(3, 15));
  Blocks blocks = MakeBlocks(3, 0, 10);
  ASSERT_TRUE(c->Put(*ns, std::span(keys).first(10), blocks.spans).ok());
  Buffers out = MakeBuffers(15);
  auto got = c->Get(*ns, keys, out.spans);  // 10 hits, 5 misses
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(c->Lookup(*ns, keys).ok());

  const std::string where = "--socket " + daemon_->socket_path();
  auto [rc, text] = RunCtl(where + " --json stats");
  ASSERT_EQ(rc, 0) << text;
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << text;
  for (const char* f : {"uptime_ms", "connections_total", "connections_active", "requests",
                        "bad_frames", "error_replies", "leases_active", "leases_expired"}) {
    EXPECT_TRUE(j["server"].contains(f)) << f;
  }
  EXPECT_GE(j["server"]["connections_active"].get<uint64_t>(), 1u);
  ASSERT_EQ(j["tiers"].size(), 1u);
  const auto& dram = j["tiers"][0];
  EXPECT_EQ(dram["tier"], "dram");
  for (const char* f : {"capacity_bytes", "used_bytes", "blocks", "hits", "misses", "hit_rate",
                        "evictions", "bytes_in", "bytes_out", "lookup_keys", "lookup_hit_keys"}) {
    EXPECT_TRUE(dram.contains(f)) << f;
  }
  // Invariants: hits + misses == keys asked for by gets; lookup hits never exceed lookups.
  EXPECT_EQ(dram["hits"].get<uint64_t>() + dram["misses"].get<uint64_t>(), 15u);
  EXPECT_EQ(dram["hits"], 10);
  EXPECT_EQ(dram["blocks"], 10);
  EXPECT_EQ(dram["bytes_in"], 10 * kBlockBytes);
  EXPECT_EQ(dram["bytes_out"], 10 * kBlockBytes);
  EXPECT_LE(dram["lookup_hit_keys"].get<uint64_t>(), dram["lookup_keys"].get<uint64_t>());
  EXPECT_LE(dram["used_bytes"].get<uint64_t>(), dram["capacity_bytes"].get<uint64_t>());
  ASSERT_EQ(j["namespaces"].size(), 1u);
  const auto& n = j["namespaces"][0];
  EXPECT_EQ(n["model_id"], "integration-model");
  EXPECT_EQ(n["block_bytes"], kBlockBytes);
  EXPECT_EQ(n["hits"].get<uint64_t>() + n["misses"].get<uint64_t>(), 15u);

  auto [health_rc, health] = RunCtl(where + " --json health");
  EXPECT_EQ(health_rc, 0);
  EXPECT_NE(health.find("\"serving\": true"), std::string::npos) << health;
  auto [table_rc, table] = RunCtl(where + " stats");
  EXPECT_EQ(table_rc, 0);
  EXPECT_NE(table.find("integration-model"), std::string::npos) << table;

  ASSERT_TRUE(daemon_->Stop(SIGTERM).ok());
  auto [down_rc, down] = RunCtl(where + " stats");
  EXPECT_EQ(down_rc, 1) << down;
}

TEST_F(ClientIntegrationTest, WrongAuthTokenAndVanishedDaemon) {
  StartDaemon({.extra_args = {"--auth-token", "s3cret"}});
  auto refused = Client::Connect(daemon_->unix_uri(), ClientOptions());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("auth"), std::string::npos)
      << refused.status();
  ClientOptions options;
  options.auth_token = "s3cret";
  auto c = Client::Connect(daemon_->unix_uri(), options);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Health().ok());
  ASSERT_TRUE(daemon_->Stop(SIGTERM).ok());
  auto health = (*c)->Health();
  EXPECT_EQ(health.status().code(), absl::StatusCode::kUnavailable) << health.status();
}

}  // namespace
}  // namespace kvtier::client

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const std::string kvtierd = kvtier::testing::DaemonProcess::BinaryPath();
  if (!std::filesystem::exists(kvtierd)) {
    std::fprintf(stderr, "skipped: %s is not built\n", kvtierd.c_str());
    return 77;
  }
  return RUN_ALL_TESTS();
}
