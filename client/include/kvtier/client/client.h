// kvtier::client::Client: the C++ API an inference engine links to use a kvtierd.
//
// What it is: one connection to one daemon (Unix socket or TCP), plus the daemon's shared DRAM
// arena mapped into this process when the connection is a Unix socket and
// ClientOptions::use_shared_arena is set. Puts and gets then move block bytes by memcpy through
// the arena (the daemon never touches them); otherwise the bytes travel inline in the frames.
// Which path a call took is invisible to the caller apart from speed.
//
// Ownership: the Client owns its socket, its arena mapping and the worker threads behind the
// *Async calls; destroying it closes all of them. It never takes ownership of caller buffers:
// every span passed in is only read (puts) or written (gets) during the call, or, for *Async
// calls, until the returned future is ready.
//
// Thread safety: a Client is safe to share between threads. Synchronous calls are serialized by
// an internal mutex because a connection carries one request at a time; threads that need
// parallel round trips should use one Client each, or the *Async calls, which run on
// ClientOptions::async_workers worker threads that each own a further connection to the same
// daemon (opened on first use). HashTokens() takes no lock.
//
// Blocking: every call except HashTokens() and the *Async ones blocks until the daemon answers.
// A call fails with DeadlineExceeded when the socket makes no progress for
// ClientOptions::io_timeout; a call that keeps moving bytes may take longer than that.
//
// Errors (absl::Status, codes as in docs/architecture.md):
//   Unavailable        the daemon cannot be reached, closed the connection, or a transport
//                      error broke it. Retryable with a new Client: after a transport error the
//                      connection is unusable (its framing is lost) and every later
//                      synchronous call returns Unavailable naming the first error. The async
//                      workers reconnect by themselves on their next task.
//   DeadlineExceeded   io_timeout passed without progress; the connection is broken as above.
//   InvalidArgument    bad input from the caller (mismatched spans, a block larger than the
//                      namespace's block_bytes, ...), with a message saying what to fix.
//   Internal           the daemon broke the protocol (e.g. an arena offset out of range); the
//                      connection is broken.
//   anything else      the daemon's own error reply for this request (e.g. PermissionDenied
//                      for a wrong auth token); the connection stays usable.
// Per-block outcomes are reported per block and never as the call's status (see Put/Get).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier.pb.h"
#include "kvtier/client/endpoint.h"
#include "kvtier/common/block_key.h"
#include "kvtier/common/namespace_descriptor.h"

namespace kvtier::client {

class Session;
class AsyncWorkers;

// Options of Client::Connect. Fixed for the life of the Client.
struct ClientOptions {
  // Sent in Hello; must equal the daemon's --auth-token when it has one. Default: none.
  std::string auth_token;
  // Shows up in the daemon's logs. Default: "kvtier-client".
  std::string client_name = "kvtier-client";
  // Map the daemon's DRAM arena and move bytes through it (Unix sockets only; ignored for TCP).
  // Default true. When the daemon does not offer the arena, the client silently uses inline
  // frames; Client::shared_arena() tells which.
  bool use_shared_arena = true;
  // Send lookups through a request mailbox in memory shared with the daemon instead of the
  // socket (Unix sockets only; protocol.md 7.4): with the daemon's threads busy-polling, a
  // lookup then costs no system call on either side. Default true. When the daemon does not
  // offer one, lookups use the socket; Client::request_mailbox() tells which.
  bool use_request_mailbox = true;
  // Longest time a socket operation may wait without any progress. Default 10 s; >= 1 ms.
  std::chrono::milliseconds io_timeout{10'000};
  // Time to establish the connection (TCP connect + Hello). Default 5 s; >= 1 ms.
  std::chrono::milliseconds connect_timeout{5'000};
  // Worker threads (each with its own connection) behind the *Async calls, started lazily by
  // the first *Async call. Default 1; 0 is invalid.
  int async_workers = 1;
  // While waiting for a reply, keep retrying the socket this long before sleeping: a reply
  // usually comes within tens of microseconds, and waking a sleeping thread costs a good part
  // of that. Burns up to this much CPU per request; 0 sleeps at once. Default -1: auto, 50 us
  // on machines with at least 8 cores, 0 on smaller ones.
  std::chrono::microseconds busy_poll{-1};

  // InvalidArgument naming the offending field.
  absl::Status Validate() const;
};

// An open namespace. A plain value: copy it freely and use it with the Client (or another
// Client of the same daemon) that opened it. Valid for the life of the daemon process.
struct NamespaceHandle {
  uint32_t id = 0;    // the daemon's namespace id
  BlockKey key_seed;  // key[-1] of the chained block hash of this namespace
  uint64_t block_bytes = 0;
  uint32_t block_tokens = 0;
  NamespaceDescriptor descriptor;   // lets another connection re-open the same namespace
  proto::NamespaceOptions options;  // how the daemon stores it (compression), as opened
};

struct LookupResult {
  // Length m of the longest cached run keys[0..m-1].
  uint32_t prefix_blocks = 0;
  // One entry per block of that run: where the daemon holds it.
  std::vector<proto::Tier> tiers;
};

// Per-block outcome of a Get.
struct GetResult {
  // OK: `length` bytes were written to the front of the block's output buffer.
  // NotFound: not cached (a plain miss).
  // Unavailable: the block was cached but got evicted or rewritten while this client copied it
  //   out of the shared arena (its generation changed, or the lease expired before release);
  //   the output buffer holds garbage. Count it as a miss; retrying may hit a newer copy.
  // InvalidArgument: the output buffer is smaller than the stored block (`length` says how big
  //   it is); nothing was written.
  absl::Status status;
  uint64_t length = 0;
  proto::Tier tier = proto::TIER_NONE;  // where the daemon found it (TIER_NONE for misses)
  // Only with GetOptions::decode == false: how the `length` bytes written are encoded
  // (kvtier/compression/codec.h: 0 stored, 1 kvz) and the block's length before encoding
  // (0 for stored blocks). With decoding on, blocks arrive decoded and codec is 0.
  uint8_t codec = 0;
  uint64_t raw_length = 0;
};

struct GetOptions {
  // Decode encoded blocks (COMPRESSION_KVZ namespaces) with the CPU kvz codec into the output
  // buffers, which must then hold the decoded length. Default true. false: the encoded bytes
  // are written as they are and GetResult says how to decode them (the GPU path, client/cuda,
  // decodes on the device). A block whose frame fails its checks is DataLoss, never wrong
  // bytes.
  bool decode = true;
};

// What a prefetch hint found (counts of keys; they add up to the keys sent).
struct PutOptions {
  // The blocks expire this many seconds after they are stored, in every tier: gets miss them
  // from then on. 0: the namespace's default TTL (SetLimits), if any.
  uint32_t ttl_seconds = 0;
  // Blocks encoded already (the GPU path, client/cuda): empty, or one codec per block (0
  // stored, 1 kvz) and one length before encoding per block (0 for stored blocks, else at
  // most block_bytes). Encoded blocks need a COMPRESSION_KVZ namespace (else
  // InvalidArgument). The daemon does not decode them: a wrong raw length only skews stats.
  std::span<const uint8_t> codecs;
  std::span<const uint64_t> raw_lengths;
  // In a COMPRESSION_KVZ namespace, encode the blocks with the CPU kvz codec before sending
  // them (ignored when `codecs` is set, or elsewhere): fewer bytes through the socket and in
  // DRAM, for about 1 ms of this thread per MiB. A block that does not shrink goes as is.
  // Default false: the daemon stores blocks as sent and encodes them when it demotes them.
  bool cpu_compress = false;
};

struct PrefetchResult {
  uint32_t queued = 0;      // on NVMe: being promoted to DRAM now
  uint32_t in_dram = 0;     // nothing to do
  uint32_t not_cached = 0;  // in no tier
  uint32_t dropped = 0;     // on NVMe, left alone: the daemon's prefetch work is at its bound
};

// Put's per-block outcomes are absl::Status values: OK (stored now), AlreadyExists (the key was
// cached already; nothing was sent, which is success), ResourceExhausted (no room even after
// eviction, or a write-through daemon's NVMe device is full), DeadlineExceeded (the arena lease
// expired before the commit; nothing stored), and from a daemon running --nvme-write-through:
// Unavailable (the block could not be written to NVMe: I/O error, failed fdatasync) and Aborted
// (another block of the same put failed; a put is all or nothing). Nothing is stored after any
// of the failures; all may be retried. Returns true for the two outcomes after which the key is
// cached.
inline bool IsStored(const absl::Status& block_status) {
  return block_status.ok() || absl::IsAlreadyExists(block_status);
}

// The callbacks of Client::PutInPlace and Client::GetInPlace (below). `slots` has one entry
// per key of the request, in key order: the block's bytes in the shared arena, or empty where
// there is nothing to write (the block is cached already or found no room) or to read (a miss,
// or a copy already voided). The callback must finish every write or read before it returns
// (synchronize any DMA it started), also when it fails. A non-OK status aborts the request: a
// put's reservation is given back (nothing stored; the daemon may reuse its slots at once) and
// the call returns that status.
using ArenaFill = absl::FunctionRef<absl::Status(std::span<const std::span<std::byte>> slots)>;
using ArenaRead = absl::FunctionRef<absl::Status(std::span<const std::span<const std::byte>> slots,
                                                 std::span<const GetResult> results)>;

namespace client_internal {
// Whether a two-step call (ReservedPut, StartedGet) is still to be finished. A move leaves it
// false, so the holders' default moves leave a moved-from handle finished.
struct OpenFlag {
  bool value = false;
  OpenFlag() = default;
  OpenFlag(OpenFlag&& other) noexcept : value(std::exchange(other.value, false)) {}
  OpenFlag& operator=(OpenFlag&& other) noexcept {
    value = std::exchange(other.value, false);
    return *this;
  }
};
}  // namespace client_internal

// A put in place in two steps, Client::ReservePut and then CommitPut (or AbortPut), for
// callers that write one batch's slots while the round trip of the next is on the way (the GPU
// path overlaps its DMA with them). Move-only; a reservation neither committed nor aborted
// ends when its lease expires (nothing stored).
class ReservedPut {
 public:
  ReservedPut() = default;
  // A moved-from reservation is finished (neither commits nor aborts anything).
  ReservedPut(ReservedPut&&) noexcept = default;
  ReservedPut& operator=(ReservedPut&&) noexcept = default;

  // One per key: the block's slot in the arena to write before CommitPut, or empty (nothing to
  // write: CommitPut reports why, e.g. AlreadyExists).
  std::span<const std::span<std::byte>> slots() const { return slots_; }

 private:
  friend class Session;
  std::vector<std::span<std::byte>> slots_;
  std::vector<int32_t> codes_;      // the reservation's per-block codes
  uint64_t lease_id_ = 0;           // 0 when nothing was reserved
  client_internal::OpenFlag open_;  // reserved, neither committed nor aborted yet
  std::chrono::steady_clock::time_point write_deadline_;
};

// A get in place in two steps, Client::StartGet and then FinishGet, for the same reason.
class StartedGet {
 public:
  StartedGet() = default;
  // A moved-from get is finished.
  StartedGet(StartedGet&&) noexcept = default;
  StartedGet& operator=(StartedGet&&) noexcept = default;

  // One per key: the hit's bytes in the arena to copy before FinishGet, or empty.
  std::span<const std::span<const std::byte>> slots() const { return slots_; }
  // What is known before the copies (length, codec, tier; misses), as GetInPlace's read sees it.
  std::span<const GetResult> results() const { return results_; }

 private:
  friend class Session;
  std::vector<std::span<const std::byte>> slots_;
  std::vector<GetResult> results_;
  proto::GetReply reply_;
  client_internal::OpenFlag open_;  // started, not finished yet
};

class Client {
 public:
  // Connects to the daemon at `uri` (see endpoint.h), says Hello, and maps the shared arena if
  // asked for and offered. Unavailable with a hint ("is kvtierd running?") when nothing
  // listens; the daemon's status (e.g. PermissionDenied) when it refuses the Hello;
  // InvalidArgument for a malformed uri or options. Blocks up to connect_timeout.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(std::string_view uri,
                                                         const ClientOptions& options);

  // Closes the connection and unmaps the arena. Blocks until the async workers have finished
  // their current request; queued *Async requests complete with Cancelled.
  ~Client();

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // The daemon's Hello reply: server version, limits, arena geometry, lease timeout.
  const proto::HelloReply& server_info() const { return hello_; }
  // True when block bytes move through the shared arena rather than inline frames.
  bool shared_arena() const { return shared_arena_; }
  // True when the synchronous lookups go through a request mailbox.
  bool request_mailbox() const { return request_mailbox_; }
  // The canonical URI this client connected to.
  const std::string& uri() const { return uri_; }

  // Opens (or finds) the namespace `descriptor` names. InvalidArgument for a descriptor the
  // protocol rejects (empty model_id, block_tokens 0, ...), checked before anything is sent,
  // or for compression of a dtype kvz does not know. `options` (compression) are fixed by the
  // open that creates the namespace: FailedPrecondition when it exists with other options.
  absl::StatusOr<NamespaceHandle> OpenNamespace(const NamespaceDescriptor& descriptor,
                                                const proto::NamespaceOptions& options = {});

  // Block keys of a token sequence in this namespace: one key per full block of
  // handle.block_tokens tokens (a trailing partial block has no key), chained from
  // handle.key_seed as docs/keys.md defines. Pure CPU work; takes no lock, never blocks.
  std::vector<BlockKey> HashTokens(const NamespaceHandle& handle,
                                   std::span<const uint32_t> tokens) const;

  // The longest cached prefix of `keys` (in prefix order) and the tier of each of its blocks.
  // Does not count as a use for eviction. Any number of keys; large batches are split into
  // requests of at most the daemon's max_keys_per_request.
  absl::StatusOr<LookupResult> Lookup(const NamespaceHandle& handle,
                                      std::span<const BlockKey> keys);

  // Stores blocks[i] under keys[i]. REQUIRES keys.size() == blocks.size() and every block at
  // most handle.block_bytes long (else InvalidArgument, nothing sent). Returns one status per
  // block (see IsStored above); the call's own status is an error only when the request as a
  // whole failed. Large batches are split into several requests; blocks of a failed request
  // are not retried.
  absl::StatusOr<std::vector<absl::Status>> Put(const NamespaceHandle& handle,
                                                std::span<const BlockKey> keys,
                                                std::span<const std::span<const std::byte>> blocks,
                                                const PutOptions& options = {});

  // Sets the namespace's DRAM and NVMe quotas, priority and default TTL (proto::NamespaceLimits,
  // whole; docs/policy.md "Memory controls"). They hold for the life of the daemon process; a
  // lowered quota takes effect before the call returns. InvalidArgument when the priority
  // would make more than 8 distinct ones; FailedPrecondition for an NVMe quota on a daemon
  // without an NVMe tier.
  absl::Status SetLimits(const NamespaceHandle& handle, const proto::NamespaceLimits& limits);
  // The same by the daemon's namespace id, as `kvtierctl namespaces` lists it (admin tools).
  absl::Status SetLimits(uint32_t namespace_id, const proto::NamespaceLimits& limits);

  // Fetches keys[i] into out[i]. REQUIRES keys.size() == out.size(); each out[i] should be
  // handle.block_bytes long. Returns one GetResult per key (see GetResult for the codes).
  // Each hit counts as a use for eviction.
  absl::StatusOr<std::vector<GetResult>> Get(const NamespaceHandle& handle,
                                             std::span<const BlockKey> keys,
                                             std::span<const std::span<std::byte>> out,
                                             const GetOptions& options = {});

  // Drops keys from every tier. One status per key: OK (removed) or NotFound.
  absl::StatusOr<std::vector<absl::Status>> Remove(const NamespaceHandle& handle,
                                                   std::span<const BlockKey> keys);

  // Pins (or with pinned=false unpins) cached blocks: a pinned block is never evicted from
  // DRAM nor dropped from NVMe until it is unpinned or removed. OK per key when the daemon held
  // the block, NotFound otherwise.
  absl::StatusOr<std::vector<absl::Status>> Pin(const NamespaceHandle& handle,
                                                std::span<const BlockKey> keys, bool pinned);

  // A hint that `keys` will be read soon: the daemon starts bringing those on NVMe into DRAM
  // and answers without waiting for the I/O; those already in DRAM count as used now, so that
  // eviction keeps them as it keeps a block just read. Purely a performance hint: a Get is correct
  // whether or not the promotion has finished.
  absl::StatusOr<PrefetchResult> Prefetch(const NamespaceHandle& handle,
                                          std::span<const BlockKey> keys);

  // Counters of the daemon: per tier, per namespace and for the server.
  absl::StatusOr<proto::StatsReply> Stats();

  // Whether the daemon is serving. A reply with serving == false is returned as a value.
  absl::StatusOr<proto::HealthReply> Health();

  // Zero-copy puts and gets for callers that move block bytes themselves: the GPU path
  // (client/cuda) lets the GPU's copy engines write and read the arena, with no CPU memcpy.
  // Shared-arena connections only: FailedPrecondition when shared_arena() is false (TCP, or
  // use_shared_arena off), and the caller then uses Put and Get. The Client's lock is held
  // while the callback runs: it must not call this Client.
  //
  // The daemon's arena as mapped in this process (empty without one). A caller may register
  // it with its DMA engine (cudaHostRegister); the Client must outlive that registration.
  std::span<std::byte> arena_memory() const;
  // Put in place: the daemon reserves lengths[i] bytes for keys[i], `fill` writes the blocks
  // into the slots, then the put commits. As Put otherwise (lengths checked the same way,
  // PutOptions::codecs and raw_lengths describe encoded blocks; cpu_compress is ignored),
  // and the same per-block outcomes. `fill` runs once per request the batch is split into
  // (once for up to the daemon's max_keys_per_request keys) and should return within the
  // arena lease (server_info().lease_timeout_ms): a fill that returns later is reported
  // DeadlineExceeded per block and nothing is stored. The daemon keeps the slots out of use
  // until the put is answered or a second lease has passed, so a fill must never write for
  // longer than that (docs/protocol.md 7.2).
  absl::StatusOr<std::vector<absl::Status>> PutInPlace(const NamespaceHandle& handle,
                                                       std::span<const BlockKey> keys,
                                                       std::span<const uint64_t> lengths,
                                                       ArenaFill fill,
                                                       const PutOptions& options = {});
  // Get in place: `read` gets each hit's bytes in the arena (the results say their length,
  // codec and raw length, as Get with GetOptions::decode = false) and copies them where it
  // wants them. Afterwards the copies are checked as Get checks its own: a result that is not
  // OK on return (Unavailable: the slot was reused while `read` copied it) means that block's
  // copy holds garbage. Hits count as uses, as for Get. `read` runs once per request.
  absl::StatusOr<std::vector<GetResult>> GetInPlace(const NamespaceHandle& handle,
                                                    std::span<const BlockKey> keys, ArenaRead read);

  // PutInPlace in two steps, for one request's worth of keys (at most the daemon's
  // max_keys_per_request, else InvalidArgument): ReservePut reserves the slots, the caller
  // writes ReservedPut::slots(), and CommitPut stores them, with PutInPlace's per-block
  // outcomes (DeadlineExceeded for every block when called after the lease's write deadline).
  // AbortPut gives the slots back (nothing stored); every write into them must have finished
  // before it is called, since the daemon may reuse them at once. Other calls may come in between:
  // a caller can hold several reservations and write one while reserving the next.
  absl::StatusOr<ReservedPut> ReservePut(const NamespaceHandle& handle,
                                         std::span<const BlockKey> keys,
                                         std::span<const uint64_t> lengths,
                                         const PutOptions& options = {});
  absl::StatusOr<std::vector<absl::Status>> CommitPut(ReservedPut& put);
  absl::Status AbortPut(ReservedPut& put);
  // GetInPlace in two steps, likewise: StartGet quotes the hits' slots, the caller copies
  // StartedGet::slots(), and FinishGet checks the copies and gives the lease back, returning
  // the results (a copy voided meanwhile is Unavailable, as for GetInPlace).
  absl::StatusOr<StartedGet> StartGet(const NamespaceHandle& handle,
                                      std::span<const BlockKey> keys);
  absl::StatusOr<std::vector<GetResult>> FinishGet(StartedGet& get);

  // Asynchronous forms of Put, Get and Lookup: the request runs on a worker thread with its
  // own connection and the future carries exactly what the synchronous call would return
  // (plus Cancelled if the Client is destroyed while the request still waits in the queue).
  // Keys are copied; the byte spans are not: the caller keeps `blocks` / `out` alive and
  // untouched until the future is ready. Never block (apart from a brief queue lock).
  std::future<absl::StatusOr<std::vector<absl::Status>>> PutAsync(
      const NamespaceHandle& handle, std::vector<BlockKey> keys,
      std::vector<std::span<const std::byte>> blocks);
  std::future<absl::StatusOr<std::vector<GetResult>>> GetAsync(
      const NamespaceHandle& handle, std::vector<BlockKey> keys,
      std::vector<std::span<std::byte>> out);
  std::future<absl::StatusOr<LookupResult>> LookupAsync(const NamespaceHandle& handle,
                                                        std::vector<BlockKey> keys);

 private:
  Client(std::string uri, ClientOptions options, std::unique_ptr<Session> session);
  AsyncWorkers& workers();  // starts them on first use

  const std::string uri_;
  const ClientOptions options_;
  proto::HelloReply hello_;
  bool shared_arena_ = false;
  bool request_mailbox_ = false;

  std::mutex mu_;  // serializes synchronous calls on session_
  std::unique_ptr<Session> session_;

  std::once_flag workers_once_;
  std::unique_ptr<AsyncWorkers> workers_;
};

}  // namespace kvtier::client
