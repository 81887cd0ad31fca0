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
  // "HOST:PORT" of the HTTP listener that serves /metrics (Prometheus text format) and
  // /healthz. Default "" (off). A bare "PORT" or ":PORT" binds 127.0.0.1. Serves figures only,
  // never blocks, and takes no token: bind it to an address only the scraper reaches.
  std::string metrics_listen;
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
  // Offer local clients a request mailbox: lookups through shared memory, polled by the network
  // threads while they busy-poll, instead of through the socket (protocol.md 7.4). Default true.
  bool request_mailbox = true;
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
  // While a block size keeps taking slabs from another (several block sizes, or a compressed
  // namespace's frames), a maintenance thread reclaims its next slab before a put has to, so
  // that puts do not pay for the copies (DramTier::ReclaimAhead). Holds at most one slab free
  // meanwhile. Default true.
  bool dram_reclaim_ahead = true;

  // --- [nvme] ---  (docs/nvme.md)
  // File or block device of the NVMe tier. Default "" (tier off: DRAM only). A missing regular
  // file is created with nvme_capacity_bytes; an existing one must have that size.
  std::string nvme_path;
  // Bytes of the device to use. Required with a new file; 0 = the existing file's or device's
  // size. Default 0.
  uint64_t nvme_capacity_bytes = 0;
  // RocksDB index directory. Default <data_dir>/nvme-index.
  std::string nvme_index_dir;
  // Log region size, 1-128 MiB (16-64 MiB intended). Fixed when the device is formatted.
  // Default 16 MiB.
  uint64_t nvme_region_bytes = 16ull << 20;
  // Which blocks evicted from DRAM are written to flash: "all", "hits:N" (blocks read at least
  // N times while in DRAM) or "rate:SIZE/s" (a write-rate budget that protects flash endurance).
  // Default "hits:1": a block nobody read in DRAM is unlikely to be read from flash.
  std::string nvme_admission = "hits:1";
  // Write every put to NVMe before acknowledging it (every acknowledged block survives a crash;
  // puts wait for the device). Default false.
  bool nvme_write_through = false;
  // At a clean shutdown (SIGTERM), DRAM blocks not yet on NVMe are written to it, most recently
  // used first, for at most this long, so that a restart comes back warm. 0 disables. Default
  // 30000 ms.
  uint64_t nvme_shutdown_save_ms = 30'000;
  // "auto" (io_uring, or a pread/pwrite thread pool where io_uring is unavailable),
  // "io_uring" or "thread_pool". Default "auto".
  std::string nvme_engine = "auto";
  // I/O ops in flight per submitter. Default 32.
  uint32_t nvme_queue_depth = 32;
  // Regions reclaimed at once, and (from 2) ahead of need by the commit thread, so that a full
  // tier's writes do not wait for reclaims (NvmeTierOptions::reclaim_batch_regions). 0
  // (default): 256 MiB worth, at most an eighth of the regions; 1: one at a time, when needed.
  uint32_t nvme_reclaim_batch = 0;
  // DRAM evictions are copied into a staging buffer of at most this many bytes and written to
  // NVMe in batches off the request path; when it is full, evicted blocks are dropped (counted)
  // rather than making puts wait. Default 256 MiB.
  uint64_t nvme_demotion_buffer_bytes = 256ull << 20;
  // What encodes demotions of compressed namespaces: "cpu", "gpu" (the kvz CUDA codec on the
  // daemon's GPU; startup fails without one) or "auto" (the GPU when there is one, else the
  // CPU; logged). Both write the same bytes. The GPU costs the engines beside the daemon a CUDA
  // context and staging, 520 MiB of an H100's memory (measured), so it is opt-in. Default "cpu".
  std::string nvme_demotion_encoder = "cpu";
  // Threads of the CPU demotion encoder (the demotion thread included). Default 2.
  uint32_t nvme_demotion_encode_threads = 2;
  // Threads that run requests needing NVMe I/O (promotions, write-through, removes), so that
  // the network threads never block on the device. Default 4.
  uint32_t nvme_threads = 4;
  // Prefetch hints promote at most this many keys at a time; keys hinted beyond it are
  // dropped (counted), so hints cannot queue unbounded work. Default 8192.
  uint32_t nvme_prefetch_max_keys = 8192;

  // The index directory after defaulting.
  std::string EffectiveNvmeIndexDir() const;

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
