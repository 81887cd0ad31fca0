#include "raw_connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kvtier/proto/messages.h"

namespace kvtier::testing {

absl::StatusOr<std::unique_ptr<RawConnection>> RawConnection::ConnectUnix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<RawConnection>(new RawConnection(fd));
}

absl::StatusOr<std::unique_ptr<RawConnection>> RawConnection::ConnectTcp(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect tcp ", port, ": ", std::strerror(errno)));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return std::unique_ptr<RawConnection>(new RawConnection(fd));
}

RawConnection::~RawConnection() { ::close(fd_); }

absl::Status RawConnection::SendBytes(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status RawConnection::SendFrame(const proto::FrameHeader& h, std::string_view body,
                                      std::string_view payload) {
  std::array<std::byte, proto::kFrameHeaderSize> hdr;
  proto::EncodeFrameHeader(h, hdr);
  std::string out(reinterpret_cast<const char*>(hdr.data()), hdr.size());
  out.append(body);
  out.append(payload);
  return SendBytes(out);
}

absl::Status RawConnection::SendRequest(proto::Opcode op, const google::protobuf::MessageLite& msg,
                                        std::string_view payload, uint64_t request_id) {
  const std::string body = msg.SerializeAsString();
  proto::FrameHeader h;
  h.opcode = op;
  h.request_id = request_id;
  h.body_len = static_cast<uint32_t>(body.size());
  h.payload_len = payload.size();
  return SendFrame(h, body, payload);
}

absl::Status RawConnection::ReadExact(char* out, size_t n, int timeout_ms, int* received_fd) {
  while (n > 0) {
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, timeout_ms);
    if (r == 0) return absl::DeadlineExceededError("no reply from kvtierd in time");
    if (r < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("poll: ", std::strerror(errno)));
    }
    iovec iov{out, n};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t got = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
    if (got > 0) {
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int fd;
        std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
        if (received_fd != nullptr && *received_fd < 0) {
          *received_fd = fd;
        } else {
          ::close(fd);
        }
      }
    }
    if (got == 0) return absl::UnavailableError("connection closed by kvtierd");
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
    }
    out += got;
    n -= static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

absl::StatusOr<RawFrame> RawConnection::ReadFrame(int timeout_ms, int* received_fd) {
  if (received_fd != nullptr) *received_fd = -1;
  std::array<std::byte, proto::kFrameHeaderSize> hdr;
  if (auto s = ReadExact(reinterpret_cast<char*>(hdr.data()), hdr.size(), timeout_ms, received_fd);
      !s.ok()) {
    return s;
  }
  proto::Limits generous;
  generous.max_body_bytes = 64u << 20;
  generous.max_payload_bytes = 4ull << 30;
  auto h = proto::DecodeFrameHeader(hdr, generous);
  if (!h.ok()) return h.status();
  RawFrame f;
  f.header = *h;
  f.body.resize(h->body_len);
  f.payload.resize(h->payload_len);
  if (auto s = ReadExact(f.body.data(), f.body.size(), timeout_ms); !s.ok()) return s;
  if (auto s = ReadExact(f.payload.data(), f.payload.size(), timeout_ms); !s.ok()) return s;
  return f;
}

bool RawConnection::ClosedByPeer(int timeout_ms) {
  char c;
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    const ssize_t got = ::recv(fd_, &c, 1, 0);
    if (got == 0) return true;
    if (got < 0) return errno == ECONNRESET;
    // Unread bytes before the close: skip them.
  }
}

absl::StatusOr<proto::HelloReply> RawConnection::Hello(const std::string& token) {
  proto::HelloRequest req;
  req.set_protocol_version(proto::kProtocolVersion);
  req.set_auth_token(token);
  if (auto s = SendRequest(proto::Opcode::kHello, req); !s.ok()) return s;
  auto f = ReadFrame();
  if (!f.ok()) return f.status();
  if (f->header.flags & proto::kFlagError) {
    proto::ErrorReply e;
    e.ParseFromString(f->body);
    return proto::StatusFromErrorReply(e);
  }
  proto::HelloReply reply;
  if (!reply.ParseFromString(f->body)) return absl::DataLossError("bad hello reply");
  return reply;
}

}  // namespace kvtier::testing
