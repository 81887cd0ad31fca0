// FrameChannel: request/reply framing over one Socket (frame.h: header, protobuf body, raw
// payload).
//
// A round trip is Send() followed by ReceiveHead() and then exactly one of ReceivePayload() or
// DiscardPayload() for the reply's payload bytes (ReceiveHead drains the payload itself when
// the caller passes no use for it, see below). Payload bytes go straight between the caller's
// buffers and the socket with scatter/gather I/O, never through an intermediate copy.
//
// Failure model: a transport error or a protocol violation by the peer (wrong request id,
// opcode, unparseable body) leaves the byte stream at an unknown position, so the channel
// marks itself broken, closes the socket (the daemon then ends this connection's leases at
// once instead of at their timeout) and every later call returns Unavailable naming that first
// error. An error reply (kFlagError) to the request is a complete frame: it is returned as the
// daemon's status and the channel stays usable. An error reply with request id 0 is the
// daemon's answer to a frame it could not parse (protocol.md 6.1); it closes the connection,
// so it breaks the channel, with the daemon's status. Not thread-safe: one request in flight, one
// caller at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message_lite.h"
#include "kvtier/proto/frame.h"
#include "socket.h"

namespace kvtier::client {

class FrameChannel {
 public:
  FrameChannel(Socket socket, std::chrono::milliseconds io_timeout)
      : socket_(std::move(socket)), peer_(socket_.peer()), io_timeout_(io_timeout) {}

  // Limits used to vet reply headers and size requests; the daemon announces its own at Hello.
  void set_limits(const proto::Limits& limits) { limits_ = limits; }
  void set_io_timeout(std::chrono::milliseconds t) { io_timeout_ = t; }
  void set_busy_poll(std::chrono::microseconds spin) { socket_.set_busy_poll(spin); }
  const proto::Limits& limits() const { return limits_; }
  const std::string& peer() const { return peer_; }
  bool broken() const { return !broken_.ok(); }

  // Sends one request frame: header, `body`, then `payload` spans back to back.
  absl::Status Send(proto::Opcode op, const google::protobuf::MessageLite& body,
                    std::span<const std::span<const std::byte>> payload = {});

  // Reads the reply to the last Send(): checks the header (reply flag, request id, opcode)
  // and parses the body into `body`. Returns the reply's payload length, which the caller then
  // consumes with ReceivePayload/DiscardPayload. If `received_fd` is not null it receives a
  // descriptor attached to the reply (-1 if none; the caller owns it). An error reply drains
  // its payload and returns the daemon's status, prefixed with the operation's name.
  absl::StatusOr<uint64_t> ReceiveHead(google::protobuf::MessageLite* body,
                                       int* received_fd = nullptr);

  // Reads the reply payload into `dst` (sizes must add up to what ReceiveHead returned).
  absl::Status ReceivePayload(std::span<const std::span<std::byte>> dst);
  // Reads and drops `n` payload bytes.
  absl::Status DiscardPayload(uint64_t n);

  // Send + ReceiveHead + drain any payload: for requests whose reply carries no payload.
  absl::Status Call(proto::Opcode op, const google::protobuf::MessageLite& request,
                    google::protobuf::MessageLite* reply, int* received_fd = nullptr);

  // Sends a mailbox_doorbell frame (no reply comes; protocol.md 7.4).
  absl::Status RingDoorbell();
  // True when the daemon has closed its end, or sent something no request asked for (it only
  // does that when it is closing the connection). Does not block.
  bool PeerClosedOrUnexpected() const;

  // Marks the channel broken with `cause` (used by callers that find a protocol violation
  // in a parsed reply, e.g. an arena offset out of range). Returns the Internal status.
  absl::Status Break(std::string_view cause);

 private:
  // Records a transport error as the channel's fate and returns it.
  absl::Status Fail(absl::Status s);
  absl::Status CheckUsable() const;

  Socket socket_;
  const std::string peer_;
  std::chrono::milliseconds io_timeout_;
  proto::Limits limits_;
  absl::Status broken_;
  uint64_t next_request_id_ = 1;
  uint64_t pending_request_id_ = 0;
  proto::Opcode pending_op_ = proto::Opcode::kHealth;
};

// Converts a per-block wire code (an absl::StatusCode value) to a Status. Codes outside the
// known range become kUnknown. OK carries no message; others get `what` as their message.
absl::Status BlockStatus(int32_t code, std::string_view what);

}  // namespace kvtier::client
