// Service: what kvtierd does for each request, independent of sockets and framing.
//
// The connection code (connection.cc) reads a frame, parses and checks the body
// (proto::ParseRequest), and calls one method here; it owns payload bytes on the wire. Every
// method returns the reply or an error Status that the connection sends as an ErrorReply; no
// method blocks on I/O unless it says so (the NVMe paths: see CommitNeedsIo and friends, which the
// connection consults to run those calls on the NVMe threads). Leases are owned by connection ids,
// so ConnectionClosed() can drop everything a vanished client held. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvtier.pb.h"
#include "kvtier/common/clock.h"
#include "kvtier/proto/frame.h"
#include "kvtier/server/config.h"
#include "kvtier/tiers/dram_tier.h"
#include "latency_histogram.h"
#include "namespace_registry.h"
#include "nvme_placement.h"

namespace kvtier::server {

// Daemon-wide counters (per-tier and per-namespace ones live in the tiers).
struct ServerCounters {
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> connections_active{0};
  std::atomic<uint64_t> connections_refused{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_frames{0};
  std::atomic<uint64_t> error_replies{0};
  std::atomic<uint64_t> mailbox_requests{0};  // also counted in `requests`
  std::atomic<uint64_t> mailboxes_active{0};
  std::atomic<uint64_t> metrics_scrapes{0};
  std::atomic<uint64_t> metrics_bad_requests{0};
  // Per opcode (index: proto::Opcode; 0 for one the daemon does not know).
  std::array<LatencyHistogram, proto::kMaxOpcode + 1> latency;
  void RecordLatency(proto::Opcode op, uint64_t nanos) {
    const auto i = static_cast<size_t>(op);
    latency[i < latency.size() ? i : 0].Record(nanos);
  }
};

// A get's grant, and which of its blocks were just read from NVMe into DRAM.
struct ReadGrant {
  tiers::LeaseGrant grant;
  std::vector<bool> from_nvme;   // empty when none was
  bool needs_promotion = false;  // some misses are on NVMe: call CompleteRead (blocking)
};

class Service {
 public:
  // `dram` and `clock` must outlive the service. `nvme` (null: the NVMe tier is off) too;
  // with it, namespace ids are saved to `namespace_file` whenever one is created.
  Service(const ServerConfig& config, tiers::DramTier* dram, const Clock* clock,
          NvmePlacement* nvme = nullptr, std::string namespace_file = "");

  // Restores namespace ids saved by an earlier run (before serving). Ids in `nvme_ids` that
  // the file does not name are never handed out again.
  absl::Status RestoreNamespaces(const std::vector<NamespaceInfo>& saved,
                                 std::span<const uint32_t> nvme_ids);

  const proto::Limits& limits() const { return config_.limits; }
  const ServerConfig& config() const { return config_; }
  tiers::DramTier* dram() const { return dram_; }
  ServerCounters& counters() { return counters_; }

  // kUnauthenticated for a wrong token; kFailedPrecondition for another protocol version.
  // `unix_socket` says whether the arena may be offered (it is attached by the connection).
  absl::StatusOr<proto::HelloReply> Hello(const proto::HelloRequest& req, bool unix_socket) const;
  absl::StatusOr<proto::OpenNamespaceReply> OpenNamespace(const proto::OpenNamespaceRequest& req);
  absl::StatusOr<proto::LookupReply> Lookup(const proto::LookupRequest& req);

  // First half of a put: reserves slots. For DATA_INLINE the connection then reads the payload
  // into the granted slots and calls CommitPut; for DATA_SHARED_ARENA the client copies and
  // sends PutCommit itself.
  absl::StatusOr<tiers::LeaseGrant> ReservePut(uint64_t conn, const proto::PutRequest& req);
  absl::StatusOr<std::vector<absl::StatusCode>> CommitPut(uint64_t conn, uint64_t lease);

  // Pins the blocks found in DRAM under a read lease of `conn` and accounts the bytes served;
  // no I/O. When some of the misses are on NVMe, `needs_promotion` is set: the caller then runs
  // CompleteRead on an NVMe thread, which promotes them into DRAM and adds them to the same
  // lease (the DRAM blocks stay pinned meanwhile, so promotion cannot evict them).
  absl::StatusOr<ReadGrant> AcquireRead(uint64_t conn, const proto::GetRequest& req);
  // Blocks on device reads. Returns true (a value for the executor's sake).
  bool CompleteRead(uint64_t conn, const proto::GetRequest& req, ReadGrant* read);

  // Prefetch hint: answers at once. When some keys must be promoted, `*to_promote` gets them
  // and the caller must run RunPrefetch(ns, them) on an NVMe thread (it blocks on I/O).
  absl::StatusOr<proto::PrefetchReply> Prefetch(const proto::PrefetchRequest& req,
                                                std::vector<BlockKey>* to_promote);
  void RunPrefetch(uint32_t ns, std::span<const BlockKey> keys);

  // Which requests block on NVMe I/O and must run off the network threads (gets: see
  // ReadGrant::needs_promotion).
  bool CommitNeedsIo() const { return nvme_ != nullptr && config_.nvme_write_through; }
  bool RemoveNeedsIo() const { return nvme_ != nullptr; }
  // A new namespace is registered in the NVMe index and the namespace file (both synced).
  bool OpenNamespaceNeedsIo() const { return nvme_ != nullptr; }

  // At a clean shutdown, once no request is served any more: writes staged demotions, then
  // DRAM blocks not on NVMe yet, within config.nvme_shutdown_save_ms. No-op without NVMe.
  void SaveForShutdown();
  // Ends a lease; true when it had expired before (copies made under it are void).
  absl::StatusOr<bool> Release(uint64_t conn, uint64_t lease);
  absl::StatusOr<proto::RemoveReply> Remove(const proto::RemoveRequest& req);
  // Replaces a namespace's quotas, priority and default TTL: DRAM's quota, priority and TTL,
  // and with the NVMe tier its NVMe quota and priority (NVMe keeps the TTLs of the blocks
  // demoted to it). A lowered quota evicts (DRAM) and drops (NVMe: a synced index write,
  // SetLimitsNeedsIo) down to it before the reply. kFailedPrecondition for an NVMe quota
  // without the NVMe tier.
  absl::StatusOr<proto::SetLimitsReply> SetLimits(const proto::SetLimitsRequest& req);
  bool SetLimitsNeedsIo() const { return nvme_ != nullptr; }

  // Pins in DRAM and, with the NVMe tier, on NVMe (a synced index write: PinNeedsIo).
  absl::StatusOr<proto::PinReply> Pin(const proto::PinRequest& req);
  bool PinNeedsIo() const { return nvme_ != nullptr; }

  proto::StatsReply Stats() const;
  proto::HealthReply Health() const;

  // Drops every lease of a closed connection.
  void ConnectionClosed(uint64_t conn);
  // Expires overdue leases; returns how many.
  size_t ExpireLeases();

 private:
  // kFailedPrecondition when the namespace id was never opened in this process.
  absl::Status CheckNamespace(uint32_t id) const;
  void SaveNamespaces();

  const ServerConfig config_;
  tiers::DramTier* const dram_;
  const Clock* const clock_;
  const int64_t start_nanos_;
  NvmePlacement* const nvme_;
  const std::string namespace_file_;
  absl::Mutex save_mu_;  // one namespace file writer at a time
  NamespaceRegistry namespaces_;
  ServerCounters counters_;
};

}  // namespace kvtier::server
