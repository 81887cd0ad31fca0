// Socket: an owned, non-blocking stream socket with deadline-bounded "blocking" I/O.
//
// The client wants blocking semantics (one request at a time, the caller waits) but must never
// hang forever on a dead daemon, so the fd is O_NONBLOCK and every read or write polls with
// the remaining idle timeout: a transfer fails with DeadlineExceeded only when no byte moves
// for `idle_timeout`. Every failure is Unavailable or DeadlineExceeded with a message naming
// the peer; after one, the caller must treat the byte stream as lost. Not thread-safe.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier/client/endpoint.h"

namespace kvtier::client {

class Socket {
 public:
  Socket() = default;
  Socket(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
  ~Socket();
  Socket(Socket&& other) noexcept;
  Socket& operator=(Socket&& other) noexcept;

  // Connects to `endpoint`, waiting at most `timeout`. TCP sockets get TCP_NODELAY: requests
  // are single small frames and Nagle would add a round trip of latency to each.
  // Unavailable with a message ending in a hint when nothing listens there.
  static absl::StatusOr<Socket> Connect(const Endpoint& endpoint,
                                        std::chrono::milliseconds timeout);

  // Wraps an already connected fd (tests use socketpair()). Takes ownership; sets O_NONBLOCK.
  static absl::StatusOr<Socket> Adopt(int fd, std::string peer);

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  const std::string& peer() const { return peer_; }

  // Writes every byte the iovecs describe. `iov` is consumed (modified) in the process.
  absl::Status WriteAll(std::span<iovec> iov, std::chrono::milliseconds idle_timeout);

  // Reads exactly the bytes the iovecs describe. `iov` is consumed. When `received_fd` is not
  // null, the first read also accepts one SCM_RIGHTS descriptor (stored there, close-on-exec,
  // -1 when none came); descriptors arriving otherwise are closed.
  absl::Status ReadAll(std::span<iovec> iov, std::chrono::milliseconds idle_timeout,
                       int* received_fd = nullptr);

  // Convenience forms for one contiguous buffer.
  absl::Status WriteAll(std::span<const std::byte> bytes, std::chrono::milliseconds idle_timeout);
  absl::Status ReadAll(std::span<std::byte> bytes, std::chrono::milliseconds idle_timeout,
                       int* received_fd = nullptr);

  // How long a read that finds no data keeps retrying before it sleeps in poll(). Spinning a
  // few tens of microseconds saves the wake-up of a sleeping thread on every reply, which is
  // most of a small request's round trip; 0 sleeps at once. Default 0.
  void set_busy_poll(std::chrono::microseconds spin) { busy_poll_ = spin; }

 private:
  // Waits until the fd is ready for `events` or the timeout passes.
  absl::Status WaitFor(short events, std::chrono::milliseconds timeout, const char* doing);

  int fd_ = -1;
  std::string peer_;  // URI, for messages
  std::chrono::microseconds busy_poll_{0};
};

// Advances an iovec array past `n` consumed bytes; returns the first unfinished entry.
std::span<iovec> ConsumeIovec(std::span<iovec> iov, size_t n);

}  // namespace kvtier::client
