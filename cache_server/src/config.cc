#include "kvtier/server/config.h"

#include <toml++/toml.h>

#include <filesystem>
#include <functional>
#include <map>
#include <thread>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "kvtier/common/units.h"
#include "kvtier/tiers/nvme_admission.h"
#include "kvtier/tiers/nvme_tier.h"
#include "kvtier/tiers/policies.h"

namespace kvtier::server {
namespace {

constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error", "off"};

// One config key: how to read it from a TOML node into the config.
using Setter = std::function<absl::Status(const toml::node&, ServerConfig*)>;

absl::Status WrongType(std::string_view key, std::string_view want) {
  return absl::InvalidArgumentError(
      absl::StrCat("key '", AbslView(key), "' must be ", AbslView(want)));
}

Setter String(std::string ServerConfig::*field, std::string key) {
  return [field, key](const toml::node& n, ServerConfig* c) -> absl::Status {
    auto v = n.value<std::string>();
    if (!v) return WrongType(key, "a string");
    c->*field = *v;
    return absl::OkStatus();
  };
}

template <typename T>
Setter Integer(T ServerConfig::*field, std::string key) {
  return [field, key](const toml::node& n, ServerConfig* c) -> absl::Status {
    auto v = n.value<int64_t>();
    // Signed fields take -1 (busy_poll_us: auto); the rest must be non-negative.
    const int64_t floor = std::is_signed_v<T> ? -1 : 0;
    if (!v || *v < floor) return WrongType(key, "a non-negative integer");
    c->*field = static_cast<T>(*v);
    return absl::OkStatus();
  };
}

Setter Bool(bool ServerConfig::*field, std::string key) {
  return [field, key](const toml::node& n, ServerConfig* c) -> absl::Status {
    auto v = n.value<bool>();
    if (!v) return WrongType(key, "true or false");
    c->*field = *v;
    return absl::OkStatus();
  };
}

// Sizes may be integers (bytes) or strings with units ("8GiB").
absl::StatusOr<uint64_t> ReadSize(const toml::node& n, std::string_view key) {
  if (auto i = n.value<int64_t>()) {
    if (*i < 0) return WrongType(key, "a size such as 8GiB");
    return static_cast<uint64_t>(*i);
  }
  if (auto s = n.value<std::string>()) {
    auto size = ParseByteSize(*s);
    if (!size.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key '", AbslView(key), "': ", size.status().message()));
    }
    return *size;
  }
  return WrongType(key, "a size such as 8GiB");
}

template <typename T>
Setter Size(T* (*pick)(ServerConfig*), std::string key) {
  return [pick, key](const toml::node& n, ServerConfig* c) -> absl::Status {
    KVTIER_ASSIGN_OR_RETURN(uint64_t v, ReadSize(n, key));
    if (v > std::numeric_limits<T>::max()) return WrongType(key, "a smaller size");
    *pick(c) = static_cast<T>(v);
    return absl::OkStatus();
  };
}

const std::map<std::string, Setter>& Setters() {
  static const auto* setters = new std::map<std::string, Setter>{
      {"server.data_dir", String(&ServerConfig::data_dir, "server.data_dir")},
      {"server.socket", String(&ServerConfig::socket_path, "server.socket")},
      {"server.tcp_listen", String(&ServerConfig::tcp_listen, "server.tcp_listen")},
      {"server.auth_token", String(&ServerConfig::auth_token, "server.auth_token")},
      {"server.metrics_listen", String(&ServerConfig::metrics_listen, "server.metrics_listen")},
      {"server.log_level", String(&ServerConfig::log_level, "server.log_level")},
      {"server.io_threads", Integer(&ServerConfig::io_threads, "server.io_threads")},
      {"server.busy_poll_us", Integer(&ServerConfig::busy_poll_us, "server.busy_poll_us")},
      {"server.max_connections", Integer(&ServerConfig::max_connections, "server.max_connections")},
      {"server.request_mailbox", Bool(&ServerConfig::request_mailbox, "server.request_mailbox")},
      {"dram.capacity",
       Size<uint64_t>([](ServerConfig* c) { return &c->dram_capacity_bytes; }, "dram.capacity")},
      {"dram.slab_size",
       Size<uint64_t>([](ServerConfig* c) { return &c->dram_slab_bytes; }, "dram.slab_size")},
      {"dram.eviction_policy", String(&ServerConfig::dram_eviction_policy, "dram.eviction_policy")},
      {"dram.reclaim_ahead", Bool(&ServerConfig::dram_reclaim_ahead, "dram.reclaim_ahead")},
      {"dram.lease_timeout_ms", Integer(&ServerConfig::lease_timeout_ms, "dram.lease_timeout_ms")},
      {"nvme.path", String(&ServerConfig::nvme_path, "nvme.path")},
      {"nvme.capacity",
       Size<uint64_t>([](ServerConfig* c) { return &c->nvme_capacity_bytes; }, "nvme.capacity")},
      {"nvme.index_dir", String(&ServerConfig::nvme_index_dir, "nvme.index_dir")},
      {"nvme.region_size",
       Size<uint64_t>([](ServerConfig* c) { return &c->nvme_region_bytes; }, "nvme.region_size")},
      {"nvme.admission", String(&ServerConfig::nvme_admission, "nvme.admission")},
      {"nvme.write_through", Bool(&ServerConfig::nvme_write_through, "nvme.write_through")},
      {"nvme.shutdown_save_ms",
       Integer(&ServerConfig::nvme_shutdown_save_ms, "nvme.shutdown_save_ms")},
      {"nvme.engine", String(&ServerConfig::nvme_engine, "nvme.engine")},
      {"nvme.queue_depth", Integer(&ServerConfig::nvme_queue_depth, "nvme.queue_depth")},
      {"nvme.reclaim_batch", Integer(&ServerConfig::nvme_reclaim_batch, "nvme.reclaim_batch")},
      {"nvme.demotion_buffer",
       Size<uint64_t>([](ServerConfig* c) { return &c->nvme_demotion_buffer_bytes; },
                      "nvme.demotion_buffer")},
      {"nvme.demotion_encoder",
       String(&ServerConfig::nvme_demotion_encoder, "nvme.demotion_encoder")},
      {"nvme.demotion_encode_threads",
       Integer(&ServerConfig::nvme_demotion_encode_threads, "nvme.demotion_encode_threads")},
      {"nvme.threads", Integer(&ServerConfig::nvme_threads, "nvme.threads")},
      {"nvme.prefetch_max_keys",
       Integer(&ServerConfig::nvme_prefetch_max_keys, "nvme.prefetch_max_keys")},
      {"limits.max_body_bytes",
       Size<uint32_t>([](ServerConfig* c) { return &c->limits.max_body_bytes; },
                      "limits.max_body_bytes")},
      {"limits.max_payload_bytes",
       Size<uint64_t>([](ServerConfig* c) { return &c->limits.max_payload_bytes; },
                      "limits.max_payload_bytes")},
      {"limits.max_keys_per_request",
       Size<uint32_t>([](ServerConfig* c) { return &c->limits.max_keys_per_request; },
                      "limits.max_keys_per_request")},
  };
  return *setters;
}

}  // namespace

uint32_t ServerConfig::EffectiveBusyPollUs() const {
  if (busy_poll_us >= 0) return static_cast<uint32_t>(busy_poll_us);
  return std::thread::hardware_concurrency() >= 8 ? 50 : 0;
}

std::string ServerConfig::EffectiveNvmeIndexDir() const {
  if (!nvme_index_dir.empty()) return nvme_index_dir;
  return (std::filesystem::path(data_dir) / "nvme-index").string();
}

std::string ServerConfig::EffectiveSocketPath() const {
  if (socket_path == "none") return "";
  if (!socket_path.empty()) return socket_path;
  return (std::filesystem::path(data_dir) / "kvtierd.sock").string();
}

absl::Status ServerConfig::Validate() const {
  if (data_dir.empty()) {
    return absl::InvalidArgumentError("data_dir is empty; give a directory, e.g. --data-dir ./var");
  }
  const std::string sock = EffectiveSocketPath();
  // sockaddr_un::sun_path holds 108 bytes including the terminator.
  if (sock.size() > 107) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path '", sock, "' is ", sock.size(),
                     " bytes; Unix sockets allow 107. Use a shorter --socket or --data-dir"));
  }
  if (sock.empty() && tcp_listen.empty()) {
    return absl::InvalidArgumentError(
        "no listener: the Unix socket is disabled and --tcp-listen is not set");
  }
  if (!tcp_listen.empty()) {
    auto hp = ParseHostPort(tcp_listen);
    if (!hp.ok()) return hp.status();
  }
  if (!metrics_listen.empty()) {
    auto hp = ParseHostPort(metrics_listen);
    if (!hp.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("metrics_listen: ", hp.status().message()));
    }
  }
  if (io_threads < 1 || io_threads > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("io_threads=", io_threads, " must be between 1 and 256"));
  }
  if (busy_poll_us < -1 || busy_poll_us > 10'000) {
    return absl::InvalidArgumentError(
        absl::StrCat("busy_poll_us=", busy_poll_us, " must be -1 (auto), 0 (off) or up to 10000"));
  }
  if (max_connections < 1) {
    return absl::InvalidArgumentError("max_connections must be at least 1");
  }
  bool level_ok = false;
  for (auto l : kLogLevels) level_ok |= (l == log_level);
  if (!level_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "log level '", log_level, "' is not one of trace, debug, info, warn, error, off"));
  }
  if (dram_capacity_bytes < dram_slab_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dram capacity ", FormatByteSize(dram_capacity_bytes), " is smaller than one slab (",
        FormatByteSize(dram_slab_bytes), "); use e.g. --dram-capacity 256MiB"));
  }
  if (lease_timeout_ms < 10 || lease_timeout_ms > 3'600'000) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease timeout ", lease_timeout_ms, " ms must be between 10 ms and one hour"));
  }
  bool policy_known = false;
  for (std::string_view name : tiers::PolicyNames()) {
    policy_known |= name == dram_eviction_policy;
  }
  if (!policy_known) {
    std::string names;
    for (std::string_view name : tiers::PolicyNames()) {
      absl::StrAppend(&names, names.empty() ? "" : ", ", AbslView(name));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("eviction policy '", dram_eviction_policy, "' is not one of ", names));
  }
  if (!nvme_path.empty()) {
    if (nvme_region_bytes < (1ull << 20) || nvme_region_bytes > (128ull << 20)) {
      return absl::InvalidArgumentError(
          absl::StrCat("nvme region size ", FormatByteSize(nvme_region_bytes),
                       " must be between 1MiB and 128MiB (16MiB-64MiB recommended)"));
    }
    if (nvme_capacity_bytes != 0 && nvme_capacity_bytes < 2 * nvme_region_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("nvme capacity ", FormatByteSize(nvme_capacity_bytes),
                       " holds fewer than two regions of ", FormatByteSize(nvme_region_bytes),
                       "; use e.g. --nvme-capacity 16GiB"));
    }
    if (nvme_engine != "auto" && nvme_engine != "io_uring" && nvme_engine != "thread_pool") {
      return absl::InvalidArgumentError(absl::StrCat(
          "nvme engine '", nvme_engine, "' is not one of auto, io_uring, thread_pool"));
    }
    if (nvme_queue_depth < 1 || nvme_queue_depth > 4096) {
      return absl::InvalidArgumentError(
          absl::StrCat("nvme queue_depth=", nvme_queue_depth, " must be between 1 and 4096"));
    }
    if (nvme_reclaim_batch > 4096) {
      return absl::InvalidArgumentError(absl::StrCat("nvme reclaim_batch=", nvme_reclaim_batch,
                                                     " must be at most 4096 regions (0: auto)"));
    }
    if (nvme_demotion_encoder != "auto" && nvme_demotion_encoder != "cpu" &&
        nvme_demotion_encoder != "gpu") {
      return absl::InvalidArgumentError(absl::StrCat(
          "nvme demotion_encoder '", nvme_demotion_encoder, "' is not one of auto, cpu, gpu"));
    }
    if (nvme_demotion_encode_threads < 1 || nvme_demotion_encode_threads > 256) {
      return absl::InvalidArgumentError(
          absl::StrCat("nvme demotion_encode_threads=", nvme_demotion_encode_threads,
                       " must be between 1 and 256"));
    }
    if (nvme_threads < 1 || nvme_threads > 256) {
      return absl::InvalidArgumentError(
          absl::StrCat("nvme threads=", nvme_threads, " must be between 1 and 256"));
    }
    if (nvme_shutdown_save_ms > 3'600'000) {
      return absl::InvalidArgumentError(absl::StrCat(
          "nvme shutdown_save_ms=", nvme_shutdown_save_ms, " must be at most one hour"));
    }
    // The admission spec is parsed here too, so that a typo fails before anything starts.
    tiers::UnixClock clock;
    if (auto policy = tiers::ParseAdmissionPolicy(nvme_admission, &clock); !policy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("nvme admission: ", policy.status().message()));
    }
  }
  if (limits.max_body_bytes < 4096) {
    return absl::InvalidArgumentError("limits.max_body_bytes must be at least 4096");
  }
  if (limits.max_keys_per_request < 1 ||
      uint64_t{limits.max_keys_per_request} * 40 > limits.max_body_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "limits.max_keys_per_request=", limits.max_keys_per_request,
        " does not fit max_body_bytes=", limits.max_body_bytes, " (about 40 bytes per key)"));
  }
  return absl::OkStatus();
}

std::string ServerConfig::ToString() const {
  const std::string sock = EffectiveSocketPath();
  return absl::StrCat(
      "data_dir=", data_dir, " socket=", sock.empty() ? "(off)" : sock,
      " tcp_listen=", tcp_listen.empty() ? "(off)" : tcp_listen,
      " metrics_listen=", metrics_listen.empty() ? "(off)" : metrics_listen,
      " auth=", auth_token.empty() ? "off" : "token", " io_threads=", io_threads,
      " max_connections=", max_connections, " busy_poll_us=", EffectiveBusyPollUs(),
      " request_mailbox=", request_mailbox ? "true" : "false", " log_level=", log_level,
      " dram.capacity=", FormatByteSize(dram_capacity_bytes),
      " dram.slab_size=", FormatByteSize(dram_slab_bytes),
      " dram.lease_timeout_ms=", lease_timeout_ms, " dram.eviction_policy=", dram_eviction_policy,
      " dram.reclaim_ahead=", dram_reclaim_ahead ? "true" : "false",
      " nvme.path=", nvme_path.empty() ? "(off)" : nvme_path, " nvme.capacity=",
      nvme_capacity_bytes == 0 ? "(existing)" : FormatByteSize(nvme_capacity_bytes),
      " nvme.index_dir=", EffectiveNvmeIndexDir(),
      " nvme.region_size=", FormatByteSize(nvme_region_bytes), " nvme.admission=", nvme_admission,
      " nvme.write_through=", nvme_write_through ? "true" : "false",
      " nvme.shutdown_save_ms=", nvme_shutdown_save_ms, " nvme.engine=", nvme_engine,
      " nvme.queue_depth=", nvme_queue_depth, " nvme.reclaim_batch=", nvme_reclaim_batch,
      " nvme.demotion_buffer=", FormatByteSize(nvme_demotion_buffer_bytes),
      " nvme.demotion_encoder=", nvme_demotion_encoder,
      " nvme.demotion_encode_threads=", nvme_demotion_encode_threads,
      " nvme.threads=", nvme_threads, " nvme.prefetch_max_keys=", nvme_prefetch_max_keys,
      " limits.max_body_bytes=", limits.max_body_bytes,
      " limits.max_payload_bytes=", limits.max_payload_bytes,
      " limits.max_keys_per_request=", limits.max_keys_per_request);
}

absl::Status LoadConfigFile(std::string_view path, ServerConfig* config) {
  const std::string p(path);
  if (!std::filesystem::exists(p)) {
    return absl::NotFoundError(absl::StrCat("config file '", p, "' does not exist"));
  }
  toml::table root;
  try {
    root = toml::parse_file(p);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file '", p, "' line ", e.source().begin.line, ": ", std::string(e.description())));
  }
  for (const auto& [section, node] : root) {
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file '", p, "': '", std::string(section.str()),
                       "' must be a table ([server], [dram], [nvme] or [limits])"));
    }
    for (const auto& [key, value] : *table) {
      const std::string full =
          absl::StrCat(std::string(section.str()), ".", std::string(key.str()));
      auto it = Setters().find(full);
      if (it == Setters().end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config file '", p, "' line ", value.source().begin.line,
                         ": unknown key '", full, "'; deploy/kvtierd.toml lists every key"));
      }
      absl::Status s = it->second(value, config);
      if (!s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "config file '", p, "' line ", value.source().begin.line, ": ", s.message()));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text) {
  std::string_view host = "127.0.0.1";
  std::string_view port = text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read '", AbslView(text), "' as [IPV6]:PORT, e.g. [::1]:7070"));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else if (const size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    if (colon > 0) host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  uint32_t p = 0;
  if (!absl::SimpleAtoi(AbslView(port), &p) || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read '", AbslView(text),
                                                   "' as HOST:PORT, e.g. 127.0.0.1:7070 or 7070"));
  }
  return HostPort{std::string(host), static_cast<uint16_t>(p)};
}

}  // namespace kvtier::server
