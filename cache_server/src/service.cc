#include "service.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/compression/codec.h"
#include "kvtier/compression/kv_codec.h"
#include "kvtier/proto/messages.h"
#include "namespace_file.h"
#include "spdlog/spdlog.h"

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

// A compressed namespace's blocks take one of this many slot sizes in DRAM (DramTier::
// AddNamespace): a block wastes at most 1/16 of block_bytes (6 %) to rounding, and a namespace
// spreads over at most 16 size classes.
constexpr uint32_t kCompressedSizeSteps = 16;

// The dtype a namespace's blocks are encoded for, or nullopt when it does not compress.
// InvalidArgument when it asks for compression of a dtype kvz does not know.
absl::StatusOr<std::optional<KvDtype>> CompressionDtype(const NamespaceDescriptor& d,
                                                        const proto::NamespaceOptions& options) {
  if (options.compression() == proto::COMPRESSION_NONE) return std::nullopt;
  absl::StatusOr<KvDtype> dtype = ParseKvDtype(d.dtype);
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("COMPRESSION_KVZ needs a dtype kvz knows; the descriptor's dtype: ",
                     dtype.status().message(), " (or open the namespace with COMPRESSION_NONE)"));
  }
  if (d.block_bytes % KvDtypeBytes(*dtype) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("COMPRESSION_KVZ: block_bytes ", d.block_bytes, " is not a whole number of ",
                     d.dtype, " elements (", KvDtypeBytes(*dtype), " bytes each)"));
  }
  return *dtype;
}

uint32_t SizeSteps(const std::optional<KvDtype>& compress) {
  return compress.has_value() ? kCompressedSizeSteps : 1;
}

}  // namespace

Service::Service(const ServerConfig& config, tiers::DramTier* dram, const Clock* clock,
                 NvmePlacement* nvme, std::string namespace_file)
    : config_(config),
      dram_(dram),
      clock_(clock),
      start_nanos_(clock->NowNanos()),
      nvme_(nvme),
      namespace_file_(std::move(namespace_file)) {}

absl::Status Service::RestoreNamespaces(const std::vector<NamespaceInfo>& saved,
                                        std::span<const uint32_t> nvme_ids) {
  for (const NamespaceInfo& info : saved) {
    KVTIER_ASSIGN_OR_RETURN(const std::optional<KvDtype> compress,
                            CompressionDtype(info.descriptor, info.options));
    KVTIER_RETURN_IF_ERROR(namespaces_.Restore(info.id, info.descriptor, info.options));
    KVTIER_RETURN_IF_ERROR(
        dram_->AddNamespace(info.id, info.descriptor.block_bytes, SizeSteps(compress)));
    if (nvme_ != nullptr) {
      if (absl::Status s = nvme_->AddNamespace(info.id, info.descriptor.block_bytes, compress);
          !s.ok()) {
        spdlog::warn("namespace {}: not cached on NVMe: {}", info.id, s.ToString());
      }
    }
  }
  for (uint32_t id : nvme_ids) namespaces_.ReserveIdsUpTo(id);
  return absl::OkStatus();
}

void Service::SaveNamespaces() {
  absl::MutexLock lock(&save_mu_);
  // The list is read under the writer's lock, so the last file written names every namespace.
  if (absl::Status s = SaveNamespaceFile(namespace_file_, namespaces_.List()); !s.ok()) {
    // The namespace works in this process; after a restart its NVMe blocks cannot be found
    // (their id is never reused for another namespace: see RestoreNamespaces).
    spdlog::error(
        "cannot save namespace ids ({}): NVMe blocks of new namespaces will not be "
        "found after a restart",
        s.ToString());
  }
}

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
  reply.set_mailbox_offered(unix_socket && config_.request_mailbox);
  return reply;
}

absl::StatusOr<proto::OpenNamespaceReply> Service::OpenNamespace(
    const proto::OpenNamespaceRequest& req) {
  const NamespaceDescriptor d = proto::ToDescriptor(req.namespace_descriptor());
  KVTIER_ASSIGN_OR_RETURN(const std::optional<KvDtype> compress,
                          CompressionDtype(d, req.options()));
  bool created = false;
  KVTIER_ASSIGN_OR_RETURN(NamespaceInfo info, namespaces_.Open(d, req.options(), &created));
  if (created) {
    KVTIER_RETURN_IF_ERROR(dram_->AddNamespace(info.id, d.block_bytes, SizeSteps(compress)));
    if (nvme_ != nullptr) {
      // A block larger than an NVMe region is kept in DRAM only; that is not the client's error.
      if (absl::Status s = nvme_->AddNamespace(info.id, d.block_bytes, compress); !s.ok()) {
        spdlog::warn("namespace {}: not cached on NVMe: {}", info.id, s.ToString());
      }
      SaveNamespaces();
    }
  }
  proto::OpenNamespaceReply reply;
  reply.set_namespace_id(info.id);
  reply.set_key_seed(info.seed.bytes.data(), info.seed.bytes.size());
  *reply.mutable_options() = info.options;
  return reply;
}

absl::StatusOr<proto::LookupReply> Service::Lookup(const proto::LookupRequest& req) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  proto::LookupReply reply;
  if (nvme_ == nullptr) {
    const size_t m = dram_->LookupPrefix(req.namespace_id(), Keys(req.keys()));
    reply.set_prefix_blocks(static_cast<uint32_t>(m));
    reply.mutable_tiers()->assign(m, static_cast<char>(proto::TIER_DRAM));
    return reply;
  }
  const std::vector<proto::Tier> tiers = nvme_->Lookup(req.namespace_id(), Keys(req.keys()));
  reply.set_prefix_blocks(static_cast<uint32_t>(tiers.size()));
  std::string* out = reply.mutable_tiers();
  out->reserve(tiers.size());
  for (proto::Tier t : tiers) out->push_back(static_cast<char>(t));
  return reply;
}

absl::StatusOr<tiers::LeaseGrant> Service::ReservePut(uint64_t conn, const proto::PutRequest& req) {
  const std::optional<NamespaceInfo> ns = namespaces_.Get(req.namespace_id());
  if (!ns.has_value()) return CheckNamespace(req.namespace_id());
  // Parsing checked the counts and lengths; the codecs themselves are checked here.
  std::vector<tiers::BlockEncoding> encodings;
  for (size_t i = 0; i < req.codecs().size(); ++i) {
    const auto codec = static_cast<uint8_t>(req.codecs()[i]);
    if (codec == 0) {
      encodings.push_back({});
      continue;
    }
    if (!IsKnownCodec(static_cast<CodecId>(codec))) {
      return absl::InvalidArgumentError(
          absl::StrCat("put.codecs[", i, "] is ", codec,
                       ", a codec this kvtierd does not know (0 stored, 1 kvz)"));
    }
    if (ns->options.compression() == proto::COMPRESSION_NONE) {
      return absl::InvalidArgumentError(absl::StrCat(
          "put.codecs[", i, "] is ", std::string(CodecName(static_cast<CodecId>(codec))),
          " but namespace ", ns->id,
          " does not compress; open it with COMPRESSION_KVZ to send encoded blocks"));
    }
    encodings.push_back({.codec = codec, .raw_length = req.raw_lengths(static_cast<int>(i))});
  }
  return dram_->ReservePut(
      conn, req.namespace_id(), Keys(req.keys()),
      std::span<const uint64_t>(req.lengths().data(), req.lengths_size()),
      {.ttl_nanos = int64_t{req.ttl_seconds()} * 1'000'000'000, .encodings = encodings});
}

absl::StatusOr<std::vector<absl::StatusCode>> Service::CommitPut(uint64_t conn, uint64_t lease) {
  if (CommitNeedsIo()) return nvme_->WriteThroughAndCommit(conn, lease);
  return dram_->CommitPut(conn, lease);
}

absl::StatusOr<ReadGrant> Service::AcquireRead(uint64_t conn, const proto::GetRequest& req) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  const std::span<const BlockKey> keys = Keys(req.keys());
  ReadGrant out;
  out.grant = dram_->AcquireRead(conn, req.namespace_id(), keys);
  uint64_t bytes = 0;
  std::vector<BlockKey> missed;
  for (size_t i = 0; i < out.grant.codes.size(); ++i) {
    if (out.grant.codes[i] == absl::StatusCode::kOk) {
      bytes += out.grant.slots[i].length;
    } else if (nvme_ != nullptr) {
      missed.push_back(keys[i]);
    }
  }
  dram_->RecordBytesOut(req.namespace_id(), bytes);
  out.needs_promotion = !missed.empty() && nvme_->NeedsPromotion(req.namespace_id(), missed);
  return out;
}

bool Service::CompleteRead(uint64_t conn, const proto::GetRequest& req, ReadGrant* read) {
  const uint32_t ns = req.namespace_id();
  const std::span<const BlockKey> keys = Keys(req.keys());
  read->from_nvme.assign(keys.size(), false);
  uint64_t bytes = 0;
  auto found = [&](size_t i, const tiers::SlotRef& slot) {
    read->grant.codes[i] = absl::StatusCode::kOk;
    read->grant.slots[i] = slot;
    read->from_nvme[i] = true;
    bytes += slot.length;
  };
  std::vector<size_t> missed;
  std::vector<BlockKey> missed_keys;
  auto collect_misses = [&] {
    missed.clear();
    missed_keys.clear();
    for (size_t i = 0; i < keys.size(); ++i) {
      if (read->grant.codes[i] != absl::StatusCode::kOk) {
        missed.push_back(i);
        missed_keys.push_back(keys[i]);
      }
    }
    return !missed.empty();
  };
  // The blocks this get promotes join its lease as they are committed. A block that another
  // promotion (a prefetch, another get) committed or is writing is pinned with ExtendRead;
  // should other clients evict it first, it is still on NVMe and read here in the next round.
  // So the answer does not depend on those races; the bound only stops a promotion that hangs
  // (a device read takes well under it).
  const absl::Time deadline = absl::Now() + absl::Milliseconds(50);
  while (collect_misses()) {
    NvmePlacement::Reader reader{.owner = conn, .lease = read->grant.lease_id};
    (void)nvme_->Promote(ns, missed_keys, &reader);
    read->grant.lease_id = reader.lease;
    for (size_t k = 0; k < missed.size(); ++k) {
      if (reader.slots[k].has_value()) found(missed[k], *reader.slots[k]);
    }
    if (reader.elsewhere == 0 || !collect_misses()) break;
    const tiers::LeaseGrant more = dram_->ExtendRead(conn, read->grant.lease_id, ns, missed_keys);
    size_t pinned = 0;
    for (size_t k = 0; k < missed.size(); ++k) {
      if (more.codes[k] != absl::StatusCode::kOk) continue;
      found(missed[k], more.slots[k]);
      ++pinned;
    }
    if (read->grant.lease_id == 0) read->grant.lease_id = more.lease_id;
    if (absl::Now() >= deadline) break;
    if (pinned == 0) absl::SleepFor(absl::Microseconds(200));  // still being written
  }
  dram_->RecordBytesOut(ns, bytes);
  read->needs_promotion = false;
  return true;
}

absl::StatusOr<proto::PrefetchReply> Service::Prefetch(const proto::PrefetchRequest& req,
                                                       std::vector<BlockKey>* to_promote) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  to_promote->clear();
  if (nvme_ != nullptr) {
    return nvme_->PlanPrefetch(req.namespace_id(), Keys(req.keys()), config_.nvme_prefetch_max_keys,
                               to_promote);
  }
  proto::PrefetchReply reply;
  for (bool present : dram_->Touch(req.namespace_id(), Keys(req.keys()))) {
    if (present) {
      reply.set_in_dram(reply.in_dram() + 1);
    } else {
      reply.set_not_cached(reply.not_cached() + 1);
    }
  }
  return reply;
}

void Service::RunPrefetch(uint32_t ns, std::span<const BlockKey> keys) {
  if (nvme_ != nullptr) nvme_->RunPrefetch(ns, keys);
}

void Service::SaveForShutdown() {
  if (nvme_ == nullptr || config_.nvme_shutdown_save_ms == 0) return;
  const absl::Time deadline =
      absl::Now() + absl::Milliseconds(static_cast<int64_t>(config_.nvme_shutdown_save_ms));
  const int64_t start = clock_->NowNanos();
  if (!nvme_->Drain(deadline)) {
    spdlog::warn("shutdown: staged demotions were not all written within the time budget");
  }
  const NvmePlacement::SaveReport r = nvme_->SaveDram(deadline);
  // One line with every count, so that an operator sees what the next start will not find.
  std::string line =
      absl::StrCat("shutdown: saved ", r.saved, " of ", r.blocks, " DRAM block(s) to NVMe in ",
                   (clock_->NowNanos() - start) / 1'000'000, " ms");
  if (r.out_of_time > 0) {
    absl::StrAppend(&line, "; ", r.out_of_time,
                    " not saved: the time budget (shutdown_save_ms=", config_.nvme_shutdown_save_ms,
                    ") ran out");
  }
  if (r.no_room > 0) {
    absl::StrAppend(&line, "; ", r.no_room,
                    " not saved: NVMe holds no more without dropping blocks saved before them");
  }
  if (r.over_quota > 0) {
    absl::StrAppend(&line, "; ", r.over_quota, " not saved: their namespace's NVMe quota is full");
  }
  if (r.failed > 0) absl::StrAppend(&line, "; ", r.failed, " failed: ", r.first_error);
  if (r.saved == r.blocks) {
    spdlog::info("{}", line);
  } else {
    spdlog::warn("{}", line);
  }
}

absl::StatusOr<bool> Service::Release(uint64_t conn, uint64_t lease) {
  return dram_->Release(conn, lease);
}

absl::StatusOr<proto::RemoveReply> Service::Remove(const proto::RemoveRequest& req) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  proto::RemoveReply reply;
  const std::vector<absl::StatusCode> codes =
      nvme_ != nullptr ? nvme_->Remove(req.namespace_id(), Keys(req.keys()))
                       : dram_->Remove(req.namespace_id(), Keys(req.keys()));
  for (absl::StatusCode c : codes) {
    reply.add_codes(static_cast<int32_t>(c));
  }
  return reply;
}

absl::StatusOr<proto::SetLimitsReply> Service::SetLimits(const proto::SetLimitsRequest& req) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  const proto::NamespaceLimits& l = req.limits();
  if (nvme_ == nullptr && l.nvme_quota_bytes() != 0) {
    return absl::FailedPreconditionError(
        "nvme_quota_bytes is set but this kvtierd runs without an NVMe tier (--nvme-path); "
        "leave it 0");
  }
  // DRAM first: it refuses a ninth distinct priority before anything changes.
  KVTIER_RETURN_IF_ERROR(dram_->SetNamespaceLimits(
      req.namespace_id(),
      tiers::NamespaceLimits{
          .quota_bytes = l.dram_quota_bytes(),
          .priority = l.priority(),
          .default_ttl_nanos = int64_t{l.default_ttl_seconds()} * 1'000'000'000}));
  if (nvme_ != nullptr) {
    KVTIER_RETURN_IF_ERROR(nvme_->SetLimits(
        req.namespace_id(),
        tiers::NvmeNamespaceLimits{.quota_bytes = l.nvme_quota_bytes(), .priority = l.priority()}));
  }
  return proto::SetLimitsReply();
}

absl::StatusOr<proto::PinReply> Service::Pin(const proto::PinRequest& req) {
  KVTIER_RETURN_IF_ERROR(CheckNamespace(req.namespace_id()));
  std::vector<absl::StatusCode> codes =
      dram_->SetPinned(req.namespace_id(), Keys(req.keys()), req.pinned());
  if (nvme_ != nullptr) {
    const std::vector<absl::StatusCode> on_nvme =
        nvme_->SetPinned(req.namespace_id(), Keys(req.keys()), req.pinned());
    for (size_t i = 0; i < codes.size(); ++i) {
      if (on_nvme[i] == absl::StatusCode::kOk) codes[i] = absl::StatusCode::kOk;
    }
  }
  proto::PinReply reply;
  for (absl::StatusCode c : codes) reply.add_codes(static_cast<int32_t>(c));
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
  s->set_eviction_policy(config_.dram_eviction_policy);
  s->set_mailbox_requests(counters_.mailbox_requests.load(std::memory_order_relaxed));
  s->set_mailboxes_active(counters_.mailboxes_active.load(std::memory_order_relaxed));
  s->set_connections_refused(counters_.connections_refused.load(std::memory_order_relaxed));
  s->set_metrics_scrapes(counters_.metrics_scrapes.load(std::memory_order_relaxed));
  s->set_metrics_bad_requests(counters_.metrics_bad_requests.load(std::memory_order_relaxed));
  for (size_t op = 0; op < counters_.latency.size(); ++op) {
    proto::RequestLatency l;
    if (counters_.latency[op].FillProto(proto::OpcodeName(static_cast<proto::Opcode>(op)), &l)) {
      *s->add_request_latency() = std::move(l);
    }
  }

  proto::TierStats* t = reply.add_tiers();
  t->set_tier(proto::TIER_DRAM);
  t->set_capacity_bytes(dram.capacity_bytes);
  t->set_used_bytes(dram.used_bytes);
  t->set_blocks(dram.blocks);
  FillCounters(dram.counters, t->mutable_counters());
  t->set_stored_bytes(dram.stored_bytes);
  t->set_raw_bytes(dram.raw_bytes);
  t->set_slab_reclaims(dram.slab_reclaims);
  t->set_blocks_moved(dram.blocks_moved);
  t->set_slab_reclaims_ahead(dram.slab_reclaims_ahead);

  tiers::NvmeTierSnapshot nvme;
  absl::flat_hash_map<uint32_t, const tiers::NamespaceSnapshot*> nvme_by_id;
  if (nvme_ != nullptr) {
    nvme = nvme_->NvmeSnapshot();
    proto::TierStats* n = reply.add_tiers();
    n->set_tier(proto::TIER_NVME);
    n->set_capacity_bytes(nvme.tier.capacity_bytes);
    n->set_used_bytes(nvme.tier.used_bytes);
    n->set_blocks(nvme.tier.blocks);
    FillCounters(nvme.tier.counters, n->mutable_counters());
    nvme_->FillStats(nvme, n->mutable_nvme());
    const NvmePlacement::WrittenBytes written = nvme_->Written(std::nullopt);
    n->set_stored_bytes(written.stored);
    n->set_raw_bytes(written.raw);
    for (const tiers::NamespaceSnapshot& ns : nvme.tier.namespaces) {
      nvme_by_id.emplace(ns.namespace_id, &ns);
    }
  }

  // Up to NamespaceRegistry::kMaxNamespaces on each side: join through a map, not a nested loop.
  absl::flat_hash_map<uint32_t, const tiers::NamespaceSnapshot*> by_id;
  for (const tiers::NamespaceSnapshot& ns : dram.namespaces) by_id.emplace(ns.namespace_id, &ns);
  for (const NamespaceInfo& info : namespaces_.List()) {
    proto::NamespaceStats* n = reply.add_namespaces();
    n->set_namespace_id(info.id);
    *n->mutable_namespace_descriptor() = proto::ToProto(info.descriptor);
    *n->mutable_options() = info.options;
    if (auto it = by_id.find(info.id); it != by_id.end()) {
      n->set_blocks(it->second->blocks);
      n->set_used_bytes(it->second->used_bytes);
      n->set_raw_bytes(it->second->raw_bytes);
      n->set_dram_slot_bytes(it->second->slot_bytes);
      n->set_pinned_blocks(it->second->pinned_blocks);
      FillCounters(it->second->counters, n->mutable_counters());
      proto::NamespaceLimits* limits = n->mutable_limits();
      limits->set_dram_quota_bytes(it->second->quota_bytes);
      limits->set_priority(it->second->priority);
      limits->set_default_ttl_seconds(
          static_cast<uint32_t>(it->second->default_ttl_nanos / 1'000'000'000));
      n->set_expirations(it->second->counters.expirations);
      n->set_quota_evictions(it->second->counters.quota_evictions);
    }
    if (auto it = nvme_by_id.find(info.id); it != nvme_by_id.end()) {
      n->set_nvme_blocks(it->second->blocks);
      n->set_nvme_used_bytes(it->second->used_bytes);
      FillCounters(it->second->counters, n->mutable_nvme_counters());
      n->mutable_limits()->set_nvme_quota_bytes(it->second->quota_bytes);
      n->set_nvme_quota_drops(it->second->counters.quota_evictions);
      n->set_nvme_quota_rejections(it->second->counters.quota_rejections);
    }
    if (nvme_ != nullptr) {
      const NvmePlacement::WrittenBytes written = nvme_->Written(info.id);
      n->set_nvme_written_stored_bytes(written.stored);
      n->set_nvme_written_raw_bytes(written.raw);
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
