#include "metrics_listener.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/server/config.h"
#include "prometheus_text.h"
#include "service.h"
#include "spdlog/spdlog.h"

namespace kvtier::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

constexpr std::chrono::seconds kIdleTimeout(60);
constexpr size_t kMaxConnections = 64;
constexpr uint32_t kHeaderLimit = 8 << 10;
constexpr uint64_t kBodyLimit = 4 << 10;

}  // namespace

class MetricsListener::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& ctx, RenderPage render, ServerCounters* counters)
      : acceptor_(ctx), render_(std::move(render)), counters_(counters) {}

  absl::Status Bind(std::string_view host_port) {
    absl::StatusOr<HostPort> hp = ParseHostPort(host_port);
    if (!hp.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("metrics_listen: ", hp.status().message()));
    }
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(hp->host, ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat("metrics_listen host '", hp->host,
                                                     "' is not an IP address: ", ec.message()));
    }
    const tcp::endpoint endpoint(address, hp->port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("cannot listen for /metrics on ",
                                                 AbslView(host_port), ": ", ec.message(),
                                                 "; choose another --metrics-listen"));
    }
    return absl::OkStatus();
  }

  void Start() {
    asio::co_spawn(acceptor_.get_executor(), AcceptLoop(shared_from_this()), asio::detached);
  }

  void Close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

  uint16_t port() const {
    boost::system::error_code ec;
    const tcp::endpoint e = acceptor_.local_endpoint(ec);
    return ec ? 0 : e.port();
  }

 private:
  // `self` keeps the listener alive for as long as a coroutine of it is.
  static awaitable<void> AcceptLoop(std::shared_ptr<Impl> self) {
    while (self->acceptor_.is_open()) {
      boost::system::error_code ec;
      tcp::socket socket =
          co_await self->acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (!self->acceptor_.is_open()) break;
        spdlog::warn("metrics listener: accept failed: {}", ec.message());
        continue;
      }
      if (self->sessions_ >= kMaxConnections) {
        spdlog::warn("metrics listener: {} connections are open; closing a new one",
                     kMaxConnections);
        continue;  // closes as it goes out of scope
      }
      ++self->sessions_;
      asio::co_spawn(self->acceptor_.get_executor(),
                     Session(self, beast::tcp_stream(std::move(socket))), asio::detached);
    }
  }

  static awaitable<void> Session(std::shared_ptr<Impl> self, beast::tcp_stream stream) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(kBodyLimit);
      stream.expires_after(kIdleTimeout);
      boost::system::error_code ec;
      co_await http::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
      // The client went away, idle or half-way through a request: nothing to answer.
      if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
          ec == beast::error::timeout || ec == asio::error::eof ||
          ec == asio::error::connection_reset) {
        break;
      }
      if (ec) {
        // Not HTTP, or over the limits: say so and hang up; the stream cannot be trusted.
        self->counters_->metrics_bad_requests.fetch_add(1, std::memory_order_relaxed);
        http::response<http::string_body> bad(http::status::bad_request, 11);
        bad.set(http::field::content_type, "text/plain; charset=utf-8");
        bad.body() = absl::StrCat("bad request: ", ec.message(),
                                  "; this port serves GET /metrics and GET /healthz\n");
        bad.keep_alive(false);
        bad.prepare_payload();
        co_await http::async_write(stream, bad, asio::redirect_error(use_awaitable, ec));
        break;
      }
      http::response<http::string_body> res = self->Respond(parser.get());
      const bool keep_alive = res.keep_alive();
      co_await http::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
      if (ec || !keep_alive) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    --self->sessions_;
  }

  http::response<http::string_body> Respond(const http::request<http::string_body>& req) {
    http::response<http::string_body> res(http::status::ok, req.version());
    res.set(http::field::server, "kvtierd");
    res.keep_alive(req.keep_alive());
    const std::string_view target(req.target().data(), req.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET");
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "only GET is served here\n";
    } else if (path == "/metrics") {
      res.set(http::field::content_type,
              std::string(kPrometheusContentType.data(), kPrometheusContentType.size()));
      // Counted before rendering, so that the page counts itself.
      counters_->metrics_scrapes.fetch_add(1, std::memory_order_relaxed);
      res.body() = render_();
    } else if (path == "/healthz") {
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "ok\n";
    } else {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "not found; this port serves GET /metrics and GET /healthz\n";
    }
    if (res.result_int() >= 400) {
      counters_->metrics_bad_requests.fetch_add(1, std::memory_order_relaxed);
    }
    res.prepare_payload();
    return res;
  }

  tcp::acceptor acceptor_;
  const RenderPage render_;
  ServerCounters* const counters_;
  size_t sessions_ = 0;  // on the context's one thread
};

absl::StatusOr<std::unique_ptr<MetricsListener>> MetricsListener::Open(asio::io_context& ctx,
                                                                       std::string_view host_port,
                                                                       RenderPage render,
                                                                       ServerCounters* counters) {
  auto impl = std::make_shared<Impl>(ctx, std::move(render), counters);
  if (absl::Status s = impl->Bind(host_port); !s.ok()) return s;
  return std::unique_ptr<MetricsListener>(new MetricsListener(std::move(impl)));
}

MetricsListener::MetricsListener(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsListener::~MetricsListener() = default;
void MetricsListener::Start() { impl_->Start(); }
void MetricsListener::Close() { impl_->Close(); }
uint16_t MetricsListener::port() const { return impl_->port(); }

}  // namespace kvtier::server
