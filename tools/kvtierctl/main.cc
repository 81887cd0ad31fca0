// kvtierctl: the admin CLI of kvtierd.
//
//   kvtierctl [--socket PATH | --tcp HOST:PORT] [--json] health|stats|namespaces
//   kvtierctl limits NAMESPACE_ID [--dram-quota SIZE] [--nvme-quota SIZE] [--priority N]
//                                 [--ttl SECONDS]
//
// `limits` replaces a namespace's memory controls whole (unset options go back to none/0).
// Exit codes: 0 success; 1 the daemon is unreachable, refused the request, or (health) is not
// serving; 2 bad command line. Errors go to stderr as one line naming the cause.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include "kvtier/client/client.h"
#include "kvtier/common/units.h"
#include "render.h"

namespace {

constexpr char kDefaultSocket[] = "./var/kvtierd.sock";  // where `make run` puts it

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvtierctl: %.*s\n", static_cast<int>(s.message().size()),
               s.message().data());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvtierctl: inspect a running kvtierd (health, hit rates, tier usage)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  std::string socket = kDefaultSocket;
  std::string tcp;
  std::string auth_token;
  bool json = false;
  int timeout_ms = 5000;
  auto* socket_opt =
      app.add_option("--socket", socket, "kvtierd's Unix socket")->capture_default_str();
  app.add_option("--tcp", tcp, "reach kvtierd over TCP at HOST:PORT instead")->excludes(socket_opt);
  app.add_option("--auth-token", auth_token, "the daemon's --auth-token, if it has one")
      ->envname("KVTIER_AUTH_TOKEN");
  app.add_flag("--json", json, "print JSON instead of tables");
  app.add_option("--timeout-ms", timeout_ms, "give up after this long without an answer")
      ->capture_default_str()
      ->check(CLI::Range(1, 3'600'000));
  auto* health = app.add_subcommand("health", "is the daemon serving? (exit 1 if not)");
  auto* stats = app.add_subcommand("stats", "per-tier, per-namespace and server counters");
  auto* namespaces = app.add_subcommand("namespaces", "the open namespaces and their layout");
  auto* top = app.add_subcommand(
      "top", "rates and hit rates per interval, not since start (--json: one object per line)");
  double interval_s = 1.0;
  uint64_t intervals = 0;
  top->add_option("--interval", interval_s, "seconds between snapshots")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  top->add_option("--count", intervals, "stop after this many intervals; 0: until interrupted")
      ->capture_default_str();
  auto* limits = app.add_subcommand(
      "limits",
      "set a namespace's DRAM and NVMe quotas, priority and default TTL (replaces them whole)");
  uint32_t limits_ns = 0;
  std::string quota = "0";
  std::string nvme_quota = "0";
  int32_t priority = 0;
  uint32_t ttl_seconds = 0;
  limits->add_option("namespace_id", limits_ns, "the daemon's namespace id (see `namespaces`)")
      ->required();
  limits->add_option("--dram-quota", quota, "most DRAM its blocks may hold, e.g. 8GiB; 0: none")
      ->capture_default_str();
  limits
      ->add_option("--nvme-quota", nvme_quota,
                   "most NVMe its blocks may take, e.g. 100GiB; 0: none (needs the NVMe tier)")
      ->capture_default_str();
  limits
      ->add_option("--priority", priority,
                   "lower is evicted first under pressure, and rewritten last on NVMe")
      ->capture_default_str();
  limits->add_option("--ttl", ttl_seconds, "default TTL in seconds of its puts; 0: none")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every usage error exits 2, whatever CLI11's own code for it.
    return app.exit(e) == 0 ? 0 : 2;
  }

  kvtier::client::ClientOptions options;
  options.client_name = "kvtierctl";
  options.auth_token = auth_token;
  options.use_shared_arena = false;  // admin requests move no block bytes
  options.io_timeout = std::chrono::milliseconds(timeout_ms);
  options.connect_timeout = std::chrono::milliseconds(timeout_ms);
  const std::string uri = tcp.empty() ? socket : "tcp://" + tcp;
  auto client = kvtier::client::Client::Connect(uri, options);
  if (!client.ok()) return Fail(client.status());
  const std::string& canonical = (*client)->uri();

  if (limits->parsed()) {
    auto quota_bytes = kvtier::ParseByteSize(quota);
    if (!quota_bytes.ok()) {
      std::fprintf(stderr, "kvtierctl: --dram-quota: %s\n",
                   std::string(quota_bytes.status().message()).c_str());
      return 2;
    }
    auto nvme_quota_bytes = kvtier::ParseByteSize(nvme_quota);
    if (!nvme_quota_bytes.ok()) {
      std::fprintf(stderr, "kvtierctl: --nvme-quota: %s\n",
                   std::string(nvme_quota_bytes.status().message()).c_str());
      return 2;
    }
    kvtier::proto::NamespaceLimits l;
    l.set_dram_quota_bytes(*quota_bytes);
    l.set_nvme_quota_bytes(*nvme_quota_bytes);
    l.set_priority(priority);
    l.set_default_ttl_seconds(ttl_seconds);
    if (absl::Status s = (*client)->SetLimits(limits_ns, l); !s.ok()) return Fail(s);
    return 0;
  }

  if (top->parsed()) {
    auto before = (*client)->Stats();
    if (!before.ok()) return Fail(before.status());
    auto taken = std::chrono::steady_clock::now();
    for (uint64_t i = 0; intervals == 0 || i < intervals; ++i) {
      std::this_thread::sleep_for(std::chrono::duration<double>(interval_s));
      auto after = (*client)->Stats();
      if (!after.ok()) return Fail(after.status());
      const auto now = std::chrono::steady_clock::now();
      const double seconds = std::chrono::duration<double>(now - taken).count();
      if (json) {
        std::cout << kvtier::ctl::IntervalJson(*before, *after, seconds).dump() << std::endl;
      } else {
        kvtier::ctl::PrintInterval(*before, *after, seconds, i == 0, std::cout);
        std::cout.flush();
      }
      before = std::move(after);
      taken = now;
    }
    return 0;
  }

  auto health_reply = (*client)->Health();
  if (!health_reply.ok()) return Fail(health_reply.status());
  if (health->parsed()) {
    if (json) {
      std::cout << kvtier::ctl::HealthJson(*health_reply, canonical).dump(2) << "\n";
    } else {
      kvtier::ctl::PrintHealth(*health_reply, canonical, std::cout);
    }
    return health_reply->serving() ? 0 : 1;
  }

  auto stats_reply = (*client)->Stats();
  if (!stats_reply.ok()) return Fail(stats_reply.status());
  if (stats->parsed()) {
    if (json) {
      std::cout << kvtier::ctl::StatsJson(*stats_reply, *health_reply, canonical).dump(2) << "\n";
    } else {
      kvtier::ctl::PrintStats(*stats_reply, *health_reply, canonical, std::cout);
    }
  } else if (namespaces->parsed()) {
    if (json) {
      std::cout << kvtier::ctl::NamespacesJson(*stats_reply).dump(2) << "\n";
    } else {
      kvtier::ctl::PrintNamespaces(*stats_reply, std::cout);
    }
  }
  return 0;
}
