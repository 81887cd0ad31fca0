#include "service.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/proto/messages.h"

namespace kvtier::server {
namespace {

std::span<const BlockKey> Keys(const std::string& packed) { return KeysFromPacked(packed); }

void FillCounters(const tiers::TierCounters& c, proto::Counters* out) {
  out->set_hits(c.hits);
  out->set_misses(c.misses);
  out->set_evictions(c.evictions);
  out->set_bytes_in(c.bytes_in);
  out->set_bytes_out(c.bytes_out);
  out->set_puts(c.puts);
  out->set_removes(c.removes);
  out->set_lookups(c.lookups);
  out->set_lookup_keys(c.lookup_keys);
  out->set_lookup_hit_keys(c.lookup_hit_keys);
}

}  // namespace

Service::Service(const ServerConfig& config, tiers::DramTier* dram, const Clock* clock)
    : config_(config), dram_(dram), clock_(clock), start_nanos_(clock->NowNanos()) {}

absl::Status Service::CheckNamespace(uint32_t id) const {
  if (namespaces_.Get(id).has_value()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("namespace id ", id,
                   " is not open; call OpenNamespace first (ids do not survive a daemon restart)"));
}

absl::StatusOr<proto::HelloReply> Service::Hello(const proto::HelloRequest& req,
                                                 bool unix_socket) const {
  if (req.protocol_version() != proto::kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "client speaks protocol version ", req.protocol_version(), ", this kvtierd speaks ",
        proto::kProtocolVersion, "; upgrade the older side"));
  }
  if (!config_.auth_token.empty() && req.auth_token() != config_.auth_token) {
    return absl::UnauthenticatedError(
        "wrong or missing auth token; pass the token kvtierd was started with (--auth-token)");
  }
  proto::HelloReply reply;
  reply.set_protocol_version(proto::kProtocolVersion);
  reply.set_server_version(KVTIER_VERSION);
  reply.set_max_body_bytes(config_.limits.max_body_bytes);
  reply.set_max_payload_bytes(config_.limits.max_payload_bytes);
  reply.set_max_keys_per_request(config_.limits.max_keys_per_request);
  reply.set_lease_timeout_ms(config_.lease_timeout_ms);
  if (unix_socket && req.want_shared_arena()) {
    proto::ArenaInfo* arena = reply.mutable_arena();
    arena->set_size_bytes(dram_->arena_bytes());
    arena->set_generation_table_bytes(dram_->generation_table_bytes());
    arena->set_page_bytes(dram_->page_bytes());
  }
  return reply;
}

absl::StatusOr<proto::OpenNamespaceReply> Service::OpenNamespace(
    const proto::OpenNamespaceRequest& req) {
  const NamespaceDescriptor d = proto::ToDescriptor(req.namespace_descriptor());
  bool created = false;
  KVTIER_ASSIGN_OR_RETURN(NamespaceInfo info, namespaces_.Open(d, &created));
  if (created) KVTIER_RETURN_IF_ERROR(dram_->AddNamespace(info.id, d.block_bytes));
  proto::OpenNamespaceReply reply;
  reply.set_namespace_id(info.id);
  reply.set_key_seed(info.seed.bytes.data(), info.seed.bytes.size());
  return reply;
}

absl::StatusOr<proto::LookupReply> Service::Lookup(const proto::LookupRequest& req) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  const size_t m = dram_->LookupPrefix(req.namespace_id(), Keys(req.keys()));
  proto::LookupReply reply;
  reply.set_prefix_blocks(static_cast<uint32_t>(m));
  reply.mutable_tiers()->assign(m, static_cast<char>(proto::TIER_DRAM));
  return reply;
}

absl::StatusOr<tiers::LeaseGrant> Service::ReservePut(uint64_t conn, const proto::PutRequest& req) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  return dram_->ReservePut(conn, req.namespace_id(), Keys(req.keys()),
                           std::span<const uint64_t>(req.lengths().data(), req.lengths_size()));
}

absl::StatusOr<std::vector<absl::StatusCode>> Service::CommitPut(uint64_t conn, uint64_t lease) {
  return dram_->CommitPut(conn, lease);
}

absl::StatusOr<tiers::LeaseGrant> Service::AcquireRead(uint64_t conn,
                                                       const proto::GetRequest& req) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  tiers::LeaseGrant grant = dram_->AcquireRead(conn, req.namespace_id(), Keys(req.keys()));
  uint64_t bytes = 0;
  for (size_t i = 0; i < grant.codes.size(); ++i) {
    if (grant.codes[i] == absl::StatusCode::kOk) bytes += grant.slots[i].length;
  }
  dram_->RecordBytesOut(req.namespace_id(), bytes);
  return grant;
}

absl::StatusOr<bool> Service::Release(uint64_t conn, uint64_t lease) {
  return dram_->Release(conn, lease);
}

absl::StatusOr<proto::RemoveReply> Service::Remove(const proto::RemoveRequest& req) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  proto::RemoveReply reply;
  for (absl::StatusCode c : dram_->Remove(req.namespace_id(), Keys(req.keys()))) {
    reply.add_codes(static_cast<int32_t>(c));
  }
  return reply;
}

proto::StatsReply Service::Stats() const {
  proto::StatsReply reply;
  const tiers::TierSnapshot dram = dram_->Snapshot();
  proto::ServerStats* s = reply.mutable_server();
  s->set_uptime_ms((clock_->NowNanos() - start_nanos_) / 1'000'000);
  s->set_connections_total(counters_.connections_total.load(std::memory_order_relaxed));
  s->set_connections_active(counters_.connections_active.load(std::memory_order_relaxed));
  s->set_requests(counters_.requests.load(std::memory_order_relaxed));
  s->set_bad_frames(counters_.bad_frames.load(std::memory_order_relaxed));
  s->set_error_replies(counters_.error_replies.load(std::memory_order_relaxed));
  s->set_leases_active(dram.leases_active);
  s->set_leases_expired(dram.leases_expired);

  proto::TierStats* t = reply.add_tiers();
  t->set_tier(proto::TIER_DRAM);
  t->set_capacity_bytes(dram.capacity_bytes);
  t->set_used_bytes(dram.used_bytes);
  t->set_blocks(dram.blocks);
  FillCounters(dram.counters, t->mutable_counters());

  // Up to NamespaceRegistry::kMaxNamespaces on each side: join through a map, not a nested loop.
  absl::flat_hash_map<uint32_t, const tiers::NamespaceSnapshot*> by_id;
  for (const tiers::NamespaceSnapshot& ns : dram.namespaces) by_id.emplace(ns.namespace_id, &ns);
  for (const NamespaceInfo& info : namespaces_.List()) {
    proto::NamespaceStats* n = reply.add_namespaces();
    n->set_namespace_id(info.id);
    *n->mutable_namespace_descriptor() = proto::ToProto(info.descriptor);
    if (auto it = by_id.find(info.id); it != by_id.end()) {
      n->set_blocks(it->second->blocks);
      n->set_used_bytes(it->second->used_bytes);
      FillCounters(it->second->counters, n->mutable_counters());
    }
  }
  return reply;
}

proto::HealthReply Service::Health() const {
  proto::HealthReply reply;
  reply.set_serving(true);
  reply.set_server_version(KVTIER_VERSION);
  reply.set_uptime_ms((clock_->NowNanos() - start_nanos_) / 1'000'000);
  return reply;
}

void Service::ConnectionClosed(uint64_t conn) { dram_->ReleaseOwner(conn); }

size_t Service::ExpireLeases() { return dram_->ExpireLeases(); }

}  // namespace kvtier::server
