// Service: what kvtierd does for each request, independent of sockets and framing.
//
// The connection code (connection.cc) reads a frame, parses and checks the body
// (proto::ParseRequest), and calls one method here; it owns payload bytes on the wire. Every
// method returns the reply or an error Status that the connection sends as an ErrorReply; no
// method blocks on I/O. Leases are owned by connection ids, so ConnectionClosed() can drop
// everything a vanished client held. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"
#include "kvtier.pb.h"
#include "kvtier/common/clock.h"
#include "kvtier/server/config.h"
#include "kvtier/tiers/dram_tier.h"
#include "namespace_registry.h"

namespace kvtier::server {

// Daemon-wide counters (per-tier and per-namespace ones live in the tiers).
struct ServerCounters {
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> connections_active{0};
  std::atomic<uint64_t> connections_refused{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_frames{0};
  std::atomic<uint64_t> error_replies{0};
};

class Service {
 public:
  // `dram` and `clock` must outlive the service.
  Service(const ServerConfig& config, tiers::DramTier* dram, const Clock* clock);

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

  // Pins the found blocks under a read lease of `conn` and accounts the bytes served.
  absl::StatusOr<tiers::LeaseGrant> AcquireRead(uint64_t conn, const proto::GetRequest& req);
  // Ends a lease; true when it had expired before (copies made under it are void).
  absl::StatusOr<bool> Release(uint64_t conn, uint64_t lease);
  absl::StatusOr<proto::RemoveReply> Remove(const proto::RemoveRequest& req);

  proto::StatsReply Stats() const;
  proto::HealthReply Health() const;

  // Drops every lease of a closed connection.
  void ConnectionClosed(uint64_t conn);
  // Expires overdue leases; returns how many.
  size_t ExpireLeases();

 private:
  // kFailedPrecondition when the namespace id was never opened in this process.
  absl::Status CheckNamespace(uint32_t id) const;

  const ServerConfig config_;
  tiers::DramTier* const dram_;
  const Clock* const clock_;
  const int64_t start_nanos_;
  NamespaceRegistry namespaces_;
  ServerCounters counters_;
};

}  // namespace kvtier::server
