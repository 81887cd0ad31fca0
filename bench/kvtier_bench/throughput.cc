// throughput: sustained put and get bandwidth of one backend with C clients (a thread and a
// connection each) moving batches of K blocks of B bytes, and the same bytes moved by a plain
// memcpy in this process as the yardstick.
//
// Put phase: every batch stores K fresh keys (derived from a per-run random nonce), so no put
// is a no-op "already cached" and every byte really travels. Get phase: each client first
// stores its share of --working-set (untimed), then reads it back batch after batch in a
// cycle; only hits count as bytes moved. memcpy yardstick: each thread copies batches of K
// blocks from one batch buffer into its share of a --working-set-sized pool (faulted in
// beforehand), the pattern of a put into an arena. Ratios are backend / memcpy.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backend.h"
#include "kvtier/kernels/block_hash.h"
#include "modes.h"
#include "nlohmann/json.hpp"
#include "report.h"
#include "run_clients.h"
#include "workload.h"

namespace kvtier::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr uint64_t kPutPhase = 1, kGetPhase = 2;
constexpr double kMemcpySeconds = 2.0;

struct ClientState {
  std::unique_ptr<Backend> backend;
  std::vector<std::byte> batch_bytes;  // K blocks
  std::vector<std::span<const std::byte>> put_blocks;
  std::vector<std::span<std::byte>> get_out;
  std::vector<BlockKey> working_set;  // get phase keys
  uint64_t blocks = 0, accepted = 0, hits = 0, misses = 0, batches = 0;
  uint64_t prefill_rejected = 0;  // working-set blocks the store did not take
};

struct PhaseResult {
  double seconds = 0;
  uint64_t blocks = 0, accepted = 0, hits = 0, misses = 0, batches = 0, bytes = 0;
  uint64_t prefill_rejected = 0;
};

uint64_t BlocksPerClient(const ThroughputOptions& o) {
  const uint64_t k = o.blocks_per_batch;
  const uint64_t share = o.working_set_bytes / static_cast<uint64_t>(o.clients) / o.block_bytes;
  return std::max<uint64_t>(k, share / k * k);
}

double MeasureMemcpy(const ThroughputOptions& o) {
  const uint64_t per_client = BlocksPerClient(o);
  const size_t batch = o.blocks_per_batch * o.block_bytes;
  std::vector<std::vector<std::byte>> src(o.clients), pool(o.clients);
  std::vector<uint64_t> copied(o.clients);
  auto setup = [&](int c) {
    src[c].assign(batch, std::byte{0x5a});
    pool[c].assign(per_client * o.block_bytes, std::byte{0});  // faulted in, not measured
    return absl::OkStatus();
  };
  auto body = [&](int c) {
    const auto deadline =
        Clock::now() + std::chrono::duration<double>(std::min(o.seconds, kMemcpySeconds));
    uint64_t slot = 0;
    while (Clock::now() < deadline) {
      for (uint32_t i = 0; i < o.blocks_per_batch; ++i) {
        std::memcpy(pool[c].data() + slot * o.block_bytes, src[c].data() + i * o.block_bytes,
                    o.block_bytes);
        slot = (slot + 1) % per_client;
      }
      copied[c] += batch;
    }
    return absl::OkStatus();
  };
  double seconds = 0;
  (void)RunClients(o.clients, setup, body, &seconds);
  uint64_t total = 0;
  for (uint64_t b : copied) total += b;
  return Gbps(total, seconds);
}

json PhaseJson(const PhaseResult& r, double memcpy_gbps) {
  const double gbps = Gbps(r.bytes, r.seconds);
  return json{{"seconds", r.seconds},
              {"gbps", gbps},
              {"blocks_per_s", PerSecond(r.blocks, r.seconds)},
              {"batches_per_s", PerSecond(r.batches, r.seconds)},
              {"blocks", r.blocks},
              {"accepted", r.accepted},
              {"hits", r.hits},
              {"misses", r.misses},
              {"prefill_rejected", r.prefill_rejected},
              {"vs_memcpy", memcpy_gbps > 0 ? gbps / memcpy_gbps : 0.0}};
}

}  // namespace

int RunThroughput(const CommonOptions& common, const ThroughputOptions& o) {
  if (o.clients < 1 || o.block_bytes == 0 || o.blocks_per_batch == 0 || o.seconds <= 0) {
    std::fprintf(stderr,
                 "kvtier-bench: --clients, --block-bytes, --blocks-per-batch and --seconds must "
                 "be positive\n");
    return 2;
  }
  const bool do_put = o.op == "put" || o.op == "both";
  const bool do_get = o.op == "get" || o.op == "both";
  if (!do_put && !do_get) {
    std::fprintf(stderr, "kvtier-bench: --op must be put, get or both\n");
    return 2;
  }
  const uint64_t nonce = (static_cast<uint64_t>(std::random_device()()) << 32) ^
                         static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  const BlockKey key_seed = NamespaceSeed(BenchNamespace(o.block_bytes));
  const uint32_t k = o.blocks_per_batch;
  BackendOptions backend_options;
  backend_options.kind = o.backend;
  backend_options.uri = common.uri;
  backend_options.auth_token = common.auth_token;
  backend_options.block_bytes = o.block_bytes;
  std::vector<ClientState> states(o.clients);

  // Connects client c once, for whichever phase runs first.
  auto connect = [&](int c) -> absl::Status {
    ClientState& s = states[c];
    if (s.backend) return absl::OkStatus();
    auto b = OpenBackend(backend_options);
    if (!b.ok()) return b.status();
    s.backend = *std::move(b);
    s.batch_bytes.resize(k * o.block_bytes);
    for (uint32_t i = 0; i < k; ++i) {
      auto block = std::span(s.batch_bytes).subspan(i * o.block_bytes, o.block_bytes);
      FillBlock(o.seed, c, i, block);
      s.put_blocks.push_back(block);
      s.get_out.push_back(block);
    }
    return absl::OkStatus();
  };

  auto run_phase = [&](const char* label, const std::function<absl::Status(int)>& setup,
                       const std::function<absl::Status(int, Progress&)>& body,
                       PhaseResult* result) -> absl::Status {
    for (auto& s : states) s.blocks = s.accepted = s.hits = s.misses = s.batches = 0;
    Progress progress(absl::StrCat(o.backend, " ", label), common.progress);
    auto status = RunClients(
        o.clients, setup, [&](int c) { return body(c, progress); }, &result->seconds);
    for (const auto& s : states) {
      result->blocks += s.blocks;
      result->accepted += s.accepted;
      result->hits += s.hits;
      result->misses += s.misses;
      result->batches += s.batches;
      result->prefill_rejected += s.prefill_rejected;
    }
    return status;
  };

  PhaseResult put, get;
  if (do_put) {
    auto body = [&](int c, Progress& progress) -> absl::Status {
      ClientState& s = states[c];
      const uint64_t stream = MixSeed(nonce, kPutPhase, c);
      const auto deadline = Clock::now() + std::chrono::duration<double>(o.seconds);
      std::vector<BlockKey> keys(k);
      for (uint64_t n = 0; Clock::now() < deadline; ++n) {
        for (uint32_t i = 0; i < k; ++i)
          keys[i] = IndependentKey(key_seed, o.seed, stream, n * k + i);
        auto accepted = s.backend->Put(keys, s.put_blocks);
        if (!accepted.ok()) return accepted.status();
        s.blocks += k;
        s.accepted += *accepted;
        ++s.batches;
        progress.Add(k, k * o.block_bytes);
      }
      return absl::OkStatus();
    };
    if (auto st = run_phase("put", connect, body, &put); !st.ok()) {
      std::fprintf(stderr, "kvtier-bench: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    put.bytes = put.accepted * o.block_bytes;
  }
  if (do_get) {
    auto setup = [&](int c) -> absl::Status {
      if (auto st = connect(c); !st.ok()) return st;
      ClientState& s = states[c];
      const uint64_t stream = MixSeed(nonce, kGetPhase, c);
      const uint64_t n = BlocksPerClient(o);
      s.working_set.resize(n);
      for (uint64_t i = 0; i < n; ++i)
        s.working_set[i] = IndependentKey(key_seed, o.seed, stream, i);
      for (uint64_t start = 0; start < n; start += k) {
        auto accepted = s.backend->Put(std::span(s.working_set).subspan(start, k), s.put_blocks);
        if (!accepted.ok()) return accepted.status();
        s.prefill_rejected += k - *accepted;
      }
      return absl::OkStatus();
    };
    auto body = [&](int c, Progress& progress) -> absl::Status {
      ClientState& s = states[c];
      const auto deadline = Clock::now() + std::chrono::duration<double>(o.seconds);
      const uint64_t n = s.working_set.size();
      for (uint64_t start = 0; Clock::now() < deadline; start = (start + k) % n) {
        auto hits = s.backend->Get(std::span(s.working_set).subspan(start, k), s.get_out);
        if (!hits.ok()) return hits.status();
        s.blocks += k;
        s.hits += *hits;
        s.misses += k - *hits;
        ++s.batches;
        progress.Add(*hits, *hits * o.block_bytes);
      }
      return absl::OkStatus();
    };
    if (common.progress) std::fprintf(stderr, "kvtier-bench: filling the get working set...\n");
    if (auto st = run_phase("get", setup, body, &get); !st.ok()) {
      std::fprintf(stderr, "kvtier-bench: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    get.bytes = get.hits * o.block_bytes;
    if (get.prefill_rejected > 0) {
      std::fprintf(stderr,
                   "kvtier-bench: warning: the store refused %llu of the %llu working-set blocks; "
                   "gets of them miss (is --working-set larger than the store?)\n",
                   static_cast<unsigned long long>(get.prefill_rejected),
                   static_cast<unsigned long long>(BlocksPerClient(o) * o.clients));
    }
  }
  const std::string transport = states[0].backend ? states[0].backend->transport() : "";
  states.clear();  // disconnect before the yardstick so it runs on an idle machine
  const double memcpy_gbps = MeasureMemcpy(o);

  if (common.json) {
    json out{{"mode", "throughput"}, {"backend", o.backend},         {"transport", transport},
             {"clients", o.clients}, {"block_bytes", o.block_bytes}, {"blocks_per_batch", k},
             {"seconds", o.seconds}, {"memcpy_gbps", memcpy_gbps}};
    if (do_put) out["put"] = PhaseJson(put, memcpy_gbps);
    if (do_get) out["get"] = PhaseJson(get, memcpy_gbps);
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%s over %s: %d clients, batches of %u x %llu B\n", o.backend.c_str(),
              transport.c_str(), o.clients, k, static_cast<unsigned long long>(o.block_bytes));
  auto line = [&](const char* name, const PhaseResult& r, const char* extra) {
    const double gbps = Gbps(r.bytes, r.seconds);
    std::printf("  %-4s %8.3f GB/s  %10.0f blocks/s  %8.0f batches/s  %.2fx memcpy%s\n", name, gbps,
                PerSecond(r.blocks, r.seconds), PerSecond(r.batches, r.seconds),
                memcpy_gbps > 0 ? gbps / memcpy_gbps : 0.0, extra);
  };
  if (do_put) {
    const std::string extra = put.accepted == put.blocks
                                  ? std::string()
                                  : absl::StrCat("  (", put.blocks - put.accepted, " rejected)");
    line("put", put, extra.c_str());
  }
  if (do_get) {
    const std::string extra = absl::StrCat("  (", get.hits, " hits, ", get.misses, " misses)");
    line("get", get, extra.c_str());
  }
  std::printf("  memcpy %6.3f GB/s (same batches, %d threads)\n", memcpy_gbps, o.clients);
  return 0;
}

}  // namespace kvtier::bench
