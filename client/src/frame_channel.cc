#include "frame_channel.h"

#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/proto/messages.h"

namespace kvtier::client {

absl::Status FrameChannel::CheckUsable() const {
  if (broken_.ok()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "connection to ", peer_, " is unusable after an earlier error: ", broken_.message()));
}

absl::Status FrameChannel::Fail(absl::Status s) {
  if (broken_.ok()) broken_ = s;
  socket_ = Socket();  // close: nothing more can be read in step
  return s;
}

absl::Status FrameChannel::Break(std::string_view cause) {
  return Fail(
      absl::InternalError(absl::StrCat("protocol error from ", peer_, ": ", AbslView(cause))));
}

absl::Status FrameChannel::RingDoorbell() {
  return Send(proto::Opcode::kMailboxDoorbell, proto::MailboxDoorbell());
}

bool FrameChannel::PeerClosedOrUnexpected() const {
  pollfd p{.fd = socket_.fd(), .events = POLLIN | POLLRDHUP, .revents = 0};
  return ::poll(&p, 1, 0) > 0 && p.revents != 0;
}

absl::Status FrameChannel::Send(proto::Opcode op, const google::protobuf::MessageLite& body,
                                std::span<const std::span<const std::byte>> payload) {
  if (auto s = CheckUsable(); !s.ok()) return s;
  auto encoded = proto::SerializeBody(body, limits_);
  if (!encoded.ok()) return encoded.status();  // caller's batch too big; stream untouched
  uint64_t payload_len = 0;
  for (const auto& p : payload) payload_len += p.size();
  if (payload_len > limits_.max_payload_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("request payload of ", payload_len,
                                                   " bytes exceeds the daemon's limit of ",
                                                   limits_.max_payload_bytes, " bytes per frame"));
  }
  proto::FrameHeader h;
  h.opcode = op;
  h.flags = 0;
  h.body_len = static_cast<uint32_t>(encoded->size());
  h.request_id = next_request_id_++;
  h.payload_len = payload_len;
  std::array<std::byte, proto::kFrameHeaderSize> header;
  proto::EncodeFrameHeader(h, header);

  std::vector<iovec> iov;
  iov.reserve(2 + payload.size());
  iov.push_back({header.data(), header.size()});
  iov.push_back({encoded->data(), encoded->size()});
  for (const auto& p : payload) {
    if (!p.empty()) iov.push_back({const_cast<std::byte*>(p.data()), p.size()});
  }
  if (auto s = socket_.WriteAll(std::span<iovec>(iov), io_timeout_); !s.ok()) return Fail(s);
  pending_request_id_ = h.request_id;
  pending_op_ = op;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FrameChannel::ReceiveHead(google::protobuf::MessageLite* body,
                                                   int* received_fd) {
  if (auto s = CheckUsable(); !s.ok()) return s;
  std::array<std::byte, proto::kFrameHeaderSize> raw;
  int fd = -1;
  if (auto s = socket_.ReadAll(std::span<std::byte>(raw), io_timeout_, &fd); !s.ok()) {
    return Fail(s);
  }
  // Own the descriptor until it is handed to the caller, so no early return leaks it.
  struct FdGuard {
    int fd;
    ~FdGuard() {
      if (fd >= 0) close(fd);
    }
  } guard{fd};

  auto header = proto::DecodeFrameHeader(raw, limits_);
  if (!header.ok()) return Break(absl::StrCat("bad reply header: ", header.status().message()));
  const std::string_view op_name = proto::OpcodeName(pending_op_);
  if (header->request_id == 0 && (header->flags & proto::kFlagError)) {
    // The daemon could not parse a frame of ours and is closing the connection (protocol.md
    // 6.1): report its reason, which beats "connection closed".
    std::string body_bytes(header->body_len, '\0');
    proto::ErrorReply error;
    if (socket_.ReadAll(std::as_writable_bytes(std::span(body_bytes)), io_timeout_).ok() &&
        proto::ParseBody(body_bytes, &error).ok()) {
      const absl::Status remote = proto::StatusFromErrorReply(error);
      return Fail(absl::Status(
          remote.code(), absl::StrCat("kvtierd at ", peer_, " rejected a frame and closed the ",
                                      "connection: ", remote.message())));
    }
    return Break("unparseable error reply to a rejected frame");
  }
  if (!(header->flags & proto::kFlagReply) || header->request_id != pending_request_id_ ||
      header->opcode != pending_op_) {
    return Break(absl::StrCat(
        "reply to request ", header->request_id, " (", AbslView(proto::OpcodeName(header->opcode)),
        ") while waiting for request ", pending_request_id_, " (", AbslView(op_name), ")"));
  }
  std::string body_bytes(header->body_len, '\0');
  if (auto s = socket_.ReadAll(std::as_writable_bytes(std::span(body_bytes)), io_timeout_);
      !s.ok()) {
    return Fail(s);
  }
  if (header->flags & proto::kFlagError) {
    proto::ErrorReply error;
    if (auto s = proto::ParseBody(body_bytes, &error); !s.ok()) {
      return Break(
          absl::StrCat("unparseable error reply to ", AbslView(op_name), ": ", s.message()));
    }
    if (auto s = DiscardPayload(header->payload_len); !s.ok()) return s;
    const absl::Status remote = proto::StatusFromErrorReply(error);
    return absl::Status(remote.code(), absl::StrCat("kvtierd at ", peer_, " rejected ",
                                                    AbslView(op_name), ": ", remote.message()));
  }
  if (auto s = proto::ParseBody(body_bytes, body); !s.ok()) {
    return Break(absl::StrCat("unparseable ", AbslView(op_name), " reply: ", s.message()));
  }
  if (received_fd != nullptr) *received_fd = std::exchange(guard.fd, -1);
  return header->payload_len;
}

absl::Status FrameChannel::ReceivePayload(std::span<const std::span<std::byte>> dst) {
  if (auto s = CheckUsable(); !s.ok()) return s;
  std::vector<iovec> iov;
  iov.reserve(dst.size());
  for (const auto& d : dst) {
    if (!d.empty()) iov.push_back({d.data(), d.size()});
  }
  if (auto s = socket_.ReadAll(std::span<iovec>(iov), io_timeout_); !s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::Status FrameChannel::DiscardPayload(uint64_t n) {
  if (auto s = CheckUsable(); !s.ok()) return s;
  std::vector<std::byte> sink(std::min<uint64_t>(n, 1 << 20));
  while (n > 0) {
    const size_t chunk = std::min<uint64_t>(n, sink.size());
    if (auto s = socket_.ReadAll(std::span(sink.data(), chunk), io_timeout_); !s.ok()) {
      return Fail(s);
    }
    n -= chunk;
  }
  return absl::OkStatus();
}

absl::Status FrameChannel::Call(proto::Opcode op, const google::protobuf::MessageLite& request,
                                google::protobuf::MessageLite* reply, int* received_fd) {
  if (auto s = Send(op, request); !s.ok()) return s;
  auto payload = ReceiveHead(reply, received_fd);
  if (!payload.ok()) return payload.status();
  return DiscardPayload(*payload);
}

absl::Status BlockStatus(int32_t code, std::string_view what) {
  if (code == 0) return absl::OkStatus();
  if (code < 0 || code > static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::UnknownError(absl::StrCat("unknown block code ", code, ": ", AbslView(what)));
  }
  return absl::Status(static_cast<absl::StatusCode>(code), AbslView(what));
}

}  // namespace kvtier::client
