// putget and verify: write a deterministic chained sequence, read it back, compare bytes.
//
// A block read back counts as a hit when its bytes equal what putget wrote, a mismatch when
// the daemon returned it but its length or bytes differ (the one outcome a cache must never
// produce), and a miss otherwise: not cached, or voided because it was evicted while being
// copied out of the shared arena (client::GetResult's Unavailable).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <vector>

#include "kvtier/client/client.h"
#include "modes.h"
#include "nlohmann/json.hpp"
#include "report.h"
#include "workload.h"

namespace kvtier::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvtier-bench: %.*s\n", static_cast<int>(s.message().size()),
               s.message().data());
  return 1;
}

struct Target {
  std::unique_ptr<client::Client> client;
  client::NamespaceHandle ns;
  std::vector<BlockKey> keys;
};

absl::StatusOr<Target> Open(const CommonOptions& common, const PutGetOptions& o) {
  if (o.blocks == 0 || o.block_bytes == 0 || o.batch == 0) {
    return absl::InvalidArgumentError("--blocks, --block-bytes and --batch must be >= 1");
  }
  Target t;
  auto c = client::Client::Connect(common.uri, BenchClientOptions(common));
  if (!c.ok()) return c.status();
  t.client = *std::move(c);
  auto ns = t.client->OpenNamespace(BenchNamespace(o.block_bytes));
  if (!ns.ok()) return ns.status();
  t.ns = *ns;
  t.keys = ChainedKeys(t.ns.key_seed, o.seed, /*stream=*/0, o.blocks);
  return t;
}

std::string Transport(const client::Client& c) {
  if (c.shared_arena()) return "shared-arena";
  return c.uri().starts_with("tcp://") ? "inline-tcp" : "inline-unix";
}

struct VerifyCounts {
  uint64_t hits = 0, misses = 0, mismatches = 0;
  double seconds = 0;  // inside Get calls
};

absl::StatusOr<VerifyCounts> ReadBack(Target& t, const PutGetOptions& o, Progress* progress) {
  VerifyCounts counts;
  const size_t batch = std::min<uint64_t>(o.batch, o.blocks);
  std::vector<std::byte> got(batch * o.block_bytes), want(o.block_bytes);
  std::vector<std::span<std::byte>> out(batch);
  for (uint64_t start = 0; start < o.blocks; start += batch) {
    const size_t n = std::min<uint64_t>(batch, o.blocks - start);
    for (size_t i = 0; i < n; ++i)
      out[i] = std::span(got).subspan(i * o.block_bytes, o.block_bytes);
    const auto t0 = Clock::now();
    auto results =
        t.client->Get(t.ns, std::span(t.keys).subspan(start, n), std::span(out).first(n));
    counts.seconds += SecondsSince(t0);
    if (!results.ok()) return results.status();
    for (size_t i = 0; i < n; ++i) {
      const client::GetResult& r = (*results)[i];
      if (absl::IsNotFound(r.status) || absl::IsUnavailable(r.status)) {
        ++counts.misses;
        continue;
      }
      FillBlock(o.seed, 0, start + i, want);
      if (r.status.ok() && r.length == o.block_bytes &&
          std::memcmp(out[i].data(), want.data(), o.block_bytes) == 0) {
        ++counts.hits;
      } else {
        ++counts.mismatches;
        std::fprintf(stderr, "kvtier-bench: MISMATCH at block %llu (key %s): %s, %llu bytes\n",
                     static_cast<unsigned long long>(start + i), t.keys[start + i].ToHex().c_str(),
                     r.status.ToString().c_str(), static_cast<unsigned long long>(r.length));
      }
    }
    if (progress) progress->Add(n, n * o.block_bytes);
  }
  return counts;
}

json VerifyJson(const VerifyCounts& c) {
  return json{{"hits", c.hits}, {"misses", c.misses}, {"mismatches", c.mismatches}};
}

}  // namespace

int RunPutGet(const CommonOptions& common, const PutGetOptions& o) {
  auto target = Open(common, o);
  if (!target.ok()) return Fail(target.status());
  Target& t = *target;
  const size_t batch = std::min<uint64_t>(o.batch, o.blocks);
  std::vector<std::byte> buffer(batch * o.block_bytes);
  std::vector<std::span<const std::byte>> blocks(batch);
  uint64_t stored = 0, already = 0, rejected = 0;
  double put_seconds = 0;
  {
    Progress progress("put", common.progress);
    for (uint64_t start = 0; start < o.blocks; start += batch) {
      const size_t n = std::min<uint64_t>(batch, o.blocks - start);
      for (size_t i = 0; i < n; ++i) {
        auto block = std::span(buffer).subspan(i * o.block_bytes, o.block_bytes);
        FillBlock(o.seed, 0, start + i, block);
        blocks[i] = block;
      }
      const auto t0 = Clock::now();
      auto results =
          t.client->Put(t.ns, std::span(t.keys).subspan(start, n), std::span(blocks).first(n));
      put_seconds += SecondsSince(t0);
      if (!results.ok()) return Fail(results.status());
      for (const absl::Status& s : *results) {
        if (s.ok()) {
          ++stored;
        } else if (absl::IsAlreadyExists(s)) {
          ++already;
        } else {
          ++rejected;
        }
      }
      progress.Add(n, n * o.block_bytes);
    }
  }
  const uint64_t bytes = o.blocks * o.block_bytes;
  json out{{"mode", "putget"},
           {"transport", Transport(*t.client)},
           {"blocks", o.blocks},
           {"block_bytes", o.block_bytes},
           {"seed", o.seed},
           {"put",
            {{"seconds", put_seconds},
             {"gbps", Gbps(bytes, put_seconds)},
             {"blocks_per_s", PerSecond(o.blocks, put_seconds)},
             {"stored", stored},
             {"already_cached", already},
             {"rejected", rejected}}}};
  VerifyCounts counts;
  if (o.verify) {
    Progress progress("verify", common.progress);
    auto read = ReadBack(t, o, &progress);
    if (!read.ok()) return Fail(read.status());
    counts = *read;
    out["verify"] = VerifyJson(counts);
    out["verify"]["seconds"] = counts.seconds;
    out["verify"]["gbps"] = Gbps(counts.hits * o.block_bytes, counts.seconds);
  }
  if (common.json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::printf(
        "put    %llu blocks x %llu B over %s in %.3f s: %.3f GB/s, %.0f blocks/s "
        "(stored %llu, already cached %llu, rejected %llu)\n",
        static_cast<unsigned long long>(o.blocks), static_cast<unsigned long long>(o.block_bytes),
        Transport(*t.client).c_str(), put_seconds, Gbps(bytes, put_seconds),
        PerSecond(o.blocks, put_seconds), static_cast<unsigned long long>(stored),
        static_cast<unsigned long long>(already), static_cast<unsigned long long>(rejected));
    if (o.verify) {
      std::printf("verify %llu hits, %llu misses, %llu mismatches in %.3f s: %.3f GB/s\n",
                  static_cast<unsigned long long>(counts.hits),
                  static_cast<unsigned long long>(counts.misses),
                  static_cast<unsigned long long>(counts.mismatches), counts.seconds,
                  Gbps(counts.hits * o.block_bytes, counts.seconds));
    }
  }
  return counts.mismatches > 0 ? 3 : 0;
}

int RunVerify(const CommonOptions& common, const PutGetOptions& o) {
  auto target = Open(common, o);
  if (!target.ok()) return Fail(target.status());
  absl::StatusOr<VerifyCounts> counts;
  {
    Progress progress("verify", common.progress);
    counts = ReadBack(*target, o, &progress);
  }
  if (!counts.ok()) return Fail(counts.status());
  if (common.json) {
    std::cout << VerifyJson(*counts).dump() << "\n";
  } else {
    std::printf("verify %llu blocks: %llu hits, %llu misses, %llu mismatches\n",
                static_cast<unsigned long long>(o.blocks),
                static_cast<unsigned long long>(counts->hits),
                static_cast<unsigned long long>(counts->misses),
                static_cast<unsigned long long>(counts->mismatches));
  }
  return counts->mismatches > 0 ? 3 : 0;
}

}  // namespace kvtier::bench
