// Session: the connection (Open, Hello, the request mailbox), batching, namespaces, lookups,
// lease release and the per-key control calls (remove, pin, prefetch, stats, limits, health).
// The put paths are in session_put.cc, the get paths in session_get.cc.
#include "session.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/proto/messages.h"
#include "session_internal.h"

namespace kvtier::client {

using session_internal::CodeToStatus;
using session_internal::PackKeys;
using session_internal::TierAt;

namespace {

// Worst-case body bytes per key of any request or reply (packed key 32 bytes plus varint
// lengths, offsets, generations and codes), used to keep batches under max_body_bytes.
constexpr uint64_t kBodyBytesPerKey = 64;

}  // namespace

absl::StatusOr<std::unique_ptr<Session>> Session::Open(const Endpoint& endpoint,
                                                       const ClientOptions& options) {
  auto socket = Socket::Connect(endpoint, options.connect_timeout);
  if (!socket.ok()) return socket.status();
  const bool want_arena = options.use_shared_arena && endpoint.kind == Endpoint::Kind::kUnix;
  return Handshake(*std::move(socket), want_arena, options);
}

absl::StatusOr<std::unique_ptr<Session>> Session::Handshake(Socket socket, bool want_arena,
                                                            const ClientOptions& options) {
  // Hello shares the connect deadline: a peer that accepts but never answers (not a kvtierd)
  // must fail Connect within connect_timeout.
  std::unique_ptr<Session> session(
      new Session(FrameChannel(std::move(socket), options.connect_timeout)));
  proto::HelloRequest hello;
  hello.set_protocol_version(proto::kProtocolVersion);
  hello.set_auth_token(options.auth_token);
  hello.set_client_name(options.client_name);
  hello.set_want_shared_arena(want_arena);
  int fd = -1;
  if (auto s = session->channel_.Call(proto::Opcode::kHello, hello, &session->hello_, &fd);
      !s.ok()) {
    return s;
  }
  const proto::HelloReply& reply = session->hello_;
  if (reply.protocol_version() != proto::kProtocolVersion) {
    if (fd >= 0) close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("kvtierd at ", session->channel_.peer(), " speaks protocol version ",
                     reply.protocol_version(), ", this client speaks ", proto::kProtocolVersion,
                     "; use a client built from the same kvtier release"));
  }
  proto::Limits limits;
  if (reply.max_body_bytes() != 0) limits.max_body_bytes = reply.max_body_bytes();
  if (reply.max_payload_bytes() != 0) limits.max_payload_bytes = reply.max_payload_bytes();
  if (reply.max_keys_per_request() != 0) {
    limits.max_keys_per_request = reply.max_keys_per_request();
  }
  session->channel_.set_limits(limits);
  if (fd >= 0) {
    if (!reply.has_arena()) {
      close(fd);
    } else {
      // A mapping failure (e.g. a container without enough address space) degrades to inline
      // transfers, which work on every socket; Client::shared_arena() reports the outcome.
      auto arena = SharedArena::Map(fd, reply.arena());
      if (arena.ok()) session->arena_ = *std::move(arena);
    }
  }
  session->channel_.set_io_timeout(options.io_timeout);
  // Auto: spin only where spare cores make it cheap (see ClientOptions::busy_poll).
  const auto spin =
      options.busy_poll.count() >= 0
          ? options.busy_poll
          : std::chrono::microseconds(std::thread::hardware_concurrency() >= 8 ? 50 : 0);
  session->channel_.set_busy_poll(spin);
  session->mailbox_wait_ = {.spin = spin, .timeout = options.io_timeout};
  if (options.use_request_mailbox && reply.mailbox_offered()) {
    session->AttachMailbox();
  }
  return session;
}

void Session::AttachMailbox() {
  proto::AttachMailboxRequest request;
  proto::MailboxInfo info;
  int fd = -1;
  if (!channel_.Call(proto::Opcode::kAttachMailbox, request, &info, &fd).ok() || fd < 0) return;
  absl::StatusOr<std::unique_ptr<MailboxClient>> m = MailboxClient::Map(fd, info);
  if (m.ok()) mailbox_ = *std::move(m);
}

absl::Status Session::MailboxCall(proto::Opcode op, const google::protobuf::MessageLite& request,
                                  google::protobuf::MessageLite* reply) {
  absl::Status s = mailbox_->Call(
      op, request, reply, mailbox_wait_, [this] { return channel_.RingDoorbell(); },
      [this] { return channel_.PeerClosedOrUnexpected(); });
  if (!s.ok() && mailbox_->broken()) {
    mailbox_.reset();
    channel_.Break(std::string(s.message()))
        .IgnoreError();  // the socket goes too, so the daemon drops our leases at once
  }
  return s;
}

std::chrono::milliseconds Session::LeaseTimeout() const {
  // protocol.md: 10 s unless the daemon says otherwise.
  return std::chrono::milliseconds(hello_.lease_timeout_ms() != 0 ? hello_.lease_timeout_ms()
                                                                  : 10'000);
}

size_t Session::BatchSize(uint64_t bytes_per_key) const {
  const proto::Limits& l = channel_.limits();
  uint64_t n = std::max<uint32_t>(l.max_keys_per_request, 1);
  n = std::min<uint64_t>(n, std::max<uint64_t>(l.max_body_bytes / kBodyBytesPerKey, 1));
  if (bytes_per_key > 0) {
    n = std::min<uint64_t>(n, std::max<uint64_t>(l.max_payload_bytes / bytes_per_key, 1));
  }
  return static_cast<size_t>(n);
}

absl::StatusOr<NamespaceHandle> Session::OpenNamespace(const NamespaceDescriptor& descriptor,
                                                       const proto::NamespaceOptions& options) {
  proto::OpenNamespaceRequest request;
  *request.mutable_namespace_descriptor() = proto::ToProto(descriptor);
  *request.mutable_options() = options;
  if (auto s = proto::ValidateDescriptor(request.namespace_descriptor(), channel_.limits());
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("bad namespace descriptor: ", s.message()));
  }
  proto::OpenNamespaceReply reply;
  if (auto s = channel_.Call(proto::Opcode::kOpenNamespace, request, &reply); !s.ok()) return s;
  if (reply.key_seed().size() != BlockKey::kSize) {
    return channel_.Break(absl::StrCat("open_namespace returned a ", reply.key_seed().size(),
                                       "-byte key seed, expected ", BlockKey::kSize));
  }
  NamespaceHandle handle;
  handle.id = reply.namespace_id();
  handle.key_seed = BlockKey::FromBytes(reply.key_seed().data());
  handle.block_bytes = descriptor.block_bytes;
  handle.block_tokens = descriptor.block_tokens;
  handle.descriptor = descriptor;
  handle.options = reply.options();
  namespace_ids_[handle.id] = handle.id;
  return handle;
}

absl::StatusOr<uint32_t> Session::NamespaceId(const NamespaceHandle& ns) {
  if (auto it = namespace_ids_.find(ns.id); it != namespace_ids_.end()) return it->second;
  auto here = OpenNamespace(ns.descriptor, ns.options);
  if (!here.ok()) return here.status();
  if (here->key_seed != ns.key_seed) {
    return absl::FailedPreconditionError(
        absl::StrCat("namespace handle ", ns.id,
                     " does not match this daemon's namespace for its "
                     "descriptor (different key seed): was it opened on another kvtierd?"));
  }
  namespace_ids_[ns.id] = here->id;
  return here->id;
}

absl::StatusOr<LookupResult> Session::Lookup(const NamespaceHandle& ns,
                                             std::span<const BlockKey> keys) {
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  LookupResult result;
  const size_t batch = BatchSize(0);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const auto chunk = keys.subspan(start, std::min(batch, keys.size() - start));
    proto::LookupRequest request;
    request.set_namespace_id(*id);
    request.set_keys(PackKeys(chunk));
    proto::LookupReply reply;
    // Through the mailbox when it fits (64 keys take ~2 KiB of its 96 KiB), else the socket.
    const bool via_mailbox =
        mailbox_ != nullptr && request.ByteSizeLong() <= mailbox_->request_capacity();
    if (auto s = via_mailbox ? MailboxCall(proto::Opcode::kLookup, request, &reply)
                             : channel_.Call(proto::Opcode::kLookup, request, &reply);
        !s.ok()) {
      return s;
    }
    if (reply.prefix_blocks() > chunk.size() || reply.tiers().size() != reply.prefix_blocks()) {
      return channel_.Break(absl::StrCat("lookup of ", chunk.size(), " keys returned a prefix of ",
                                         reply.prefix_blocks(), " blocks with ",
                                         reply.tiers().size(), " tiers"));
    }
    result.prefix_blocks += reply.prefix_blocks();
    for (size_t i = 0; i < reply.prefix_blocks(); ++i) {
      result.tiers.push_back(TierAt(reply.tiers(), i));
    }
    if (reply.prefix_blocks() < chunk.size()) break;  // the run ended inside this chunk
  }
  return result;
}

absl::Status Session::ReleaseLease(uint64_t lease_id, bool* expired) {
  proto::ReleaseRequest release;
  release.set_lease_id(lease_id);
  proto::ReleaseReply released;
  if (auto s = channel_.Call(proto::Opcode::kRelease, release, &released); !s.ok()) {
    // NotFound: the daemon expired the lease and has forgotten it since.
    if (!absl::IsNotFound(s) || channel_.broken()) return s;
    *expired = true;
    return absl::OkStatus();
  }
  *expired = released.expired();
  return absl::OkStatus();
}

template <typename Request, typename Reply>
absl::StatusOr<std::vector<absl::Status>> Session::PerKeyCodes(proto::Opcode op,
                                                               const NamespaceHandle& ns,
                                                               std::span<const BlockKey> keys,
                                                               Request request) {
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  std::vector<absl::Status> results;
  results.reserve(keys.size());
  const size_t batch = BatchSize(0);
  request.set_namespace_id(*id);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const auto chunk = keys.subspan(start, std::min(batch, keys.size() - start));
    request.set_keys(PackKeys(chunk));
    Reply reply;
    if (auto s = channel_.Call(op, request, &reply); !s.ok()) return s;
    if (static_cast<size_t>(reply.codes_size()) != chunk.size()) {
      return channel_.Break(absl::StrCat(AbslView(proto::OpcodeName(op)), " of ", chunk.size(),
                                         " keys returned ", reply.codes_size(), " codes"));
    }
    for (int32_t code : reply.codes()) results.push_back(CodeToStatus(code));
  }
  return results;
}

absl::StatusOr<std::vector<absl::Status>> Session::Remove(const NamespaceHandle& ns,
                                                          std::span<const BlockKey> keys) {
  return PerKeyCodes<proto::RemoveRequest, proto::RemoveReply>(proto::Opcode::kRemove, ns, keys,
                                                               {});
}

absl::StatusOr<std::vector<absl::Status>> Session::Pin(const NamespaceHandle& ns,
                                                       std::span<const BlockKey> keys,
                                                       bool pinned) {
  proto::PinRequest request;
  request.set_pinned(pinned);
  return PerKeyCodes<proto::PinRequest, proto::PinReply>(proto::Opcode::kPin, ns, keys,
                                                         std::move(request));
}

absl::StatusOr<PrefetchResult> Session::Prefetch(const NamespaceHandle& ns,
                                                 std::span<const BlockKey> keys) {
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  PrefetchResult result;
  const size_t batch = BatchSize(0);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const auto chunk = keys.subspan(start, std::min(batch, keys.size() - start));
    proto::PrefetchRequest request;
    request.set_namespace_id(*id);
    request.set_keys(PackKeys(chunk));
    proto::PrefetchReply reply;
    if (auto s = channel_.Call(proto::Opcode::kPrefetch, request, &reply); !s.ok()) return s;
    if (uint64_t{reply.queued()} + reply.in_dram() + reply.not_cached() + reply.dropped() !=
        chunk.size()) {
      return channel_.Break(
          absl::StrCat("prefetch of ", chunk.size(), " keys returned counts that do not add up"));
    }
    result.queued += reply.queued();
    result.in_dram += reply.in_dram();
    result.not_cached += reply.not_cached();
    result.dropped += reply.dropped();
  }
  return result;
}

absl::StatusOr<proto::StatsReply> Session::Stats() {
  proto::StatsReply reply;
  if (auto s = channel_.Call(proto::Opcode::kStats, proto::StatsRequest(), &reply); !s.ok()) {
    return s;
  }
  return reply;
}

absl::Status Session::SetLimits(const NamespaceHandle& ns, const proto::NamespaceLimits& limits) {
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  return SetLimits(*id, limits);
}

absl::Status Session::SetLimits(uint32_t namespace_id, const proto::NamespaceLimits& limits) {
  proto::SetLimitsRequest request;
  request.set_namespace_id(namespace_id);
  *request.mutable_limits() = limits;
  proto::SetLimitsReply reply;
  return channel_.Call(proto::Opcode::kSetLimits, request, &reply);
}

absl::StatusOr<proto::HealthReply> Session::Health() {
  proto::HealthReply reply;
  if (auto s = channel_.Call(proto::Opcode::kHealth, proto::HealthRequest(), &reply); !s.ok()) {
    return s;
  }
  return reply;
}

}  // namespace kvtier::client
