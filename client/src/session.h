// Session: one Hello'd connection to kvtierd and, when granted, its shared arena mapping; it
// implements every request of the Client API for a single caller at a time.
//
// The Client wraps one Session behind a mutex for its synchronous calls; each async worker owns
// another. A Session remembers which namespaces it has opened so that a NamespaceHandle made
// by a different connection can be used here: the first use re-opens the namespace from the
// handle's descriptor (ids are per daemon, so this normally maps an id to itself; the map
// keeps the client correct even if a daemon chose per-connection ids).
//
// Batching: each call accepts any number of keys and splits them into requests that respect
// the daemon's max_keys_per_request and max_payload_bytes. Not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "frame_channel.h"
#include "kvtier/client/client.h"
#include "mailbox_client.h"
#include "shared_arena.h"

namespace kvtier::client {

class Session {
 public:
  // Connects, says Hello and maps the arena when options.use_shared_arena and the endpoint is
  // a Unix socket.
  static absl::StatusOr<std::unique_ptr<Session>> Open(const Endpoint& endpoint,
                                                       const ClientOptions& options);

  // Runs Hello over an already connected socket (used by Open, and by tests with a fake peer).
  static absl::StatusOr<std::unique_ptr<Session>> Handshake(Socket socket, bool want_arena,
                                                            const ClientOptions& options);

  const proto::HelloReply& hello() const { return hello_; }
  bool has_arena() const { return arena_ != nullptr; }
  bool has_mailbox() const { return mailbox_ != nullptr; }
  bool broken() const { return channel_.broken(); }

  absl::StatusOr<NamespaceHandle> OpenNamespace(const NamespaceDescriptor& descriptor,
                                                const proto::NamespaceOptions& options = {});
  absl::StatusOr<LookupResult> Lookup(const NamespaceHandle& ns, std::span<const BlockKey> keys);
  absl::StatusOr<std::vector<absl::Status>> Put(const NamespaceHandle& ns,
                                                std::span<const BlockKey> keys,
                                                std::span<const std::span<const std::byte>> blocks,
                                                const PutOptions& options = {});
  absl::StatusOr<std::vector<GetResult>> Get(const NamespaceHandle& ns,
                                             std::span<const BlockKey> keys,
                                             std::span<const std::span<std::byte>> out,
                                             const GetOptions& options = {});
  // Client::PutInPlace, GetInPlace and arena_memory.
  absl::StatusOr<std::vector<absl::Status>> PutInPlace(const NamespaceHandle& ns,
                                                       std::span<const BlockKey> keys,
                                                       std::span<const uint64_t> lengths,
                                                       ArenaFill fill, const PutOptions& options);
  absl::StatusOr<std::vector<GetResult>> GetInPlace(const NamespaceHandle& ns,
                                                    std::span<const BlockKey> keys, ArenaRead read);
  absl::StatusOr<ReservedPut> ReservePut(const NamespaceHandle& ns, std::span<const BlockKey> keys,
                                         std::span<const uint64_t> lengths,
                                         const PutOptions& options);
  absl::StatusOr<std::vector<absl::Status>> CommitPut(ReservedPut& put);
  absl::Status AbortPut(ReservedPut& put);
  absl::StatusOr<StartedGet> StartGet(const NamespaceHandle& ns, std::span<const BlockKey> keys);
  absl::StatusOr<std::vector<GetResult>> FinishGet(StartedGet& get);
  std::span<std::byte> arena_memory() const {
    return arena_ ? arena_->memory() : std::span<std::byte>();
  }
  absl::StatusOr<std::vector<absl::Status>> Pin(const NamespaceHandle& ns,
                                                std::span<const BlockKey> keys, bool pinned);
  absl::StatusOr<PrefetchResult> Prefetch(const NamespaceHandle& ns,
                                          std::span<const BlockKey> keys);
  absl::StatusOr<std::vector<absl::Status>> Remove(const NamespaceHandle& ns,
                                                   std::span<const BlockKey> keys);
  absl::StatusOr<proto::StatsReply> Stats();
  absl::StatusOr<proto::HealthReply> Health();
  absl::Status SetLimits(const NamespaceHandle& ns, const proto::NamespaceLimits& limits);
  absl::Status SetLimits(uint32_t namespace_id, const proto::NamespaceLimits& limits);

 private:
  explicit Session(FrameChannel channel) : channel_(std::move(channel)) {}

  // This connection's id for the handle's namespace, opening it here on first use.
  absl::StatusOr<uint32_t> NamespaceId(const NamespaceHandle& ns);
  // Largest number of keys per request for this call (keys limit, and payload limit when each
  // key carries up to `bytes_per_key` payload bytes).
  size_t BatchSize(uint64_t bytes_per_key) const;
  // Sends `request` (other fields preset) once per batch of `keys` and collects the reply's
  // one code per key (remove, pin).
  template <typename Request, typename Reply>
  absl::StatusOr<std::vector<absl::Status>> PerKeyCodes(proto::Opcode op, const NamespaceHandle& ns,
                                                        std::span<const BlockKey> keys,
                                                        Request request);
  // Maps the mailbox the daemon offered at Hello; on any failure the session goes on without.
  void AttachMailbox();
  // A call through the mailbox; a transport failure breaks the whole session, as on the socket.
  absl::Status MailboxCall(proto::Opcode op, const google::protobuf::MessageLite& request,
                           google::protobuf::MessageLite* reply);

  // The daemon's lease timeout (HelloReply), 10 s when it names none.
  std::chrono::milliseconds LeaseTimeout() const;

  // Checks a put's lengths and encodings against the namespace (InvalidArgument saying what
  // to fix); `lengths` are the bytes sent per block.
  static absl::Status CheckPut(const NamespaceHandle& ns, std::span<const uint64_t> lengths,
                               std::span<const uint8_t> codecs,
                               std::span<const uint64_t> raw_lengths);
  // A put request for keys [start, start + n) of a checked put, all but the mode.
  proto::PutRequest PutRequestFor(uint32_t ns_id, std::span<const BlockKey> keys,
                                  std::span<const uint64_t> lengths,
                                  std::span<const uint8_t> codecs,
                                  std::span<const uint64_t> raw_lengths, uint32_t ttl_seconds,
                                  size_t start, size_t n) const;
  // `request` has everything but the mode, which these set.
  absl::Status PutInline(proto::PutRequest& request, std::span<const BlockKey> keys,
                         std::span<const std::span<const std::byte>> blocks,
                         std::span<absl::Status> results);
  // What writes a shared-arena put's reserved slots (empty spans: not reserved) before the
  // write deadline, after which the daemon may reuse them: true when done in time, false when
  // it stopped (or finished) late, an error to abort the put.
  using SlotWriter = absl::FunctionRef<absl::StatusOr<bool>(
      std::span<const std::span<std::byte>> slots, std::chrono::steady_clock::time_point deadline)>;
  absl::Status PutArena(proto::PutRequest& request, size_t n, SlotWriter write,
                        std::span<absl::Status> results);
  // The steps of PutArena: reserve the request's slots; then, once they are written (or not in
  // time), commit them or give them back, with the per-block outcomes.
  absl::Status ReserveArena(proto::PutRequest& request, ReservedPut* put);
  absl::Status FinishArenaPut(ReservedPut& put, bool in_time, std::span<absl::Status> results);
  // Gives a lease back: OK also when the daemon had expired and forgotten it (NotFound).
  absl::Status ReleaseLease(uint64_t lease_id, bool* expired);
  // An encoded block copied into `frame`, to be decoded into `out` once the copy is known good.
  struct PendingDecode {
    size_t index;  // in the batch
    std::vector<std::byte> frame;
    std::span<std::byte> out;  // exactly the decoded length
  };
  // Where the get of block i of `reply` copies its `length` bytes to (out[i], or a frame
  // buffer in `*decodes` when it is encoded and `decode` is on); sets results[i]'s length,
  // codec and raw length, or its status when out[i] is too small (then returns an empty span).
  static std::span<std::byte> GetDestination(const proto::GetReply& reply, size_t i,
                                             std::span<std::byte> out, bool decode,
                                             GetResult* result,
                                             std::vector<PendingDecode>* decodes);
  // Decodes the pending frames whose results are still OK (the others were voided).
  static void DecodeFrames(std::vector<PendingDecode>& decodes, std::span<GetResult> results);
  // A get reply's codecs and raw_lengths are both empty or hold one entry per key.
  absl::Status CheckEncodings(const proto::GetReply& reply, size_t n);

  absl::Status GetInline(uint32_t ns_id, std::span<const BlockKey> keys,
                         std::span<const std::span<std::byte>> out, bool decode,
                         std::span<GetResult> results);
  absl::Status GetArena(uint32_t ns_id, std::span<const BlockKey> keys,
                        std::span<const std::span<std::byte>> out, bool decode,
                        std::span<GetResult> results);
  absl::Status GetArenaInPlace(uint32_t ns_id, std::span<const BlockKey> keys, ArenaRead read,
                               std::span<GetResult> results);
  // The first step of GetArenaInPlace and StartGet: the get, and the slots to copy.
  absl::Status StartArenaGet(uint32_t ns_id, std::span<const BlockKey> keys, StartedGet* get);
  // Gives back a shared-arena get's lease; voids the copies when it had expired.
  absl::Status FinishArenaGet(const proto::GetReply& reply, std::span<GetResult> results);
  // Sends a shared-arena get of `keys` and checks the reply's shape, slots and encodings.
  absl::Status CallArenaGet(uint32_t ns_id, std::span<const BlockKey> keys, proto::GetReply* reply);

  FrameChannel channel_;
  proto::HelloReply hello_;
  std::unique_ptr<SharedArena> arena_;
  std::unique_ptr<MailboxClient> mailbox_;
  MailboxClient::Wait mailbox_wait_;
  absl::flat_hash_map<uint32_t, uint32_t> namespace_ids_;  // handle id -> id on this connection
};

}  // namespace kvtier::client
