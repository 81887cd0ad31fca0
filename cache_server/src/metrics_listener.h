// MetricsListener: kvtierd's HTTP endpoint for monitoring (server.metrics_listen).
//
//   GET /metrics   every figure of `kvtierctl stats`, in the Prometheus text format
//                  (prometheus_text.h), rendered for each request
//   GET /healthz   "ok": the daemon's network loop answers (a liveness probe)
//
// Another path is a 404, another method a 405 (with Allow: GET), both counted in
// ServerCounters::metrics_bad_requests; so is a request that is not HTTP/1.x or whose header
// passes 8 KiB, which gets a 400 and the connection closed. Connections are kept alive as
// HTTP/1.1 asks (Prometheus reuses one per target); one idle for 60 s is closed, and beyond 64
// at once new ones are closed at accept, so that a misbehaving scraper cannot pile up memory.
//
// Boost.Beast on the daemon's own Boost.Asio loop: it runs on one of the network threads, and a
// page costs what one `kvtierctl stats` does (a snapshot of the tiers under their locks).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace kvtier::server {

struct ServerCounters;

class MetricsListener {
 public:
  using RenderPage = std::function<std::string()>;

  // Binds `host_port` ("HOST:PORT", ParseHostPort's forms; port 0 picks a free one) on `ctx`.
  // `render` makes the /metrics page; `counters` (which must outlive the listener) count
  // scrapes and refused requests. Errors name the address and say what to change.
  static absl::StatusOr<std::unique_ptr<MetricsListener>> Open(boost::asio::io_context& ctx,
                                                               std::string_view host_port,
                                                               RenderPage render,
                                                               ServerCounters* counters);
  ~MetricsListener();

  // Starts accepting on the context given to Open. Call once.
  void Start();
  // Stops accepting; open connections end with the context. Call on the context's thread.
  void Close();
  // The port bound (the one picked, for port 0).
  uint16_t port() const;

 private:
  class Impl;
  explicit MetricsListener(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace kvtier::server
