#include "socket.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvtier::client {
namespace {

constexpr size_t kMaxIovPerCall = 1024;  // IOV_MAX on Linux

std::string ErrnoText(int err) { return std::strerror(err); }

absl::Status SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return absl::UnavailableError(absl::StrCat("fcntl(O_NONBLOCK): ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

std::string Hint(const Endpoint& e) {
  if (e.kind == Endpoint::Kind::kUnix) {
    return " — is kvtierd running? start it with `make run`, or pass the socket it listens on";
  }
  return absl::StrCat(" — is kvtierd running with --tcp-listen ", e.host, ":", e.port, "?");
}

absl::Status ConnectError(const Endpoint& e, int err) {
  return absl::UnavailableError(
      absl::StrCat("cannot connect to ", e.ToUri(), ": ", ErrnoText(err), Hint(e)));
}

int64_t Millis(std::chrono::milliseconds d) { return std::max<int64_t>(d.count(), 0); }

// Finishes a non-blocking connect() that returned EINPROGRESS.
absl::Status AwaitConnect(int fd, const Endpoint& e, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLOUT, 0};
  int rc;
  do {
    rc = poll(&p, 1, static_cast<int>(Millis(timeout)));
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", e.ToUri(), ": no answer in ",
                                               timeout.count(), " ms", Hint(e)));
  }
  if (rc < 0) return ConnectError(e, errno);
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return ConnectError(e, errno);
  if (err != 0) return ConnectError(e, err);
  return absl::OkStatus();
}

absl::StatusOr<Socket> ConnectUnix(const Endpoint& e, std::chrono::milliseconds timeout) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ConnectError(e, errno);
  Socket sock(fd, e.ToUri());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, e.path.data(), e.path.size());  // length checked by ParseEndpoint
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) return ConnectError(e, errno);
    if (auto s = AwaitConnect(fd, e, timeout); !s.ok()) return s;
  }
  return sock;
}

absl::StatusOr<Socket> ConnectTcp(const Endpoint& e, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(e.port);
  if (int rc = getaddrinfo(e.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", e.ToUri(), ": cannot resolve host: ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, &freeaddrinfo);
  absl::Status last = ConnectError(e, EHOSTUNREACH);
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      last = ConnectError(e, errno);
      continue;
    }
    Socket sock(fd, e.ToUri());
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
      if (errno != EINPROGRESS) {
        last = ConnectError(e, errno);
        continue;
      }
      if (auto s = AwaitConnect(fd, e, timeout); !s.ok()) {
        last = s;
        continue;
      }
    }
    return sock;
  }
  return last;
}

}  // namespace

std::span<iovec> ConsumeIovec(std::span<iovec> iov, size_t n) {
  size_t i = 0;
  while (i < iov.size() && n >= iov[i].iov_len) {
    n -= iov[i].iov_len;
    ++i;
  }
  iov = iov.subspan(i);
  if (!iov.empty() && n > 0) {
    iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + n;
    iov[0].iov_len -= n;
  }
  // Zero-length entries left at the front would make a read return 0, which reads as EOF.
  while (!iov.empty() && iov[0].iov_len == 0) iov = iov.subspan(1);
  return iov;
}

Socket::~Socket() {
  if (fd_ >= 0) close(fd_);
}

Socket::Socket(Socket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), peer_(std::move(other.peer_)) {}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    peer_ = std::move(other.peer_);
  }
  return *this;
}

absl::StatusOr<Socket> Socket::Connect(const Endpoint& endpoint,
                                       std::chrono::milliseconds timeout) {
  if (endpoint.kind == Endpoint::Kind::kUnix) return ConnectUnix(endpoint, timeout);
  return ConnectTcp(endpoint, timeout);
}

absl::StatusOr<Socket> Socket::Adopt(int fd, std::string peer) {
  Socket sock(fd, std::move(peer));
  if (auto s = SetNonBlocking(fd); !s.ok()) return s;
  return sock;
}

absl::Status Socket::WaitFor(short events, std::chrono::milliseconds timeout, const char* doing) {
  pollfd p{fd_, events, 0};
  int rc;
  do {
    rc = poll(&p, 1, static_cast<int>(Millis(timeout)));
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) {
    return absl::DeadlineExceededError(
        absl::StrCat("timed out ", doing, " ", peer_, ": no progress in ", timeout.count(), " ms"));
  }
  if (rc < 0) {
    return absl::UnavailableError(absl::StrCat("poll on ", peer_, ": ", ErrnoText(errno)));
  }
  // POLLHUP/POLLERR: let the next read/write report the precise error.
  return absl::OkStatus();
}

absl::Status Socket::WriteAll(std::span<iovec> iov, std::chrono::milliseconds idle_timeout) {
  iov = ConsumeIovec(iov, 0);
  while (!iov.empty()) {
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = std::min(iov.size(), kMaxIovPerCall);
    const ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (auto s = WaitFor(POLLOUT, idle_timeout, "writing to"); !s.ok()) return s;
        continue;
      }
      return absl::UnavailableError(
          absl::StrCat("lost connection to ", peer_, " while writing: ", ErrnoText(errno)));
    }
    iov = ConsumeIovec(iov, static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status Socket::ReadAll(std::span<iovec> iov, std::chrono::milliseconds idle_timeout,
                             int* received_fd) {
  if (received_fd != nullptr) *received_fd = -1;
  bool want_fd = received_fd != nullptr;
  iov = ConsumeIovec(iov, 0);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  std::chrono::steady_clock::time_point spin_until{};  // set at the first empty read
  while (!iov.empty()) {
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = std::min(iov.size(), kMaxIovPerCall);
    // Always offer room for a descriptor: one we did not ask for must still be closed rather
    // than silently leaked by the kernel into this process.
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (busy_poll_.count() > 0) {
          if (spin_until == std::chrono::steady_clock::time_point{}) {
            spin_until = std::chrono::steady_clock::now() + busy_poll_;
          }
          if (std::chrono::steady_clock::now() < spin_until) continue;
        }
        if (auto s = WaitFor(POLLIN, idle_timeout, "waiting for"); !s.ok()) return s;
        continue;
      }
      return absl::UnavailableError(
          absl::StrCat("lost connection to ", peer_, " while reading: ", ErrnoText(errno)));
    }
    if (n == 0) {
      return absl::UnavailableError(absl::StrCat(
          peer_, " closed the connection (kvtierd stopped, or it rejected this client)"));
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (want_fd && *received_fd < 0) {
          *received_fd = fd;
        } else {
          close(fd);
        }
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
      // A truncated control message means descriptors were dropped by the kernel; say so
      // rather than run without the arena the daemon meant to hand over.
      return absl::UnavailableError(
          absl::StrCat("ancillary data from ", peer_, " was truncated (unexpected descriptors)"));
    }
    want_fd = false;
    iov = ConsumeIovec(iov, static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status Socket::WriteAll(std::span<const std::byte> bytes,
                              std::chrono::milliseconds idle_timeout) {
  iovec v{const_cast<std::byte*>(bytes.data()), bytes.size()};
  return WriteAll(std::span<iovec>(&v, 1), idle_timeout);
}

absl::Status Socket::ReadAll(std::span<std::byte> bytes, std::chrono::milliseconds idle_timeout,
                             int* received_fd) {
  iovec v{bytes.data(), bytes.size()};
  return ReadAll(std::span<iovec>(&v, 1), idle_timeout, received_fd);
}

}  // namespace kvtier::client
