// kvtierd: the kvtier cache daemon. `kvtierd --help` lists the flags; deploy/kvtierd.toml
// documents the config file. Flags override the file; the file overrides built-in defaults.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "kvtier/common/units.h"
#include "kvtier/server/config.h"
#include "kvtier/server/server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "kvtierd: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using kvtier::server::ServerConfig;
  CLI::App app{"kvtierd: KV-cache daemon for LLM inference (DRAM tier, shared-memory and TCP)"};
  std::string config_path, socket, data_dir, dram_capacity, tcp_listen, log_level, auth_token,
      metrics_listen;
  uint32_t io_threads = 0;
  uint64_t lease_timeout_ms = 0;
  int32_t busy_poll_us = -1;
  std::string eviction_policy;
  std::string nvme_path, nvme_capacity, nvme_admission, nvme_engine, nvme_demotion_encoder;
  bool nvme_write_through = false;
  bool version = false;
  auto* o_config =
      app.add_option("--config", config_path, "TOML config file (see deploy/kvtierd.toml)");
  auto* o_socket = app.add_option(
      "--socket", socket, "Unix socket path (default <data-dir>/kvtierd.sock; 'none' disables)");
  auto* o_data =
      app.add_option("--data-dir", data_dir, "directory for the daemon's files (default ./var)");
  auto* o_dram = app.add_option("--dram-capacity", dram_capacity,
                                "DRAM tier size, e.g. 256MiB, 8GiB (default 1GiB)");
  auto* o_tcp =
      app.add_option("--tcp-listen", tcp_listen,
                     "also serve TCP on HOST:PORT (default off; PORT alone binds 127.0.0.1)");
  auto* o_metrics = app.add_option(
      "--metrics-listen", metrics_listen,
      "serve /metrics (Prometheus) and /healthz over HTTP on HOST:PORT (default off)");
  auto* o_log =
      app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off (default info)");
  auto* o_auth =
      app.add_option("--auth-token", auth_token, "require this token in every client's hello");
  auto* o_threads = app.add_option("--io-threads", io_threads, "network threads (default 2)");
  auto* o_lease = app.add_option("--lease-timeout", lease_timeout_ms,
                                 "client lease timeout in ms (default 10000)");
  auto* o_busy = app.add_option("--busy-poll-us", busy_poll_us,
                                "spin this long for the next request before sleeping "
                                "(default -1: 50 on >= 8 cores, else 0; 0 off)");
  auto* o_policy = app.add_option("--eviction-policy", eviction_policy,
                                  "DRAM eviction policy: prefix-slru (default), lru, s3fifo, "
                                  "sieve, arc, tinylfu");
  auto* o_nvme_path =
      app.add_option("--nvme-path", nvme_path, "NVMe tier file or block device (default off)");
  auto* o_nvme_capacity =
      app.add_option("--nvme-capacity", nvme_capacity,
                     "NVMe tier size, e.g. 64GiB (required for a new file; 0: existing size)");
  auto* o_nvme_admission =
      app.add_option("--nvme-admission", nvme_admission,
                     "which DRAM evictions go to NVMe: all, hits:N, rate:SIZE/s (default hits:1)");
  auto* o_nvme_wt = app.add_flag("--nvme-write-through", nvme_write_through,
                                 "write every put to NVMe before acknowledging it");
  auto* o_nvme_engine =
      app.add_option("--nvme-engine", nvme_engine, "auto (default), io_uring or thread_pool");
  auto* o_nvme_encoder = app.add_option(
      "--nvme-demotion-encoder", nvme_demotion_encoder,
      "what encodes demotions of compressed namespaces: cpu (default), gpu, auto (the GPU if any)");
  app.add_flag("--version", version, "print the version and exit");
  CLI11_PARSE(app, argc, argv);
  if (version) {
    std::printf("kvtierd %s\n", KVTIER_VERSION);
    return 0;
  }

  ServerConfig config;
  if (o_config->count() > 0) {
    if (absl::Status s = kvtier::server::LoadConfigFile(config_path, &config); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }
  if (o_socket->count() > 0) config.socket_path = socket;
  if (o_data->count() > 0) config.data_dir = data_dir;
  if (o_dram->count() > 0) {
    auto size = kvtier::ParseByteSize(dram_capacity);
    if (!size.ok()) return Fail(absl::StrCat("--dram-capacity: ", size.status().message()));
    config.dram_capacity_bytes = *size;
  }
  if (o_tcp->count() > 0) config.tcp_listen = tcp_listen;
  if (o_metrics->count() > 0) config.metrics_listen = metrics_listen;
  if (o_log->count() > 0) config.log_level = log_level;
  if (o_auth->count() > 0) config.auth_token = auth_token;
  if (o_threads->count() > 0) config.io_threads = io_threads;
  if (o_lease->count() > 0) config.lease_timeout_ms = lease_timeout_ms;
  if (o_busy->count() > 0) config.busy_poll_us = busy_poll_us;
  if (o_policy->count() > 0) config.dram_eviction_policy = eviction_policy;
  if (o_nvme_path->count() > 0) config.nvme_path = nvme_path;
  if (o_nvme_capacity->count() > 0) {
    auto size = kvtier::ParseByteSize(nvme_capacity);
    if (!size.ok()) return Fail(absl::StrCat("--nvme-capacity: ", size.status().message()));
    config.nvme_capacity_bytes = *size;
  }
  if (o_nvme_admission->count() > 0) config.nvme_admission = nvme_admission;
  if (o_nvme_wt->count() > 0) config.nvme_write_through = nvme_write_through;
  if (o_nvme_engine->count() > 0) config.nvme_engine = nvme_engine;
  if (o_nvme_encoder->count() > 0) config.nvme_demotion_encoder = nvme_demotion_encoder;
  if (absl::Status s = config.Validate(); !s.ok()) return Fail(std::string(s.message()));

  spdlog::set_default_logger(spdlog::stderr_color_mt("kvtierd"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  // protobuf logs a line for every string field that is not UTF-8: a hostile client could
  // flood the log that way. Parse errors reach clients as error replies and counters instead.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
        spdlog::debug("protobuf {}:{}: {}", file, line, message);
      });
  // Writes to a vanished client must fail with EPIPE, not kill the daemon.
  ::signal(SIGPIPE, SIG_IGN);

  spdlog::info("kvtierd {} starting: {}", KVTIER_VERSION, config.ToString());
  auto server = kvtier::server::Server::Create(config);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  if (absl::Status s = (*server)->Run(); !s.ok()) return Fail(std::string(s.message()));
  return 0;
}
