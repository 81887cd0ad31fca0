// keyops: what each key costs on the request path, without the bytes. One client puts batches
// of fresh keys in place (ReservePut, CommitPut: the slots are left as they are, so nothing is
// copied), reads them (StartGet, FinishGet) and removes them, and reports each call's time per
// key: the round trip, the daemon's index, policy, leases and allocator, and the client's
// request and reply. Small blocks are all per-key cost (docs/benchmarks.md, "Per-key cost");
// --resident first stores that many blocks which stay, so that the index and the policy work
// at a realistic size, and the daemon's --eviction-policy shows what a policy adds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <vector>

#include "kvtier/client/client.h"
#include "modes.h"
#include "nlohmann/json.hpp"
#include "report.h"
#include "workload.h"

namespace kvtier::bench {
namespace {

using Clock = std::chrono::steady_clock;

// The calls timed, in the order of a round.
enum Call { kReserve, kCommit, kStartGet, kFinishGet, kRemove, kCalls };
constexpr const char* kCallNames[kCalls] = {"reserve_put", "commit_put", "start_get", "finish_get",
                                            "remove"};

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvtier-bench: %s\n", std::string(s.message()).c_str());
  return 1;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// What a batch puts: every block's length and, for --encoded, its codec and raw length.
struct BatchShape {
  std::vector<uint64_t> lengths;
  std::vector<uint8_t> codecs;
  std::vector<uint64_t> raw_lengths;

  explicit BatchShape(const KeyOpsOptions& o) : lengths(o.batch, o.block_bytes) {
    if (!o.encoded) return;
    // Frames of a share of the block drawn from [min, max] %, in 4-byte steps (65-80% by
    // default, as kvz frames of bf16 KV come out).
    std::mt19937_64 rng(o.seed);
    const uint32_t spread = o.frame_max_percent - o.frame_min_percent + 1;
    for (uint64_t& length : lengths) {
      const uint64_t percent = o.frame_min_percent + rng() % spread;
      length = std::clamp<uint64_t>(o.block_bytes * percent / 100 / 4 * 4, 4, o.block_bytes);
    }
    codecs.assign(o.batch, uint8_t{1});  // kvz (client::PutOptions::codecs)
    raw_lengths.assign(o.batch, o.block_bytes);
  }
  std::span<const uint64_t> Lengths(size_t n) const { return std::span(lengths).first(n); }
  client::PutOptions Options(size_t n) const {
    client::PutOptions o;
    if (!codecs.empty()) {
      o.codecs = std::span(codecs).first(n);
      o.raw_lengths = std::span(raw_lengths).first(n);
    }
    return o;
  }
};

// ReservePut + CommitPut of `keys` in batches, slots left unwritten; every block stored.
absl::Status PutKeys(client::Client& c, const client::NamespaceHandle& ns,
                     std::span<const BlockKey> keys, uint32_t batch, const BatchShape& shape) {
  for (size_t i = 0; i < keys.size(); i += batch) {
    const size_t n = std::min<size_t>(batch, keys.size() - i);
    auto r = c.ReservePut(ns, keys.subspan(i, n), shape.Lengths(n), shape.Options(n));
    if (!r.ok()) return r.status();
    auto done = c.CommitPut(*r);
    if (!done.ok()) return done.status();
    for (const absl::Status& s : *done) {
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

int RunKeyOps(const CommonOptions& common, const KeyOpsOptions& o) {
  if (o.batch < 1 || o.batches < 1 || o.rounds < 1 || o.block_bytes < 1 ||
      o.frame_min_percent < 1 || o.frame_max_percent > 100 ||
      o.frame_min_percent > o.frame_max_percent) {
    std::fprintf(stderr,
                 "kvtier-bench: --batch, --batches, --rounds and --block-bytes must be positive, "
                 "and 1 <= --frame-percent <= --frame-max-percent <= 100\n");
    return 2;
  }
  auto connected = client::Client::Connect(common.uri, BenchClientOptions(common));
  if (!connected.ok()) return Fail(connected.status());
  client::Client& c = **connected;
  if (!c.shared_arena()) {
    std::fprintf(stderr,
                 "kvtier-bench keyops: needs the shared arena (kvtierd's Unix socket, same "
                 "machine); this connection sends blocks inline\n");
    return 2;
  }
  NamespaceDescriptor descriptor = BenchNamespace(o.block_bytes);
  proto::NamespaceOptions ns_options;
  if (o.encoded) {
    descriptor.dtype = "bf16";  // kvz needs an element type
    ns_options.set_compression(proto::COMPRESSION_KVZ);
  }
  auto ns = c.OpenNamespace(descriptor, ns_options);
  if (!ns.ok()) return Fail(ns.status());
  Progress progress("keyops", common.progress, "keys");
  const BatchShape shape(o);
  // Blocks that stay for the whole run: the index and the policy at a realistic size.
  {
    std::vector<BlockKey> resident(o.resident);
    for (uint64_t i = 0; i < o.resident; ++i) {
      resident[i] = IndependentKey(ns->key_seed, o.seed, /*stream=*/7, i);
    }
    if (absl::Status s = PutKeys(c, *ns, resident, o.batch, shape); !s.ok()) {
      std::fprintf(stderr,
                   "kvtier-bench: storing --resident blocks: %s (is the DRAM tier big "
                   "enough?)\n",
                   std::string(s.message()).c_str());
      return 1;
    }
  }
  const size_t per_round = size_t{o.batch} * o.batches;
  // Per call: ns per key of each round (the round's total time over its keys).
  std::vector<std::vector<double>> per_key(kCalls);
  uint64_t next_key = 0;
  for (uint32_t round = 0; round <= o.rounds; ++round) {  // round 0 warms up
    std::vector<BlockKey> keys(per_round);
    for (BlockKey& k : keys) k = IndependentKey(ns->key_seed, o.seed, /*stream=*/8, next_key++);
    double ns_total[kCalls] = {};
    auto timed = [&](Call call, auto&& fn) {
      const auto t0 = Clock::now();
      auto result = fn();
      ns_total[call] += std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
      return result;
    };
    for (uint32_t b = 0; b < o.batches; ++b) {
      const auto sub = std::span<const BlockKey>(keys).subspan(size_t{b} * o.batch, o.batch);
      auto reserved = timed(kReserve, [&] {
        return c.ReservePut(*ns, sub, shape.Lengths(o.batch), shape.Options(o.batch));
      });
      if (!reserved.ok()) return Fail(reserved.status());
      auto committed = timed(kCommit, [&] { return c.CommitPut(*reserved); });
      if (!committed.ok()) return Fail(committed.status());
    }
    uint64_t hits = 0;
    for (uint32_t b = 0; b < o.batches; ++b) {
      const auto sub = std::span<const BlockKey>(keys).subspan(size_t{b} * o.batch, o.batch);
      auto started = timed(kStartGet, [&] { return c.StartGet(*ns, sub); });
      if (!started.ok()) return Fail(started.status());
      auto finished = timed(kFinishGet, [&] { return c.FinishGet(*started); });
      if (!finished.ok()) return Fail(finished.status());
      for (const client::GetResult& r : *finished) hits += r.status.ok();
    }
    for (uint32_t b = 0; b < o.batches; ++b) {
      const auto sub = std::span<const BlockKey>(keys).subspan(size_t{b} * o.batch, o.batch);
      auto removed = timed(kRemove, [&] { return c.Remove(*ns, sub); });
      if (!removed.ok()) return Fail(removed.status());
    }
    if (hits != per_round) {
      std::fprintf(stderr,
                   "kvtier-bench keyops: %llu of %zu fresh blocks read back; the DRAM tier is "
                   "too small for --resident plus a round\n",
                   static_cast<unsigned long long>(hits), per_round);
      return 1;
    }
    progress.Add(per_round, 0);
    if (round == 0) continue;
    for (int call = 0; call < kCalls; ++call) {
      per_key[call].push_back(ns_total[call] / static_cast<double>(per_round));
    }
  }
  double median[kCalls];
  double total = 0;
  for (int call = 0; call < kCalls; ++call) {
    median[call] = Median(per_key[call]);
    total += median[call];
  }
  if (common.json) {
    nlohmann::json ns_per_key;
    for (int call = 0; call < kCalls; ++call) ns_per_key[kCallNames[call]] = median[call];
    ns_per_key["total"] = total;
    nlohmann::json out{{"mode", "keyops"},       {"encoded", o.encoded},
                       {"batch", o.batch},       {"batches", o.batches},
                       {"rounds", o.rounds},     {"block_bytes", o.block_bytes},
                       {"resident", o.resident}, {"ns_per_key", ns_per_key}};
    std::cout << out.dump(2) << "\n";
  } else {
    std::printf(
        "keyops: batches of %u keys, %u per round, %u rounds, %llu resident blocks of %llu B\n",
        o.batch, o.batches, o.rounds, static_cast<unsigned long long>(o.resident),
        static_cast<unsigned long long>(o.block_bytes));
    std::printf("  ns per key (median of rounds):");
    for (int call = 0; call < kCalls; ++call)
      std::printf(" %s %.0f", kCallNames[call], median[call]);
    std::printf("; put+get+remove %.0f\n", total);
  }
  return 0;
}

}  // namespace kvtier::bench
