// Server: the kvtierd process's core. Owns the DRAM tier, the request service, the listeners
// (Unix socket and optional TCP) and the event-loop threads.
//
// Networking uses Boost.Asio with one io_context per thread: a connection lives on one thread
// for its whole life, so a request is read, served and answered without crossing threads
// (that keeps the lookup round trip short). Accepts are spread round-robin.
//
// Lifecycle: Create() validates the config and claims every resource (memory, sockets), so
// that anything that can fail, fails before serving. Run() serves until Shutdown() or
// SIGINT/SIGTERM, then closes listeners and connections and removes the socket file.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kvtier/server/config.h"

namespace kvtier::server {

class Server {
 public:
  // kInvalidArgument for a bad config; kAlreadyExists when another kvtierd serves the socket;
  // kUnavailable / kResourceExhausted when a listener or the arena cannot be set up.
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerConfig& config);
  ~Server();

  // Blocks until shutdown. Returns OK after a clean shutdown.
  absl::Status Run();
  // Asks Run() to return. Thread-safe and async-signal-unsafe (use the built-in signal set).
  void Shutdown();

  // The TCP port actually bound (useful with port 0), or 0 when TCP is off.
  uint16_t tcp_port() const;

 private:
  class Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier::server
