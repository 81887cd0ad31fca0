// lookup: round-trip latency of prefix lookups. Each client (own thread, own connection) stores
// its own chained prefix of --keys blocks, then looks the whole prefix up again and again; each
// lookup walks every key, which is the engine's reuse check before a prefill. Beside the
// round trip the clients see, it reports the daemon's own mean time per lookup over the run
// (its request-duration histogram, read before and after), which splits a slow round trip
// into the daemon's part and the transport's and the clients' part.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvtier/client/client.h"
#include "kvtier/proto/messages.h"
#include "modes.h"
#include "nlohmann/json.hpp"
#include "report.h"
#include "run_clients.h"
#include "workload.h"

namespace kvtier::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kWarmupLookups = 100;

// The daemon's lookup count and summed nanoseconds so far (0, 0 if it does not report them).
std::pair<uint64_t, uint64_t> DaemonLookups(client::Client& c) {
  auto stats = c.Stats();
  if (!stats.ok()) return {0, 0};
  const proto::RequestLatency* l = proto::FindRequestLatency(*stats, "lookup");
  return l == nullptr ? std::pair<uint64_t, uint64_t>{0, 0} : std::pair{l->count(), l->sum_ns()};
}

struct ClientState {
  std::unique_ptr<client::Client> client;
  client::NamespaceHandle ns;
  std::vector<BlockKey> keys;
  std::vector<uint64_t> samples_ns;
  uint64_t full_prefix = 0;
};

}  // namespace

int RunLookup(const CommonOptions& common, const LookupOptions& o) {
  if (o.clients < 1 || o.keys < 1 || o.seconds <= 0) {
    std::fprintf(stderr, "kvtier-bench: --clients, --keys and --seconds must be positive\n");
    return 2;
  }
  std::vector<ClientState> states(o.clients);
  Progress progress("lookup", common.progress, "lookups");
  auto setup = [&](int c) -> absl::Status {
    ClientState& s = states[c];
    client::ClientOptions options = BenchClientOptions(common);
    options.use_request_mailbox = !o.no_mailbox;
    auto cl = client::Client::Connect(common.uri, options);
    if (!cl.ok()) return cl.status();
    s.client = *std::move(cl);
    auto ns = s.client->OpenNamespace(BenchNamespace(o.block_bytes));
    if (!ns.ok()) return ns.status();
    s.ns = *ns;
    s.keys = ChainedKeys(s.ns.key_seed, o.seed, 1000 + c, o.keys);
    std::vector<std::byte> bytes(o.keys * o.block_bytes);
    std::vector<std::span<const std::byte>> blocks;
    for (uint32_t i = 0; i < o.keys; ++i) {
      auto b = std::span(bytes).subspan(i * o.block_bytes, o.block_bytes);
      FillBlock(o.seed, 1000 + c, i, b);
      blocks.push_back(b);
    }
    auto put = s.client->Put(s.ns, s.keys, blocks);
    if (!put.ok()) return put.status();
    for (int i = 0; i < kWarmupLookups; ++i) {
      if (auto r = s.client->Lookup(s.ns, s.keys); !r.ok()) return r.status();
    }
    s.samples_ns.reserve(static_cast<size_t>(o.seconds * 200'000));
    return absl::OkStatus();
  };
  std::pair<uint64_t, uint64_t> daemon_before{0, 0};
  auto body = [&](int c) -> absl::Status {
    ClientState& s = states[c];
    if (c == 0) daemon_before = DaemonLookups(*s.client);
    const auto deadline = Clock::now() + std::chrono::duration<double>(o.seconds);
    for (;;) {
      const auto t0 = Clock::now();
      if (t0 >= deadline) break;
      auto r = s.client->Lookup(s.ns, s.keys);
      const auto t1 = Clock::now();
      if (!r.ok()) return r.status();
      s.samples_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
      s.full_prefix += r->prefix_blocks == o.keys;
      progress.Add(1, 0);
    }
    return absl::OkStatus();
  };
  double seconds = 0;
  if (auto s = RunClients(o.clients, setup, body, &seconds); !s.ok()) {
    std::fprintf(stderr, "kvtier-bench: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::vector<uint64_t> all;
  uint64_t full = 0;
  // Which path the lookups took: the first client's (all of them ask for the same).
  const char* transport = states[0].client->request_mailbox() ? "mailbox" : "socket";
  for (auto& s : states) {
    all.insert(all.end(), s.samples_ns.begin(), s.samples_ns.end());
    full += s.full_prefix;
  }
  const LatencySummary lat = Summarize(all);
  const double rate = PerSecond(lat.count, seconds);
  const auto daemon_after = DaemonLookups(*states[0].client);
  const uint64_t daemon_count = daemon_after.first - daemon_before.first;
  const double daemon_mean_us =
      daemon_count == 0 ? 0
                        : static_cast<double>(daemon_after.second - daemon_before.second) / 1e3 /
                              static_cast<double>(daemon_count);
  if (common.json) {
    nlohmann::json out{{"mode", "lookup"},
                       {"clients", o.clients},
                       {"keys", o.keys},
                       {"transport", transport},
                       {"seconds", seconds},
                       {"lookups", lat.count},
                       {"lookups_per_s", rate},
                       {"full_prefix_lookups", full},
                       {"latency_us",
                        {{"mean", lat.mean_us},
                         {"p50", lat.p50_us},
                         {"p99", lat.p99_us},
                         {"p999", lat.p999_us},
                         {"max", lat.max_us}}},
                       {"daemon_lookups", daemon_count},
                       {"daemon_mean_us", daemon_mean_us}};
    std::cout << out.dump(2) << "\n";
  } else {
    std::printf(
        "lookup of %u keys (%s), %d clients, %.1f s: %llu lookups, %.0f/s (%llu found the whole "
        "prefix)\n  latency us: mean %.1f  p50 %.1f  p99 %.1f  p999 %.1f  max %.1f\n"
        "  in the daemon (request read to reply written): mean %.1f us over %llu lookups\n",
        o.keys, transport, o.clients, seconds, static_cast<unsigned long long>(lat.count), rate,
        static_cast<unsigned long long>(full), lat.mean_us, lat.p50_us, lat.p99_us, lat.p999_us,
        lat.max_us, daemon_mean_us, static_cast<unsigned long long>(daemon_count));
  }
  return 0;
}

}  // namespace kvtier::bench
