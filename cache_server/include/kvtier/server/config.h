// ServerConfig: every kvtierd option, its default, and where it comes from.
//
// Precedence: built-in defaults < config file (--config, TOML, deploy/kvtierd.toml documents
// every key) < command-line flags. Nothing can change at runtime yet; a restart applies a new
// config. Validate() checks everything before the daemon touches the system, and its messages
// name the option and a value that would work.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/proto/frame.h"

namespace kvtier::server {

struct ServerConfig {
  // --- [server] ---
  // Directory for the daemon's files (socket by default; NVMe index later). Created if absent.
  // Default "./var".
  std::string data_dir = "./var";
  // Unix socket path for local clients (shared-memory data path). Default: <data_dir>/kvtierd.sock.
  // "none" disables the Unix socket.
  std::string socket_path;
  // "HOST:PORT" to also listen on TCP (payload travels in the frame). Default "" (off).
  // A bare "PORT" or ":PORT" binds 127.0.0.1.
  std::string tcp_listen;
  // When non-empty, clients must present this token in hello. Default "" (no auth: the Unix
  // socket's file permissions, 0660, are the access control).
  std::string auth_token;
  // Threads running the network event loop. Default 2.
  uint32_t io_threads = 2;
  // Connections beyond this are closed at accept, counted. Default 1024.
  uint32_t max_connections = 1024;
  // After serving a request, a network thread keeps polling for the next one this long before
  // it sleeps: waking a sleeping thread costs a good part of a small request's round trip
  // (64-key lookup p50 24 us -> 10 us on a 16-core host, docs/benchmarks.md). Burns up to this
  // much CPU per thread after each burst of work; 0 disables. Default -1: auto, meaning 50 us
  // on machines with at least 8 cores and 0 on smaller ones, where spinning threads would take
  // the cores the clients need.
  int32_t busy_poll_us = -1;
  // busy_poll_us with "auto" resolved for this machine.
  uint32_t EffectiveBusyPollUs() const;
  // trace, debug, info, warn, error, off. Default "info".
  std::string log_level = "info";

  // --- [dram] ---
  // Bytes of block data the DRAM tier holds (hard bound). Default 1 GiB.
  uint64_t dram_capacity_bytes = 1ull << 30;
  // Slab size the arena is carved into. Default 16 MiB.
  uint64_t dram_slab_bytes = 16ull << 20;
  // A client lease (put in progress, get being copied) expires after this. Default 10000 ms.
  uint64_t lease_timeout_ms = 10'000;
  // Which block the DRAM tier gives up first: one of tiers::PolicyNames() ("lru",
  // "prefix-slru", "s3fifo", "sieve", "arc", "tinylfu"). Default "prefix-slru": recency and
  // frequency segments that keep a prefix's parents ahead of its children (docs/policy.md).
  std::string dram_eviction_policy = "prefix-slru";

  // --- [limits] ---  (defaults in proto::Limits)
  proto::Limits limits;

  // The socket path after defaulting ("" when disabled).
  std::string EffectiveSocketPath() const;

  absl::Status Validate() const;
  // One line per option, for the startup log.
  std::string ToString() const;
};

// Reads a TOML config file over `config` (keys absent from the file keep their values).
// kInvalidArgument naming the file, line and key for syntax errors, unknown keys, wrong types
// or bad sizes; kNotFound when the file does not exist.
absl::Status LoadConfigFile(std::string_view path, ServerConfig* config);

// Parses "HOST:PORT", "[v6]:PORT", ":PORT" or "PORT" (host defaults to 127.0.0.1).
struct HostPort {
  std::string host;
  uint16_t port = 0;
};
absl::StatusOr<HostPort> ParseHostPort(std::string_view text);

}  // namespace kvtier::server
