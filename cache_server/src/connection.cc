#include "connection.h"

#include <sys/socket.h>

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/proto/frame.h"
#include "kvtier/proto/messages.h"
#include "spdlog/spdlog.h"

namespace kvtier::server {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using proto::FrameHeader;
using proto::Opcode;

// Runs `fn` on `pool` and resumes the calling coroutine on its own executor with the result.
template <typename Fn>
awaitable<std::invoke_result_t<Fn&>> RunOn(asio::thread_pool& pool, Fn fn) {
  using Result = std::invoke_result_t<Fn&>;
  auto home = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<decltype(use_awaitable), void(Result)>(
      [&pool, home, fn = std::move(fn)](auto handler) mutable {
        asio::post(pool, [home, fn = std::move(fn), handler = std::move(handler)]() mutable {
          Result result = fn();
          asio::post(home, [handler = std::move(handler), result = std::move(result)]() mutable {
            handler(std::move(result));
          });
        });
      },
      use_awaitable);
}

template <typename Socket>
class Connection {
 public:
  Connection(Socket socket, Service* service, NvmeExecutors* blocking, uint64_t id,
             MailboxSet* mailboxes)
      : socket_(std::move(socket)),
        svc_(service),
        blocking_(blocking),
        id_(id),
        mailboxes_(mailboxes) {}

  // Also when the io_context is destroyed with the coroutine suspended (daemon shutdown).
  ~Connection() {
    if (mailbox_ != nullptr) {
      mailboxes_->Remove(mailbox_.get());
      svc_->counters().mailboxes_active.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  awaitable<void> Run() {
    try {
      for (bool keep = true; keep;) {
        co_await asio::async_read(socket_, asio::buffer(header_in_), use_awaitable);
        absl::StatusOr<FrameHeader> h = proto::DecodeFrameHeader(header_in_, svc_->limits());
        if (!h.ok()) {
          svc_->counters().bad_frames.fetch_add(1, std::memory_order_relaxed);
          spdlog::debug("connection {}: bad frame header: {}", id_, h.status().ToString());
          // The stream cannot be resynchronised: answer once, then close. The header's own
          // fields are untrusted, so the reply says request 0, opcode hello (protocol.md 6.1).
          FrameHeader any;
          any.opcode = Opcode::kHello;
          co_await SendError(any, h.status());
          break;
        }
        body_.resize(h->body_len);
        if (h->body_len > 0) {
          co_await asio::async_read(socket_, asio::buffer(body_), use_awaitable);
        }
        // A doorbell is not a request: the mailbox counts the one it announces.
        if (h->opcode == Opcode::kMailboxDoorbell) {
          keep = co_await Handle(*h);
          continue;
        }
        svc_->counters().requests.fetch_add(1, std::memory_order_relaxed);
        const auto start = std::chrono::steady_clock::now();
        keep = co_await Handle(*h);
        svc_->counters().RecordLatency(
            h->opcode, static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                 std::chrono::steady_clock::now() - start)
                                                 .count()));
      }
    } catch (const boost::system::system_error& e) {
      // The peer went away or the daemon is shutting down: nothing to answer.
      spdlog::debug("connection {} closed: {}", id_, e.what());
    } catch (const std::exception& e) {
      spdlog::error("connection {} failed: {}", id_, e.what());
    }
    boost::system::error_code ignored;
    socket_.close(ignored);
    svc_->ConnectionClosed(id_);
    svc_->counters().connections_active.fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  // Returns false when the connection must close (today every well-framed request keeps it
  // open; the bool leaves room for requests that end a session).
  awaitable<bool> Handle(const FrameHeader& h) {
    if (!hello_done_ && h.opcode != Opcode::kHello) {
      co_return co_await Reject(
          h, absl::FailedPreconditionError(
                 absl::StrCat("send hello first: the first request on a connection must be "
                              "hello, got ",
                              AbslView(proto::OpcodeName(h.opcode)))));
    }
    switch (h.opcode) {
      case Opcode::kHello:
        co_return co_await OnHello(h);
      case Opcode::kOpenNamespace:
        co_return co_await Simple<proto::OpenNamespaceRequest>(
            h, [this](const auto& r) { return svc_->OpenNamespace(r); },
            svc_->OpenNamespaceNeedsIo());
      case Opcode::kLookup:
        co_return co_await Simple<proto::LookupRequest>(
            h, [this](const auto& r) { return svc_->Lookup(r); });
      case Opcode::kPut:
        co_return co_await OnPut(h);
      case Opcode::kPutCommit:
        co_return co_await Simple<proto::PutCommitRequest>(
            h,
            [this](const auto& r) -> absl::StatusOr<proto::PutCommitReply> {
              auto codes = svc_->CommitPut(id_, r.lease_id());
              if (!codes.ok()) return codes.status();
              proto::PutCommitReply reply;
              for (absl::StatusCode c : *codes) reply.add_codes(static_cast<int32_t>(c));
              return reply;
            },
            svc_->CommitNeedsIo());
      case Opcode::kGet:
        co_return co_await OnGet(h);
      case Opcode::kRelease:
        co_return co_await Simple<proto::ReleaseRequest>(
            h, [this](const auto& r) -> absl::StatusOr<proto::ReleaseReply> {
              auto expired = svc_->Release(id_, r.lease_id());
              if (!expired.ok()) return expired.status();
              proto::ReleaseReply reply;
              reply.set_expired(*expired);
              return reply;
            });
      case Opcode::kRemove:
        co_return co_await Simple<proto::RemoveRequest>(
            h, [this](const auto& r) { return svc_->Remove(r); }, svc_->RemoveNeedsIo());
      case Opcode::kPrefetch:
        co_return co_await OnPrefetch(h);
      case Opcode::kPin:
        co_return co_await Simple<proto::PinRequest>(
            h, [this](const auto& r) { return svc_->Pin(r); }, svc_->PinNeedsIo());
      case Opcode::kSetLimits:
        co_return co_await Simple<proto::SetLimitsRequest>(
            h, [this](const auto& r) { return svc_->SetLimits(r); }, svc_->SetLimitsNeedsIo());
      case Opcode::kStats:
        co_return co_await Simple<proto::StatsRequest>(
            h, [this](const auto&) -> absl::StatusOr<proto::StatsReply> { return svc_->Stats(); });
      case Opcode::kHealth:
        co_return co_await Simple<proto::HealthRequest>(
            h,
            [this](const auto&) -> absl::StatusOr<proto::HealthReply> { return svc_->Health(); });
      case Opcode::kAttachMailbox:
        co_return co_await OnAttachMailbox(h);
      case Opcode::kMailboxDoorbell:
        // No reply: the answer goes to the mailbox. A doorbell without a mailbox is a client bug
        // that harms nobody; it is counted and ignored.
        if (h.payload_len != 0) {
          co_return co_await RejectMalformed(
              h, absl::InvalidArgumentError("mailbox_doorbell carries no payload"));
        }
        if (mailbox_ == nullptr) {
          svc_->counters().bad_frames.fetch_add(1, std::memory_order_relaxed);
        } else {
          mailbox_->Serve(svc_);
        }
        co_return true;
    }
    // DecodeFrameHeader rejects unknown opcodes; this is unreachable for valid headers.
    co_return co_await Reject(h, absl::UnimplementedError("unknown opcode"));
  }

  // Requests without payload: parse, call, reply. With `needs_io` (and the NVMe tier on), the
  // call runs on the NVMe threads while this coroutine waits.
  template <typename Req, typename Fn>
  awaitable<bool> Simple(const FrameHeader& h, Fn fn, bool needs_io = false) {
    Req req;
    if (absl::Status s = proto::ParseRequest(body_, h.payload_len, svc_->limits(), &req); !s.ok()) {
      co_return co_await RejectMalformed(h, s);
    }
    // (Not a conditional expression: GCC 12 destroys a co_await temporary in one twice.)
    decltype(fn(req)) reply = absl::UnknownError("unset");
    if (Offload(needs_io)) {
      reply = co_await RunOn(blocking_->pool, [&fn, &req] { return fn(req); });
    } else {
      reply = fn(req);
    }
    if (!reply.ok()) co_return co_await Reject(h, reply.status());
    co_await SendReply(h, *reply);
    co_return true;
  }

  // Mailboxes come only with the Unix socket, so having a set says which socket this is.
  bool is_unix() const { return mailboxes_ != nullptr; }

  // Whether calls that may block on NVMe must leave the network thread.
  bool Offload(bool needs_io) const { return needs_io && blocking_ != nullptr; }

  awaitable<absl::StatusOr<std::vector<absl::StatusCode>>> CommitPut(uint64_t lease) {
    if (Offload(svc_->CommitNeedsIo())) {
      co_return co_await RunOn(blocking_->pool,
                               [this, lease] { return svc_->CommitPut(id_, lease); });
    }
    co_return svc_->CommitPut(id_, lease);
  }

  awaitable<bool> OnPrefetch(const FrameHeader& h) {
    proto::PrefetchRequest req;
    if (absl::Status s = proto::ParseRequest(body_, h.payload_len, svc_->limits(), &req); !s.ok()) {
      co_return co_await RejectMalformed(h, s);
    }
    std::vector<BlockKey> keys;
    absl::StatusOr<proto::PrefetchReply> reply = svc_->Prefetch(req, &keys);
    if (!reply.ok()) co_return co_await Reject(h, reply.status());
    if (!keys.empty() && blocking_ != nullptr) {
      // Not awaited: the hint's whole point is that the client does not wait for the I/O.
      asio::post(blocking_->prefetch, [svc = svc_, ns = req.namespace_id(),
                                       keys = std::move(keys)] { svc->RunPrefetch(ns, keys); });
    }
    co_await SendReply(h, *reply);
    co_return true;
  }

  awaitable<bool> OnHello(const FrameHeader& h) {
    proto::HelloRequest req;
    if (absl::Status s = proto::ParseRequest(body_, h.payload_len, svc_->limits(), &req); !s.ok()) {
      co_return co_await RejectMalformed(h, s);
    }
    if (hello_done_) {
      co_return co_await Reject(
          h, absl::FailedPreconditionError("hello was sent twice on one connection"));
    }
    // A wrong token leaves the connection open for another hello (protocol.md 3).
    auto reply = svc_->Hello(req, is_unix());
    if (!reply.ok()) co_return co_await Reject(h, reply.status());
    hello_done_ = true;
    arena_attached_ = reply->has_arena();
    if (arena_attached_) {
      co_await SendReplyWithFd(h, *reply, svc_->dram()->arena_fd());
    } else {
      co_await SendReply(h, *reply);
    }
    co_return true;
  }

  awaitable<bool> OnAttachMailbox(const FrameHeader& h) {
    proto::AttachMailboxRequest req;
    if (absl::Status s = proto::ParseRequest(body_, h.payload_len, svc_->limits(), &req); !s.ok()) {
      co_return co_await RejectMalformed(h, s);
    }
    if (!is_unix() || !svc_->config().request_mailbox) {
      co_return co_await Reject(
          h, absl::FailedPreconditionError(
                 "this connection is not offered a mailbox (Unix socket only, and "
                 "server.request_mailbox on); send requests on the socket"));
    }
    if (mailbox_ != nullptr) {
      co_return co_await Reject(
          h, absl::FailedPreconditionError("a mailbox is already attached to this connection"));
    }
    absl::StatusOr<std::unique_ptr<RequestMailbox>> m = RequestMailbox::Create();
    if (!m.ok()) co_return co_await Reject(h, m.status());
    mailbox_ = *std::move(m);
    mailboxes_->Add(mailbox_.get());
    svc_->counters().mailboxes_active.fetch_add(1, std::memory_order_relaxed);
    co_await SendReplyWithFd(h, mailbox_->info(), mailbox_->fd());
    mailbox_->CloseFd();  // the client holds its own copy now
    co_return true;
  }

  awaitable<bool> OnPut(const FrameHeader& h) {
    proto::PutRequest req;
    if (absl::Status s = proto::ParseRequest(body_, h.payload_len, svc_->limits(), &req); !s.ok()) {
      co_return co_await RejectMalformed(h, s);
    }
    const bool inline_data = req.mode() == proto::DATA_INLINE;
    if (!inline_data && !arena_attached_) co_return co_await Reject(h, NoArena());
    absl::StatusOr<tiers::LeaseGrant> grant = svc_->ReservePut(id_, req);
    if (!grant.ok()) co_return co_await Reject(h, grant.status());

    proto::PutReply reply;
    if (!inline_data) {
      for (size_t i = 0; i < grant->codes.size(); ++i) {
        reply.add_codes(static_cast<int32_t>(grant->codes[i]));
        reply.add_offsets(grant->codes[i] == absl::StatusCode::kOk ? grant->slots[i].offset : 0);
      }
      reply.set_lease_id(grant->lease_id);
      co_await SendReply(h, reply);
      co_return true;
    }

    // Inline: read each block straight into its slot; skip the bytes of blocks not granted.
    std::byte* base = svc_->dram()->arena_base();
    for (size_t i = 0; i < grant->codes.size(); ++i) {
      const uint64_t len = req.lengths(static_cast<int>(i));
      if (grant->codes[i] == absl::StatusCode::kOk) {
        co_await asio::async_read(socket_, asio::buffer(base + grant->slots[i].offset, len),
                                  use_awaitable);
      } else {
        co_await Drain(len);
      }
    }
    std::vector<absl::StatusCode> codes = grant->codes;
    if (grant->lease_id != 0) {
      absl::StatusOr<std::vector<absl::StatusCode>> committed = co_await CommitPut(grant->lease_id);
      if (!committed.ok()) {
        // The payload is consumed already: answer without draining.
        svc_->counters().error_replies.fetch_add(1, std::memory_order_relaxed);
        co_await SendError(h, committed.status());
        co_return true;
      }
      MergeCommitCodes(*committed, &codes);
    }
    for (absl::StatusCode c : codes) reply.add_codes(static_cast<int32_t>(c));
    co_await SendReply(h, reply);
    co_return true;
  }

  // CommitPut answers one code per granted block (those with kOk in the reservation), in key
  // order; fold them back into the per-key codes.
  static void MergeCommitCodes(const std::vector<absl::StatusCode>& committed,
                               std::vector<absl::StatusCode>* codes) {
    size_t j = 0;
    for (absl::StatusCode& c : *codes) {
      if (c == absl::StatusCode::kOk && j < committed.size()) c = committed[j++];
    }
  }

  awaitable<bool> OnGet(const FrameHeader& h) {
    proto::GetRequest req;
    if (absl::Status s = proto::ParseRequest(body_, h.payload_len, svc_->limits(), &req); !s.ok()) {
      co_return co_await RejectMalformed(h, s);
    }
    const bool inline_data = req.mode() == proto::DATA_INLINE;
    if (!inline_data && !arena_attached_) co_return co_await Reject(h, NoArena());
    absl::StatusOr<ReadGrant> read = svc_->AcquireRead(id_, req);
    if (read.ok() && read->needs_promotion && blocking_ != nullptr) {
      ReadGrant* r = &*read;
      co_await RunOn(blocking_->pool, [this, &req, r] { return svc_->CompleteRead(id_, req, r); });
    }
    if (!read.ok()) co_return co_await Reject(h, read.status());
    const tiers::LeaseGrant* grant = &read->grant;
    const std::vector<bool>& from_nvme = read->from_nvme;

    proto::GetReply reply;
    std::string* tiers = reply.mutable_tiers();
    tiers->reserve(grant->codes.size());
    std::vector<asio::const_buffer> payload;
    uint64_t payload_len = 0;
    const std::byte* base = svc_->dram()->arena_base();
    // Codecs go out only when some block is encoded, so uncompressed namespaces pay nothing.
    bool encoded = false;
    for (size_t i = 0; i < grant->codes.size(); ++i) {
      encoded |= grant->codes[i] == absl::StatusCode::kOk && grant->slots[i].encoding.codec != 0;
    }
    for (size_t i = 0; i < grant->codes.size(); ++i) {
      const bool hit = grant->codes[i] == absl::StatusCode::kOk;
      const tiers::SlotRef slot = hit ? grant->slots[i] : tiers::SlotRef{};
      if (encoded) {
        reply.mutable_codecs()->push_back(static_cast<char>(slot.encoding.codec));
        reply.add_raw_lengths(slot.encoding.raw_length);
      }
      reply.add_codes(static_cast<int32_t>(grant->codes[i]));
      reply.add_lengths(slot.length);
      const proto::Tier tier = !hit                                     ? proto::TIER_NONE
                               : (i < from_nvme.size() && from_nvme[i]) ? proto::TIER_NVME
                                                                        : proto::TIER_DRAM;
      tiers->push_back(static_cast<char>(tier));
      if (inline_data) {
        if (hit) payload.emplace_back(base + slot.offset, slot.length);
        payload_len += slot.length;
      } else {
        reply.add_offsets(slot.offset);
        reply.add_generations(slot.generation);
      }
    }
    if (!inline_data) {
      reply.set_lease_id(grant->lease_id);
      co_await SendReply(h, reply);
      co_return true;
    }
    if (payload_len > svc_->limits().max_payload_bytes) {
      if (grant->lease_id != 0) (void)svc_->Release(id_, grant->lease_id);
      co_return co_await Reject(
          h, absl::ResourceExhaustedError(absl::StrCat(
                 "the found blocks hold ", payload_len, " bytes, more than max_payload_bytes=",
                 svc_->limits().max_payload_bytes, "; get fewer keys per request")));
    }
    // Inline: the slots stay pinned while their bytes go out, then the lease ends here.
    co_await SendReply(h, reply, std::move(payload), payload_len);
    if (grant->lease_id != 0) (void)svc_->Release(id_, grant->lease_id);
    co_return true;
  }

  static absl::Status NoArena() {
    return absl::FailedPreconditionError(
        "DATA_SHARED_ARENA needs the arena: connect over the Unix socket with "
        "want_shared_arena in hello, or use DATA_INLINE");
  }

  // A body that failed to parse or check: counted as a bad frame, then rejected.
  awaitable<bool> RejectMalformed(const FrameHeader& h, const absl::Status& status) {
    svc_->counters().bad_frames.fetch_add(1, std::memory_order_relaxed);
    co_return co_await Reject(h, status);
  }

  // Sends an error reply for a well-framed request. Its payload (bounded by the header check
  // against max_payload_bytes) is read and discarded first, so the stream stays in sync and the
  // connection stays open (protocol.md 6.2).
  awaitable<bool> Reject(const FrameHeader& h, const absl::Status& status) {
    svc_->counters().error_replies.fetch_add(1, std::memory_order_relaxed);
    if (h.payload_len > 0) co_await Drain(h.payload_len);
    co_await SendError(h, status);
    co_return true;
  }

  awaitable<void> Drain(uint64_t n) {
    std::array<char, 65536> scratch;
    while (n > 0) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, scratch.size()));
      co_await asio::async_read(socket_, asio::buffer(scratch.data(), chunk), use_awaitable);
      n -= chunk;
    }
  }

  void EncodeReplyHeader(const FrameHeader& req, uint32_t flags, size_t body_len,
                         uint64_t payload_len) {
    FrameHeader out;
    out.opcode = req.opcode;
    out.request_id = req.request_id;
    out.flags = proto::kFlagReply | flags;
    out.body_len = static_cast<uint32_t>(body_len);
    out.payload_len = payload_len;
    proto::EncodeFrameHeader(out, header_out_);
  }

  awaitable<void> SendReply(const FrameHeader& req, const google::protobuf::MessageLite& body,
                            std::vector<asio::const_buffer> payload = {},
                            uint64_t payload_len = 0) {
    out_body_.clear();
    body.AppendToString(&out_body_);
    EncodeReplyHeader(req, 0, out_body_.size(), payload_len);
    payload.insert(payload.begin(), {asio::buffer(header_out_), asio::buffer(out_body_)});
    co_await asio::async_write(socket_, payload, use_awaitable);
  }

  awaitable<void> SendError(const FrameHeader& req, const absl::Status& status) {
    proto::ErrorReply e = proto::ErrorReplyFromStatus(status);
    out_body_.clear();
    e.AppendToString(&out_body_);
    EncodeReplyHeader(req, proto::kFlagError, out_body_.size(), 0);
    std::array<asio::const_buffer, 2> bufs{asio::buffer(header_out_), asio::buffer(out_body_)};
    co_await asio::async_write(socket_, bufs, use_awaitable);
  }

  // The arena fd travels as SCM_RIGHTS ancillary data on the first byte of the reply frame.
  awaitable<void> SendReplyWithFd(const FrameHeader& req, const google::protobuf::MessageLite& body,
                                  int fd) {
    out_body_.clear();
    body.AppendToString(&out_body_);
    EncodeReplyHeader(req, proto::kFlagFdAttached, out_body_.size(), 0);
    std::string frame(reinterpret_cast<const char*>(header_out_.data()), header_out_.size());
    frame += out_body_;
    size_t sent = 0;
    bool fd_sent = false;
    while (sent < frame.size()) {
      iovec iov{frame.data() + sent, frame.size() - sent};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
      if (!fd_sent) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
      }
      const ssize_t n = ::sendmsg(socket_.native_handle(), &msg, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          co_await socket_.async_wait(Socket::wait_write, use_awaitable);
          continue;
        }
        throw boost::system::system_error(errno, boost::system::system_category(), "sendmsg");
      }
      fd_sent = true;
      sent += static_cast<size_t>(n);
    }
  }

  Socket socket_;
  Service* const svc_;
  NvmeExecutors* const blocking_;
  const uint64_t id_;
  MailboxSet* const mailboxes_;  // null for TCP
  std::unique_ptr<RequestMailbox> mailbox_;
  bool hello_done_ = false;
  bool arena_attached_ = false;
  std::array<std::byte, proto::kFrameHeaderSize> header_in_;
  std::array<std::byte, proto::kFrameHeaderSize> header_out_;
  std::string body_;
  std::string out_body_;
};

}  // namespace

awaitable<void> ServeConnection(asio::local::stream_protocol::socket socket, Service* service,
                                NvmeExecutors* blocking, uint64_t conn_id, MailboxSet* mailboxes) {
  Connection<asio::local::stream_protocol::socket> c(std::move(socket), service, blocking, conn_id,
                                                     mailboxes);
  co_await c.Run();
}

awaitable<void> ServeConnection(asio::ip::tcp::socket socket, Service* service,
                                NvmeExecutors* blocking, uint64_t conn_id) {
  boost::system::error_code ignored;
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  socket.set_option(asio::socket_base::keep_alive(true), ignored);
  Connection<asio::ip::tcp::socket> c(std::move(socket), service, blocking, conn_id, nullptr);
  co_await c.Run();
}

}  // namespace kvtier::server
