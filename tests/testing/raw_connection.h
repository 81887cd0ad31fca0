// RawConnection: a deliberately dumb socket for tests that must send what no real client
// would (garbage, truncated frames, lies about lengths). Blocking, with a receive timeout so a
// daemon that hangs fails the test instead of hanging it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kvtier.pb.h"
#include "kvtier/proto/frame.h"

namespace kvtier::testing {

struct RawFrame {
  proto::FrameHeader header;
  std::string body;
  std::string payload;
};

class RawConnection {
 public:
  static absl::StatusOr<std::unique_ptr<RawConnection>> ConnectUnix(const std::string& path);
  static absl::StatusOr<std::unique_ptr<RawConnection>> ConnectTcp(uint16_t port);
  ~RawConnection();

  absl::Status SendBytes(std::string_view bytes);
  // Encodes a frame; lengths come from the header as given (so tests can lie), the body and
  // payload bytes are sent as they are.
  absl::Status SendFrame(const proto::FrameHeader& h, std::string_view body,
                         std::string_view payload = {});
  // Sends a well-formed request frame for `msg` with the given payload.
  absl::Status SendRequest(proto::Opcode op, const google::protobuf::MessageLite& msg,
                           std::string_view payload = {}, uint64_t request_id = 7);
  // Reads one frame (header, body, payload) within `timeout_ms`. With `received_fd`, an fd
  // attached to the frame (SCM_RIGHTS) is stored there (-1 when none came; the caller owns it).
  absl::StatusOr<RawFrame> ReadFrame(int timeout_ms = 5000, int* received_fd = nullptr);
  // True when the peer closed the connection (read returns 0) within `timeout_ms`.
  bool ClosedByPeer(int timeout_ms = 5000);

  // hello + nothing else; returns the reply.
  absl::StatusOr<proto::HelloReply> Hello(const std::string& token = "");

 private:
  explicit RawConnection(int fd) : fd_(fd) {}
  absl::Status ReadExact(char* out, size_t n, int timeout_ms, int* received_fd = nullptr);
  int fd_;
};

}  // namespace kvtier::testing
