#include "session.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/compression/codec.h"
#include "kvtier/compression/kv_codec.h"
#include "kvtier/proto/messages.h"

namespace kvtier::client {
namespace {

// Worst-case body bytes per key of any request or reply (packed key 32 bytes plus varint
// lengths, offsets, generations and codes), used to keep batches under max_body_bytes.
constexpr uint64_t kBodyBytesPerKey = 64;

std::string PackKeys(std::span<const BlockKey> keys) { return std::string(PackedFromKeys(keys)); }

std::string_view BlockCodeMessage(int32_t code) {
  switch (static_cast<absl::StatusCode>(code)) {
    case absl::StatusCode::kAlreadyExists:
      return "already cached";
    case absl::StatusCode::kNotFound:
      return "not cached";
    case absl::StatusCode::kResourceExhausted:
      return "no room in any tier even after eviction";
    case absl::StatusCode::kDeadlineExceeded:
      return "the arena lease expired before the commit; nothing was stored";
    case absl::StatusCode::kInvalidArgument:
      return "the daemon rejected the block's length";
    default:
      return "block failed";
  }
}

absl::Status CodeToStatus(int32_t code) { return BlockStatus(code, BlockCodeMessage(code)); }

// A put's codes: the failures a daemon with --nvme-write-through adds say so, since the client
// gets only the code and the daemon's log is elsewhere.
absl::Status PutCodeToStatus(int32_t code) {
  switch (static_cast<absl::StatusCode>(code)) {
    case absl::StatusCode::kResourceExhausted:
      return BlockStatus(code,
                         "no room in any tier even after eviction, or (write-through) the NVMe "
                         "device is full; nothing was stored");
    case absl::StatusCode::kUnavailable:
      return BlockStatus(code,
                         "write-through to NVMe failed (device I/O error or failed fdatasync; "
                         "the daemon's log has the cause, nvme.io_errors counts it); nothing "
                         "was stored; retry");
    case absl::StatusCode::kAborted:
      return BlockStatus(code,
                         "not stored: another block of this write-through put could not be "
                         "written to NVMe, and a put is all or nothing; retry");
    default:
      return CodeToStatus(code);
  }
}

proto::Tier TierAt(const std::string& tiers, size_t i) {
  if (i >= tiers.size()) return proto::TIER_NONE;
  const auto t = static_cast<uint8_t>(tiers[i]);
  return proto::Tier_IsValid(t) ? static_cast<proto::Tier>(t) : proto::TIER_NONE;
}

absl::Status BufferTooSmall(uint64_t stored, size_t buffer) {
  return absl::InvalidArgumentError(absl::StrCat("output buffer holds ", buffer,
                                                 " bytes but the stored block is ", stored,
                                                 " bytes; pass buffers of block_bytes"));
}

// The blocks of a cpu_compress put, encoded: frames where they shrink, the block elsewhere.
struct EncodedBlocks {
  std::vector<std::vector<std::byte>> frames;
  std::vector<std::span<const std::byte>> blocks;
  std::vector<uint8_t> codecs;
  std::vector<uint64_t> raw_lengths;
};

absl::StatusOr<EncodedBlocks> EncodeOnCpu(const NamespaceHandle& ns,
                                          std::span<const std::span<const std::byte>> blocks) {
  absl::StatusOr<KvDtype> dtype = ParseKvDtype(ns.descriptor.dtype);
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu_compress: the namespace's dtype: ", dtype.status().message()));
  }
  const CodecOptions codec{.dtype = *dtype};
  EncodedBlocks out;
  out.frames.resize(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    out.blocks.push_back(blocks[i]);
    out.codecs.push_back(0);
    out.raw_lengths.push_back(0);
    if (blocks[i].size() % KvDtypeBytes(*dtype) != 0) continue;  // not whole elements: as is
    out.frames[i].resize(MaxCompressedSize(blocks[i].size(), codec));
    absl::StatusOr<size_t> n = Compress(blocks[i], codec, out.frames[i]);
    if (!n.ok()) return n.status();
    if (*n >= blocks[i].size()) continue;  // does not shrink: stored
    out.blocks[i] = std::span<const std::byte>(out.frames[i]).first(*n);
    out.codecs[i] = static_cast<uint8_t>(CodecId::kKvz);
    out.raw_lengths[i] = blocks[i].size();
  }
  return out;
}

absl::Status VoidedCopy(std::string_view why) {
  return absl::UnavailableError(
      absl::StrCat("block ", AbslView(why), " while it was copied out; count it as a miss"));
}

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

absl::Status Session::CheckPut(const NamespaceHandle& ns, std::span<const uint64_t> lengths,
                               std::span<const uint8_t> codecs,
                               std::span<const uint64_t> raw_lengths) {
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (lengths[i] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", i, " is empty; blocks hold >= 1 byte"));
    }
    if (lengths[i] > ns.block_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", i, " is ", lengths[i],
                       " bytes, larger than the namespace's block_bytes ", ns.block_bytes));
    }
  }
  if (codecs.size() != raw_lengths.size() || (!codecs.empty() && codecs.size() != lengths.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "put got ", lengths.size(), " blocks, ", codecs.size(), " codecs and ", raw_lengths.size(),
        " raw lengths; pass one codec and one raw length per block, or none"));
  }
  for (size_t i = 0; i < codecs.size(); ++i) {
    if (codecs[i] == 0) continue;
    if (ns.options.compression() != proto::COMPRESSION_KVZ) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", i,
                       " is encoded but the namespace was not opened with "
                       "COMPRESSION_KVZ; send it decoded or open a compressed namespace"));
    }
    if (raw_lengths[i] < lengths[i] || raw_lengths[i] > ns.block_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", i, " has raw length ", raw_lengths[i], " for ", lengths[i],
                       " encoded bytes; it must be from that to block_bytes ", ns.block_bytes));
    }
  }
  return absl::OkStatus();
}

proto::PutRequest Session::PutRequestFor(uint32_t ns_id, std::span<const BlockKey> keys,
                                         std::span<const uint64_t> lengths,
                                         std::span<const uint8_t> codecs,
                                         std::span<const uint64_t> raw_lengths,
                                         uint32_t ttl_seconds, size_t start, size_t n) const {
  proto::PutRequest request;
  request.set_namespace_id(ns_id);
  request.set_keys(PackKeys(keys.subspan(start, n)));
  request.set_ttl_seconds(ttl_seconds);
  for (uint64_t length : lengths.subspan(start, n)) request.add_lengths(length);
  if (!codecs.empty()) {
    request.set_codecs(reinterpret_cast<const char*>(codecs.data() + start), n);
    for (size_t i = start; i < start + n; ++i) {
      request.add_raw_lengths(codecs[i] == 0 ? 0 : raw_lengths[i]);
    }
  }
  return request;
}

absl::StatusOr<std::vector<absl::Status>> Session::Put(
    const NamespaceHandle& ns, std::span<const BlockKey> keys,
    std::span<const std::span<const std::byte>> blocks, const PutOptions& options) {
  if (keys.size() != blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat("put got ", keys.size(), " keys but ",
                                                   blocks.size(), " blocks; pass one per key"));
  }
  std::vector<uint64_t> lengths(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) lengths[i] = blocks[i].size();
  std::span<const uint8_t> codecs = options.codecs;
  std::span<const uint64_t> raw_lengths = options.raw_lengths;
  if (absl::Status s = CheckPut(ns, lengths, codecs, raw_lengths); !s.ok()) return s;
  EncodedBlocks encoded;
  if (codecs.empty() && options.cpu_compress &&
      ns.options.compression() == proto::COMPRESSION_KVZ) {
    absl::StatusOr<EncodedBlocks> e = EncodeOnCpu(ns, blocks);
    if (!e.ok()) return e.status();
    encoded = *std::move(e);
    blocks = encoded.blocks;
    codecs = encoded.codecs;
    raw_lengths = encoded.raw_lengths;
    for (size_t i = 0; i < blocks.size(); ++i) lengths[i] = blocks[i].size();
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  std::vector<absl::Status> results(keys.size());
  const size_t batch = BatchSize(arena_ ? 0 : ns.block_bytes);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const size_t n = std::min(batch, keys.size() - start);
    proto::PutRequest request =
        PutRequestFor(*id, keys, lengths, codecs, raw_lengths, options.ttl_seconds, start, n);
    const auto batch_blocks = blocks.subspan(start, n);
    // The CPU copies each block in, checking the deadline before each one.
    auto copy = [&](std::span<const std::span<std::byte>> slots,
                    std::chrono::steady_clock::time_point deadline) -> absl::StatusOr<bool> {
      for (size_t i = 0; i < n; ++i) {
        if (slots[i].empty()) continue;
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::memcpy(slots[i].data(), batch_blocks[i].data(), batch_blocks[i].size());
      }
      return true;
    };
    const auto s = arena_ ? PutArena(request, n, copy, std::span(results).subspan(start, n))
                          : PutInline(request, keys.subspan(start, n), batch_blocks,
                                      std::span(results).subspan(start, n));
    if (!s.ok()) return s;
  }
  return results;
}

absl::StatusOr<std::vector<absl::Status>> Session::PutInPlace(const NamespaceHandle& ns,
                                                              std::span<const BlockKey> keys,
                                                              std::span<const uint64_t> lengths,
                                                              ArenaFill fill,
                                                              const PutOptions& options) {
  if (!arena_) {
    return absl::FailedPreconditionError(
        "PutInPlace needs the shared arena (a Unix-socket connection with use_shared_arena); "
        "use Put");
  }
  if (keys.size() != lengths.size()) {
    return absl::InvalidArgumentError(absl::StrCat("put got ", keys.size(), " keys but ",
                                                   lengths.size(), " lengths; pass one per key"));
  }
  if (absl::Status s = CheckPut(ns, lengths, options.codecs, options.raw_lengths); !s.ok()) {
    return s;
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  std::vector<absl::Status> results(keys.size());
  const size_t batch = BatchSize(0);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const size_t n = std::min(batch, keys.size() - start);
    proto::PutRequest request = PutRequestFor(*id, keys, lengths, options.codecs,
                                              options.raw_lengths, options.ttl_seconds, start, n);
    // The caller's fill runs as a whole; whether it finished in time is known afterwards.
    auto write = [&](std::span<const std::span<std::byte>> slots,
                     std::chrono::steady_clock::time_point deadline) -> absl::StatusOr<bool> {
      if (absl::Status s = fill(slots); !s.ok()) return s;
      return std::chrono::steady_clock::now() <= deadline;
    };
    if (auto s = PutArena(request, n, write, std::span(results).subspan(start, n)); !s.ok()) {
      return s;
    }
  }
  return results;
}

absl::Status Session::PutInline(proto::PutRequest& request, std::span<const BlockKey> keys,
                                std::span<const std::span<const std::byte>> blocks,
                                std::span<absl::Status> results) {
  request.set_mode(proto::DATA_INLINE);
  if (auto s = channel_.Send(proto::Opcode::kPut, request, blocks); !s.ok()) return s;
  proto::PutReply reply;
  auto payload = channel_.ReceiveHead(&reply);
  if (!payload.ok()) return payload.status();
  if (auto s = channel_.DiscardPayload(*payload); !s.ok()) return s;
  if (static_cast<size_t>(reply.codes_size()) != keys.size()) {
    return channel_.Break(
        absl::StrCat("put of ", keys.size(), " blocks returned ", reply.codes_size(), " codes"));
  }
  for (size_t i = 0; i < keys.size(); ++i) results[i] = PutCodeToStatus(reply.codes(i));
  return absl::OkStatus();
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

absl::Status Session::ReserveArena(proto::PutRequest& request, ReservedPut* put) {
  const size_t n = static_cast<size_t>(request.lengths_size());
  request.set_mode(proto::DATA_SHARED_ARENA);
  proto::PutReply reserved;
  if (auto s = channel_.Call(proto::Opcode::kPut, request, &reserved); !s.ok()) return s;
  if (static_cast<size_t>(reserved.codes_size()) != n ||
      static_cast<size_t>(reserved.offsets_size()) != n) {
    return channel_.Break(absl::StrCat("shared-arena put of ", n, " blocks returned ",
                                       reserved.codes_size(), " codes and ",
                                       reserved.offsets_size(), " offsets"));
  }
  // Check every slot before writing any: a bad offset must not corrupt our own memory.
  put->slots_.assign(n, {});
  put->codes_.assign(reserved.codes().begin(), reserved.codes().end());
  for (size_t i = 0; i < n; ++i) {
    if (reserved.codes(i) != 0) continue;
    if (auto s = arena_->CheckSlot(reserved.offsets(i), request.lengths(static_cast<int>(i)));
        !s.ok()) {
      return channel_.Break(absl::StrCat("put reply for block ", i, ": ", s.message()));
    }
    put->slots_[i] = arena_->Slot(reserved.offsets(i), request.lengths(static_cast<int>(i)));
  }
  put->lease_id_ = reserved.lease_id();
  put->open_.value = true;
  // The protocol forbids writing into a granted slot later than lease_timeout_ms after the
  // reply (the daemon may reuse it then). Stop with a tenth of the lease to spare, since the
  // daemon's clock started before ours.
  put->write_deadline_ = std::chrono::steady_clock::now() + LeaseTimeout() * 9 / 10;
  return absl::OkStatus();
}

absl::Status Session::FinishArenaPut(ReservedPut& put, bool in_time,
                                     std::span<absl::Status> results) {
  const size_t n = put.codes_.size();
  if (!std::exchange(put.open_.value, false)) {
    return absl::FailedPreconditionError(
        "the put was not reserved, or was committed or aborted already");
  }
  const uint64_t lease = put.lease_id_;
  if (!in_time) {
    // Late: give the lease back and report the blocks as DeadlineExceeded, as a late commit
    // would.
    bool expired = false;
    if (lease != 0) {
      if (auto s = ReleaseLease(lease, &expired); !s.ok()) return s;
    }
    for (size_t i = 0; i < n; ++i) {
      results[i] = put.codes_[i] != 0
                       ? PutCodeToStatus(put.codes_[i])
                       : absl::DeadlineExceededError(
                             "copying the batch into the arena outlasted the put lease; nothing "
                             "was stored (use smaller batches)");
    }
    return absl::OkStatus();
  }
  if (lease == 0) {  // nothing was reserved
    for (size_t i = 0; i < n; ++i) results[i] = PutCodeToStatus(put.codes_[i]);
    return absl::OkStatus();
  }
  // Make our stores visible before the daemon, told by the commit, publishes the slots.
  std::atomic_thread_fence(std::memory_order_release);
  proto::PutCommitRequest commit;
  commit.set_lease_id(lease);
  proto::PutCommitReply committed;
  if (auto s = channel_.Call(proto::Opcode::kPutCommit, commit, &committed); !s.ok()) {
    // NotFound: the lease expired and the daemon has forgotten it; nothing was stored.
    if (!absl::IsNotFound(s) || channel_.broken()) return s;
    for (size_t i = 0; i < n; ++i) {
      results[i] = PutCodeToStatus(put.codes_[i] == 0
                                       ? static_cast<int32_t>(absl::StatusCode::kDeadlineExceeded)
                                       : put.codes_[i]);
    }
    return absl::OkStatus();
  }
  // kvtier.proto asks for one code per block of the put; a daemon may also answer with one code
  // per reserved block (in key order), which carries the same information. Accept both.
  size_t reserved_count = 0;
  for (size_t i = 0; i < n; ++i) reserved_count += put.codes_[i] == 0;
  const size_t got = static_cast<size_t>(committed.codes_size());
  if (got != n && got != reserved_count) {
    return channel_.Break(absl::StrCat("put_commit of ", reserved_count, " reserved blocks (", n,
                                       " in the put) returned ", got, " codes"));
  }
  for (size_t i = 0, j = 0; i < n; ++i) {
    if (put.codes_[i] != 0) {
      results[i] = PutCodeToStatus(put.codes_[i]);
    } else {
      results[i] = PutCodeToStatus(committed.codes(got == n ? i : j++));
    }
  }
  return absl::OkStatus();
}

absl::Status Session::PutArena(proto::PutRequest& request, size_t n, SlotWriter write,
                               std::span<absl::Status> results) {
  ReservedPut put;
  if (auto s = ReserveArena(request, &put); !s.ok()) return s;
  // A writer that fails gives the lease back.
  absl::StatusOr<bool> in_time = write(put.slots_, put.write_deadline_);
  if (!in_time.ok()) {
    if (auto s = AbortPut(put); !s.ok()) return s;
    return in_time.status();
  }
  return FinishArenaPut(put, *in_time, results.first(n));
}

absl::StatusOr<ReservedPut> Session::ReservePut(const NamespaceHandle& ns,
                                                std::span<const BlockKey> keys,
                                                std::span<const uint64_t> lengths,
                                                const PutOptions& options) {
  if (!arena_) {
    return absl::FailedPreconditionError(
        "ReservePut needs the shared arena (a Unix-socket connection with use_shared_arena); "
        "use Put");
  }
  if (keys.size() != lengths.size() || keys.size() > BatchSize(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReservePut got ", keys.size(), " keys and ", lengths.size(),
                     " lengths; pass one length per key, and at most ", BatchSize(0),
                     " keys (the daemon's "
                     "max_keys_per_request)"));
  }
  if (absl::Status s = CheckPut(ns, lengths, options.codecs, options.raw_lengths); !s.ok()) {
    return s;
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  proto::PutRequest request = PutRequestFor(*id, keys, lengths, options.codecs, options.raw_lengths,
                                            options.ttl_seconds, 0, keys.size());
  ReservedPut put;
  if (auto s = ReserveArena(request, &put); !s.ok()) return s;
  return put;
}

absl::StatusOr<std::vector<absl::Status>> Session::CommitPut(ReservedPut& put) {
  if (!put.open_.value) {
    return absl::FailedPreconditionError(
        "CommitPut of a put that was not reserved, or was committed or aborted already");
  }
  std::vector<absl::Status> results(put.codes_.size());
  const bool in_time = std::chrono::steady_clock::now() <= put.write_deadline_;
  if (auto s = FinishArenaPut(put, in_time, std::span(results)); !s.ok()) return s;
  return results;
}

absl::Status Session::AbortPut(ReservedPut& put) {
  if (!std::exchange(put.open_.value, false)) {
    return absl::FailedPreconditionError(
        "the put was not reserved, or was committed or aborted already");
  }
  if (put.lease_id_ == 0) return absl::OkStatus();
  bool expired = false;
  return ReleaseLease(put.lease_id_, &expired);
}

absl::StatusOr<std::vector<GetResult>> Session::Get(const NamespaceHandle& ns,
                                                    std::span<const BlockKey> keys,
                                                    std::span<const std::span<std::byte>> out,
                                                    const GetOptions& options) {
  if (keys.size() != out.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "get got ", keys.size(), " keys but ", out.size(), " output buffers; pass one per key"));
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  std::vector<GetResult> results(keys.size());
  const size_t batch = BatchSize(arena_ ? 0 : ns.block_bytes);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const size_t n = std::min(batch, keys.size() - start);
    const auto s = arena_ ? GetArena(*id, keys.subspan(start, n), out.subspan(start, n),
                                     options.decode, std::span(results).subspan(start, n))
                          : GetInline(*id, keys.subspan(start, n), out.subspan(start, n),
                                      options.decode, std::span(results).subspan(start, n));
    if (!s.ok()) return s;
  }
  return results;
}

absl::Status Session::CheckEncodings(const proto::GetReply& reply, size_t n) {
  if ((reply.codecs().empty() || reply.codecs().size() == n) &&
      static_cast<size_t>(reply.raw_lengths_size()) == reply.codecs().size()) {
    return absl::OkStatus();
  }
  return channel_.Break(absl::StrCat("get of ", n, " keys returned ", reply.codecs().size(),
                                     " codecs and ", reply.raw_lengths_size(), " raw lengths"));
}

std::span<std::byte> Session::GetDestination(const proto::GetReply& reply, size_t i,
                                             std::span<std::byte> out, bool decode,
                                             GetResult* result,
                                             std::vector<PendingDecode>* decodes) {
  result->length = reply.lengths(i);
  const uint8_t codec = reply.codecs().empty() ? 0 : static_cast<uint8_t>(reply.codecs()[i]);
  if (codec == 0 || !decode) {
    if (codec != 0) {
      result->codec = codec;
      result->raw_length = reply.raw_lengths(static_cast<int>(i));
    }
    if (result->length > out.size()) {
      result->status = BufferTooSmall(result->length, out.size());
      return {};
    }
    return out.first(result->length);
  }
  const uint64_t raw = reply.raw_lengths(static_cast<int>(i));
  if (raw > out.size()) {
    result->status = BufferTooSmall(raw, out.size());
    result->length = raw;
    return {};
  }
  if (codec != static_cast<uint8_t>(CodecId::kKvz)) {
    result->status =
        absl::UnimplementedError(absl::StrCat("block is encoded with codec ", codec,
                                              ", which this client cannot decode; upgrade it "
                                              "or get with decode off"));
    return {};
  }
  decodes->push_back(PendingDecode{i, std::vector<std::byte>(result->length), out.first(raw)});
  return decodes->back().frame;
}

void Session::DecodeFrames(std::vector<PendingDecode>& decodes, std::span<GetResult> results) {
  for (PendingDecode& d : decodes) {
    GetResult& r = results[d.index];
    if (!r.status.ok()) continue;
    absl::Status s = Decompress(d.frame, d.out);
    if (!s.ok()) {
      // The daemon never changes bytes; a frame that fails its checks was damaged (or lied
      // about): a miss, never wrong bytes.
      r.status = absl::DataLossError(absl::StrCat("the block's kvz frame failed to decode (",
                                                  s.message(), "); count it as a miss"));
      continue;
    }
    r.length = d.out.size();
  }
}

absl::Status Session::GetInline(uint32_t ns_id, std::span<const BlockKey> keys,
                                std::span<const std::span<std::byte>> out, bool decode,
                                std::span<GetResult> results) {
  proto::GetRequest request;
  request.set_namespace_id(ns_id);
  request.set_keys(PackKeys(keys));
  request.set_mode(proto::DATA_INLINE);
  if (auto s = channel_.Send(proto::Opcode::kGet, request); !s.ok()) return s;
  proto::GetReply reply;
  auto payload_len = channel_.ReceiveHead(&reply);
  if (!payload_len.ok()) return payload_len.status();
  const size_t n = keys.size();
  if (static_cast<size_t>(reply.codes_size()) != n ||
      static_cast<size_t>(reply.lengths_size()) != n) {
    return channel_.Break(absl::StrCat("get of ", n, " keys returned ", reply.codes_size(),
                                       " codes and ", reply.lengths_size(), " lengths"));
  }
  if (auto s = CheckEncodings(reply, n); !s.ok()) return s;
  uint64_t total = 0;
  uint64_t largest = 0;
  for (size_t i = 0; i < n; ++i) {
    if (reply.codes(i) != 0) continue;
    total += reply.lengths(i);
    largest = std::max<uint64_t>(largest, reply.lengths(i));
  }
  if (total != *payload_len) {
    return channel_.Break(absl::StrCat("get reply lengths add up to ", total,
                                       " bytes but its payload is ", *payload_len, " bytes"));
  }
  // Read every hit straight into its buffer (an encoded one into its frame buffer); blocks that
  // do not fit land in one shared scratch buffer (their bytes are dropped) so the stream stays
  // in step.
  std::vector<std::byte> scratch;
  std::vector<std::span<std::byte>> dst;
  std::vector<PendingDecode> decodes;
  decodes.reserve(n);  // GetDestination hands out spans into its elements
  dst.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    GetResult& r = results[i];
    r.tier = TierAt(reply.tiers(), i);
    if (reply.codes(i) != 0) {
      r.status = CodeToStatus(reply.codes(i));
      r.tier = proto::TIER_NONE;
      continue;
    }
    std::span<std::byte> to = GetDestination(reply, i, out[i], decode, &r, &decodes);
    if (to.empty()) {
      if (scratch.empty()) scratch.resize(largest);
      to = std::span(scratch).first(reply.lengths(i));
    }
    dst.push_back(to);
  }
  if (auto s = channel_.ReceivePayload(dst); !s.ok()) return s;
  DecodeFrames(decodes, results);
  return absl::OkStatus();
}

absl::Status Session::CallArenaGet(uint32_t ns_id, std::span<const BlockKey> keys,
                                   proto::GetReply* reply) {
  proto::GetRequest request;
  request.set_namespace_id(ns_id);
  request.set_keys(PackKeys(keys));
  request.set_mode(proto::DATA_SHARED_ARENA);
  if (auto s = channel_.Call(proto::Opcode::kGet, request, reply); !s.ok()) return s;
  const size_t n = keys.size();
  if (static_cast<size_t>(reply->codes_size()) != n ||
      static_cast<size_t>(reply->lengths_size()) != n ||
      static_cast<size_t>(reply->offsets_size()) != n ||
      static_cast<size_t>(reply->generations_size()) != n) {
    return channel_.Break(absl::StrCat("shared-arena get of ", n, " keys returned ",
                                       reply->codes_size(), " codes, ", reply->lengths_size(),
                                       " lengths, ", reply->offsets_size(), " offsets, ",
                                       reply->generations_size(), " generations"));
  }
  if (auto s = CheckEncodings(*reply, n); !s.ok()) return s;
  for (size_t i = 0; i < n; ++i) {
    if (reply->codes(i) != 0) continue;
    if (auto s = arena_->CheckSlot(reply->offsets(i), reply->lengths(i)); !s.ok()) {
      return channel_.Break(absl::StrCat("get reply for key ", i, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status Session::GetArena(uint32_t ns_id, std::span<const BlockKey> keys,
                               std::span<const std::span<std::byte>> out, bool decode,
                               std::span<GetResult> results) {
  StartedGet get;
  if (auto s = StartArenaGet(ns_id, keys, &get); !s.ok()) return s;
  // Encoded blocks are copied into frame buffers and decoded once the copies are checked and
  // the lease is released: never decode bytes that another writer may be changing.
  std::vector<PendingDecode> decodes;
  decodes.reserve(keys.size());  // GetDestination hands out spans into its elements
  for (size_t i = 0; i < keys.size(); ++i) {
    if (get.slots_[i].empty()) continue;  // a miss, or a slot reused already
    GetResult& r = get.results_[i];
    r.codec = 0;  // GetDestination says how the bytes arrive
    r.raw_length = 0;
    const std::span<std::byte> to = GetDestination(get.reply_, i, out[i], decode, &r, &decodes);
    if (!r.status.ok()) {
      get.slots_[i] = {};  // nothing copied, nothing to check
      continue;
    }
    std::memcpy(to.data(), get.slots_[i].data(), to.size());
  }
  absl::StatusOr<std::vector<GetResult>> finished = FinishGet(get);
  if (!finished.ok()) return finished.status();
  std::move(finished->begin(), finished->end(), results.begin());
  DecodeFrames(decodes, results);
  return absl::OkStatus();
}

absl::Status Session::FinishArenaGet(const proto::GetReply& reply, std::span<GetResult> results) {
  if (reply.lease_id() == 0) return absl::OkStatus();
  bool expired = false;
  if (auto s = ReleaseLease(reply.lease_id(), &expired); !s.ok()) return s;
  if (expired) {
    // The daemon may have reused the slots after the lease ran out, while we copied.
    for (size_t i = 0; i < results.size(); ++i) {
      if (results[i].status.ok() && reply.codes(i) == 0) {
        results[i].status = VoidedCopy("lease expired");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<GetResult>> Session::GetInPlace(const NamespaceHandle& ns,
                                                           std::span<const BlockKey> keys,
                                                           ArenaRead read) {
  if (!arena_) {
    return absl::FailedPreconditionError(
        "GetInPlace needs the shared arena (a Unix-socket connection with use_shared_arena); "
        "use Get");
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  std::vector<GetResult> results(keys.size());
  const size_t batch = BatchSize(0);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const size_t n = std::min(batch, keys.size() - start);
    if (auto s = GetArenaInPlace(*id, keys.subspan(start, n), read,
                                 std::span(results).subspan(start, n));
        !s.ok()) {
      return s;
    }
  }
  return results;
}

absl::Status Session::StartArenaGet(uint32_t ns_id, std::span<const BlockKey> keys,
                                    StartedGet* get) {
  proto::GetReply& reply = get->reply_;
  if (auto s = CallArenaGet(ns_id, keys, &reply); !s.ok()) return s;
  const size_t n = keys.size();
  get->slots_.assign(n, {});
  get->results_.assign(n, GetResult{});
  for (size_t i = 0; i < n; ++i) {
    GetResult& r = get->results_[i];
    if (reply.codes(i) != 0) {
      r.status = CodeToStatus(reply.codes(i));
      continue;
    }
    r.tier = TierAt(reply.tiers(), i);
    r.length = reply.lengths(i);
    if (!reply.codecs().empty() && reply.codecs()[i] != 0) {
      r.codec = static_cast<uint8_t>(reply.codecs()[i]);
      r.raw_length = reply.raw_lengths(static_cast<int>(i));
    }
    // Seqlock read (docs/protocol.md 7.3): a copy counts only if the slot's generation is the
    // quoted one before it and still after it (FinishGet). Checking before saves copying a slot
    // reused already.
    if (arena_->Generation(reply.offsets(i)) != reply.generations(i)) {
      r.status = VoidedCopy("was evicted");
      continue;
    }
    get->slots_[i] = arena_->Slot(reply.offsets(i), reply.lengths(i));
  }
  get->open_.value = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<GetResult>> Session::FinishGet(StartedGet& get) {
  if (!get.open_.value) {
    return absl::FailedPreconditionError("FinishGet of a get that was not started or is finished");
  }
  get.open_.value = false;
  std::atomic_thread_fence(std::memory_order_acquire);
  const proto::GetReply& reply = get.reply_;
  std::vector<GetResult> results = std::move(get.results_);
  for (size_t i = 0; i < results.size(); ++i) {
    if (!get.slots_[i].empty() && arena_->Generation(reply.offsets(i)) != reply.generations(i)) {
      results[i].status = VoidedCopy("was evicted");
    }
  }
  if (auto s = FinishArenaGet(reply, results); !s.ok()) return s;
  return results;
}

absl::StatusOr<StartedGet> Session::StartGet(const NamespaceHandle& ns,
                                             std::span<const BlockKey> keys) {
  if (!arena_) {
    return absl::FailedPreconditionError(
        "StartGet needs the shared arena (a Unix-socket connection with use_shared_arena); "
        "use Get");
  }
  if (keys.size() > BatchSize(0)) {
    return absl::InvalidArgumentError(absl::StrCat("StartGet got ", keys.size(),
                                                   " keys; pass at most ", BatchSize(0),
                                                   " (the daemon's max_keys_per_request)"));
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  StartedGet get;
  if (auto s = StartArenaGet(*id, keys, &get); !s.ok()) return s;
  return get;
}

absl::Status Session::GetArenaInPlace(uint32_t ns_id, std::span<const BlockKey> keys,
                                      ArenaRead read, std::span<GetResult> results) {
  StartedGet get;
  if (auto s = StartArenaGet(ns_id, keys, &get); !s.ok()) return s;
  const absl::Status read_status = read(get.slots_, get.results_);
  absl::StatusOr<std::vector<GetResult>> finished = FinishGet(get);
  if (!finished.ok()) return finished.status();
  std::move(finished->begin(), finished->end(), results.begin());
  return read_status;
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
