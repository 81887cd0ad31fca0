#include "kvtier/server/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connection.h"
#include "demotion_encoder.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "kvtier/common/units.h"
#include "kvtier/tiers/dram_tier.h"
#include "kvtier/tiers/nvme_device.h"
#include "kvtier/tiers/nvme_tier.h"
#include "kvtier/tiers/policies.h"
#include "metrics_listener.h"
#include "namespace_file.h"
#include "nvme_placement.h"
#include "prometheus_text.h"
#include "request_mailbox.h"
#include "service.h"
#include "spdlog/spdlog.h"

namespace kvtier::server {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using UnixProtocol = asio::local::stream_protocol;

absl::Status ErrnoStatus(std::string_view what, int err) {
  return absl::UnavailableError(absl::StrCat(AbslView(what), ": ", std::strerror(err)));
}

// Refuses to start over a live daemon's socket, removes a stale one, and never deletes a file
// that is not a socket.
absl::Status ClaimSocketPath(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat("cannot inspect socket path ", path), errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::AlreadyExistsError(
        absl::StrCat("socket path ", path, " exists and is not a socket; choose another --socket"));
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket(AF_UNIX)", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  if (live) {
    return absl::AlreadyExistsError(absl::StrCat(
        "another kvtierd is serving ", path, "; stop it or start this one with another --socket"));
  }
  if (::unlink(path.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("cannot remove stale socket ", path), errno);
  }
  spdlog::info("removed stale socket {}", path);
  return absl::OkStatus();
}

// Runs `ctx` until it is stopped. With `spin` > 0 the thread keeps polling (non-blocking
// epoll, and the request mailboxes of its connections) for `spin` after the last request before
// it sleeps in epoll_wait: a client that sends its next request within that window is served
// without waking a sleeping thread, and a mailbox request without any system call. Before it
// sleeps it tells the mailboxes' clients to ring the doorbell (a socket frame, which wakes it),
// then looks once more, so that a request stored meanwhile is not left waiting (see
// kvtier/proto/mailbox.h). Without spinning, mailbox clients always ring.
void RunLoop(asio::io_context& ctx, std::chrono::microseconds spin, MailboxSet& mailboxes) {
  if (spin.count() == 0) {
    ctx.run();
    return;
  }
  auto busy_until = std::chrono::steady_clock::now() + spin;
  mailboxes.SetPolling(true);
  while (!ctx.stopped()) {
    if (ctx.poll() + mailboxes.ServeAll() > 0) {
      busy_until = std::chrono::steady_clock::now() + spin;
    } else if (std::chrono::steady_clock::now() >= busy_until) {
      mailboxes.SetPolling(false);
      if (mailboxes.ServeAll() == 0 && ctx.run_one() == 0) break;  // 0: stopped
      mailboxes.SetPolling(true);
      busy_until = std::chrono::steady_clock::now() + spin;
    }
  }
  mailboxes.SetPolling(false);
}

}  // namespace

class Server::Impl {
 public:
  explicit Impl(const ServerConfig& config) : config_(config) {}

  ~Impl() {
    // NVMe work in flight resumes connections on their contexts: finish it first.
    if (blocking_) blocking_->pool.join();
    // Acceptors and work guards refer to the contexts; connections' coroutine frames die with
    // their contexts, which must go before the service and the tier they point to.
    unix_acceptor_.reset();
    tcp_acceptor_.reset();
    metrics_.reset();
    guards_.clear();
    contexts_.clear();
    if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
  }

  absl::Status Init() {
    KVTIER_RETURN_IF_ERROR(config_.Validate());
    std::error_code ec;
    std::filesystem::create_directories(config_.data_dir, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot create data dir ", config_.data_dir, ": ", ec.message()));
    }
    tiers::DramTierOptions dram_options;
    dram_options.capacity_bytes = config_.dram_capacity_bytes;
    dram_options.slab_bytes = config_.dram_slab_bytes;
    dram_options.lease_timeout_ns = static_cast<int64_t>(config_.lease_timeout_ms) * 1'000'000;
    // The policy remembers a little about blocks it evicted (ghosts); size that memory for the
    // most blocks the capacity can hold (one page each: block sizes are only known once
    // namespaces open), within 1K..16M entries. Sizing it for 64 KiB blocks cost prefix-slru
    // 1.5 points of hit rate with 4 KiB blocks (docs/policy.md, online replay).
    tiers::PolicyOptions policy_options;
    policy_options.capacity_blocks =
        std::clamp<uint64_t>(config_.dram_capacity_bytes / 4096, 1024, uint64_t{1} << 24);
    KVTIER_ASSIGN_OR_RETURN(auto policy,
                            tiers::NewPolicy(config_.dram_eviction_policy, policy_options));
    KVTIER_ASSIGN_OR_RETURN(dram_,
                            tiers::DramTier::Create(dram_options, &clock_, std::move(policy)));
    if (!config_.nvme_path.empty()) {
      KVTIER_RETURN_IF_ERROR(OpenNvme());
    } else {
      service_ = std::make_unique<Service>(config_, dram_.get(), &clock_);
    }

    for (uint32_t i = 0; i < config_.io_threads; ++i) {
      contexts_.push_back(std::make_unique<asio::io_context>(1));
      guards_.emplace_back(asio::make_work_guard(*contexts_.back()));
      mailboxes_.push_back(std::make_unique<MailboxSet>(service_.get()));
    }
    return OpenListeners();
  }

  // The NVMe tier: device, index and recovery, the placement layer between it and DRAM, its
  // threads, and the namespace ids of the last run.
  absl::Status OpenNvme() {
    tiers::NvmeDeviceOptions device_options;
    device_options.path = config_.nvme_path;
    device_options.capacity_bytes = config_.nvme_capacity_bytes;
    device_options.queue_depth = config_.nvme_queue_depth;
    device_options.engine =
        config_.nvme_engine == "io_uring"      ? tiers::NvmeDeviceOptions::Engine::kIoUring
        : config_.nvme_engine == "thread_pool" ? tiers::NvmeDeviceOptions::Engine::kThreadPool
                                               : tiers::NvmeDeviceOptions::Engine::kAuto;
    absl::StatusOr<std::unique_ptr<tiers::NvmeDevice>> device =
        tiers::OpenFileDevice(device_options);
    if (!device.ok()) {
      return absl::Status(device.status().code(),
                          absl::StrCat("NVMe tier (--nvme-path ", config_.nvme_path,
                                       "): ", device.status().message()));
    }
    tiers::NvmeTierOptions tier_options;
    tier_options.index_path = config_.EffectiveNvmeIndexDir();
    tier_options.region_bytes = config_.nvme_region_bytes;
    tier_options.reclaim_batch_regions = config_.nvme_reclaim_batch;
    // Admission is the placement layer's (before the copy out of DRAM).
    absl::StatusOr<std::unique_ptr<tiers::NvmeTier>> nvme = tiers::NvmeTier::Create(
        tier_options, std::move(*device), &unix_clock_, tiers::NewAdmitAllPolicy());
    if (!nvme.ok()) {
      return absl::Status(nvme.status().code(),
                          absl::StrCat("NVMe tier (--nvme-path ", config_.nvme_path, ", index ",
                                       tier_options.index_path, "): ", nvme.status().message()));
    }
    nvme_ = std::move(*nvme);
    KVTIER_RETURN_IF_ERROR(
        nvme_->RegisterMemory({dram_->arena_base(), static_cast<size_t>(dram_->arena_bytes())}));
    KVTIER_ASSIGN_OR_RETURN(auto admission,
                            tiers::ParseAdmissionPolicy(config_.nvme_admission, &clock_));
    NvmePlacementOptions placement_options;
    placement_options.demotion_buffer_bytes = config_.nvme_demotion_buffer_bytes;
    KVTIER_ASSIGN_OR_RETURN(
        placement_options.encoder,
        NewDemotionEncoder(config_.nvme_demotion_encoder,
                           static_cast<int>(config_.nvme_demotion_encode_threads)));
    spdlog::info("demotions of compressed namespaces are encoded by {}",
                 placement_options.encoder->Describe());
    placement_ = std::make_unique<NvmePlacement>(placement_options, dram_.get(), nvme_.get(),
                                                 std::move(admission));
    blocking_ = std::make_unique<NvmeExecutors>(config_.nvme_threads);

    const std::string ns_file = (std::filesystem::path(config_.data_dir) / "namespaces").string();
    service_ = std::make_unique<Service>(config_, dram_.get(), &clock_, placement_.get(), ns_file);
    std::vector<NamespaceInfo> saved;
    if (absl::StatusOr<std::vector<NamespaceInfo>> loaded = LoadNamespaceFile(ns_file);
        loaded.ok()) {
      saved = std::move(*loaded);
    } else if (!absl::IsNotFound(loaded.status())) {
      // Without the descriptors, NVMe blocks cannot be tied to their namespaces: they stay
      // unreachable (and their ids unused) until the regions holding them are recycled.
      spdlog::error("{}; NVMe blocks of earlier runs will not be found",
                    loaded.status().ToString());
    }
    const tiers::NvmeTierSnapshot snap = nvme_->Snapshot();
    std::vector<uint32_t> nvme_ids;
    for (const tiers::NamespaceSnapshot& ns : snap.tier.namespaces) {
      nvme_ids.push_back(ns.namespace_id);
    }
    KVTIER_RETURN_IF_ERROR(service_->RestoreNamespaces(saved, nvme_ids));
    const tiers::NvmeRecoveryInfo& r = snap.recovery;
    spdlog::info(
        "NVMe tier on {} ({}): {} in {} regions of {}, {} block(s) recovered{}{} in {} ms, "
        "{} namespace(s) restored",
        config_.nvme_path, snap.engine, FormatByteSize(snap.tier.capacity_bytes), snap.regions,
        FormatByteSize(snap.region_bytes), r.blocks_recovered,
        r.formatted ? " (device formatted)" : "",
        r.index_rebuilt ? absl::StrCat(" (index rebuilt: ", r.reason, ")") : std::string(),
        r.startup_nanos / 1'000'000, saved.size());
    return absl::OkStatus();
  }

  absl::Status OpenListeners() {
    asio::io_context& ctx = *contexts_.front();
    const std::string sock = config_.EffectiveSocketPath();
    if (!sock.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(sock).parent_path(), ec);
      KVTIER_RETURN_IF_ERROR(ClaimSocketPath(sock));
      boost::system::error_code bec;
      unix_acceptor_ = std::make_unique<UnixProtocol::acceptor>(ctx);
      unix_acceptor_->open(UnixProtocol(), bec);
      if (!bec) unix_acceptor_->bind(UnixProtocol::endpoint(sock), bec);
      if (!bec) unix_acceptor_->listen(asio::socket_base::max_listen_connections, bec);
      if (bec) {
        return absl::UnavailableError(
            absl::StrCat("cannot listen on unix socket ", sock, ": ", bec.message()));
      }
      socket_path_ = sock;
      // Local clients map the arena read-write: only the owner and group may connect.
      ::chmod(sock.c_str(), 0660);
    }
    if (!config_.tcp_listen.empty()) {
      KVTIER_ASSIGN_OR_RETURN(HostPort hp, ParseHostPort(config_.tcp_listen));
      boost::system::error_code bec;
      const auto address = asio::ip::make_address(hp.host, bec);
      if (bec) {
        return absl::InvalidArgumentError(absl::StrCat("--tcp-listen host '", hp.host,
                                                       "' is not an IP address: ", bec.message()));
      }
      const asio::ip::tcp::endpoint endpoint(address, hp.port);
      tcp_acceptor_ = std::make_unique<asio::ip::tcp::acceptor>(ctx);
      tcp_acceptor_->open(endpoint.protocol(), bec);
      if (!bec) tcp_acceptor_->set_option(asio::socket_base::reuse_address(true), bec);
      if (!bec) tcp_acceptor_->bind(endpoint, bec);
      if (!bec) tcp_acceptor_->listen(asio::socket_base::max_listen_connections, bec);
      if (bec) {
        return absl::UnavailableError(
            absl::StrCat("cannot listen on tcp ", config_.tcp_listen, ": ", bec.message()));
      }
      if (!address.is_loopback() && config_.auth_token.empty()) {
        spdlog::warn("TCP listener {} is reachable from other hosts and no --auth-token is set",
                     config_.tcp_listen);
      }
    }
    if (!config_.metrics_listen.empty()) {
      KVTIER_ASSIGN_OR_RETURN(metrics_, MetricsListener::Open(
                                            ctx, config_.metrics_listen,
                                            [service = service_.get()] {
                                              return RenderPrometheusText(service->Stats(),
                                                                          KVTIER_VERSION);
                                            },
                                            &service_->counters()));
    }
    return absl::OkStatus();
  }

  absl::Status Run() {
    asio::io_context& main = *contexts_.front();
    asio::signal_set signals(main, SIGINT, SIGTERM);
    signals.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("received signal {}, shutting down", sig);
      Shutdown();
    });
    if (unix_acceptor_) {
      asio::co_spawn(main, AcceptLoop(*unix_acceptor_), asio::detached);
      spdlog::info("serving on unix://{}", socket_path_);
    }
    if (tcp_acceptor_) {
      asio::co_spawn(main, AcceptLoop(*tcp_acceptor_), asio::detached);
      spdlog::info("serving on tcp://{}:{}", tcp_acceptor_->local_endpoint().address().to_string(),
                   tcp_acceptor_->local_endpoint().port());
    }
    if (metrics_) {
      metrics_->Start();
      spdlog::info("serving metrics on http://{}/metrics (port {})", config_.metrics_listen,
                   metrics_->port());
    }
    asio::co_spawn(main, LeaseReaper(), asio::detached);

    std::vector<std::thread> threads;
    const std::chrono::microseconds spin(config_.EffectiveBusyPollUs());
    for (size_t i = 1; i < contexts_.size(); ++i) {
      threads.emplace_back([ctx = contexts_[i].get(), mailboxes = mailboxes_[i].get(), spin] {
        RunLoop(*ctx, spin, *mailboxes);
      });
    }
    std::thread maintenance;
    if (config_.dram_reclaim_ahead) maintenance = std::thread([this] { DramMaintenance(); });
    RunLoop(main, spin, *mailboxes_.front());
    for (auto& t : threads) t.join();
    if (maintenance.joinable()) {
      {
        absl::MutexLock lock(&maintenance_mu_);
        stopping_ = true;
      }
      maintenance.join();
    }
    if (blocking_) {
      blocking_->pool.join();
      service_->SaveForShutdown();
    }
    spdlog::info("kvtierd stopped");
    return absl::OkStatus();
  }

  void Shutdown() {
    // Runs on the main context so acceptors are only touched from their own thread.
    asio::post(*contexts_.front(), [this] {
      boost::system::error_code ignored;
      if (unix_acceptor_) unix_acceptor_->close(ignored);
      if (tcp_acceptor_) tcp_acceptor_->close(ignored);
      if (metrics_) metrics_->Close();
      for (auto& g : guards_) g.reset();
      for (auto& ctx : contexts_) ctx->stop();
    });
  }

  uint16_t tcp_port() const { return tcp_acceptor_ ? tcp_acceptor_->local_endpoint().port() : 0; }

 private:
  size_t NextContext() {
    return next_context_.fetch_add(1, std::memory_order_relaxed) % contexts_.size();
  }

  // Unix connections get their network thread's mailbox set; TCP ones none.
  template <typename Socket>
  awaitable<void> Serve(Socket socket, uint64_t id, size_t context) {
    if constexpr (std::is_same_v<typename Socket::protocol_type, UnixProtocol>) {
      return ServeConnection(std::move(socket), service_.get(), blocking_.get(), id,
                             mailboxes_[context].get());
    } else {
      return ServeConnection(std::move(socket), service_.get(), blocking_.get(), id);
    }
  }

  template <typename Acceptor>
  awaitable<void> AcceptLoop(Acceptor& acceptor) {
    ServerCounters& counters = service_->counters();
    while (acceptor.is_open()) {
      bool backoff = false;
      try {
        const size_t context = NextContext();
        auto socket = co_await acceptor.async_accept(*contexts_[context], use_awaitable);
        counters.connections_total.fetch_add(1, std::memory_order_relaxed);
        if (counters.connections_active.load(std::memory_order_relaxed) >=
            config_.max_connections) {
          counters.connections_refused.fetch_add(1, std::memory_order_relaxed);
          spdlog::warn("refusing a connection: {} are open (max_connections)",
                       config_.max_connections);
          continue;  // the socket closes as it goes out of scope
        }
        counters.connections_active.fetch_add(1, std::memory_order_relaxed);
        const uint64_t id = next_connection_id_.fetch_add(1, std::memory_order_relaxed);
        auto executor = socket.get_executor();
        asio::co_spawn(executor, Serve(std::move(socket), id, context), asio::detached);
      } catch (const boost::system::system_error& e) {
        if (!acceptor.is_open()) break;
        // EMFILE and friends: log, back off briefly, keep serving existing clients.
        spdlog::error("accept failed: {}", e.what());
        backoff = true;
      }
      if (backoff) {
        asio::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(50));
        co_await t.async_wait(use_awaitable);
      }
    }
  }

  // The DRAM tier's work ahead of the request path (DramTier::ReclaimAhead), on a thread of its
  // own: a reclaim copies up to a slab's bytes, which must not hold up a network thread.
  void DramMaintenance() {
    auto pause = absl::ZeroDuration();
    for (;;) {
      {
        absl::MutexLock lock(&maintenance_mu_);
        if (maintenance_mu_.AwaitWithTimeout(absl::Condition(&stopping_), pause)) return;
      }
      pause = absl::FromChrono(tiers::DramTier::AheadPause(dram_->ReclaimAhead()));
    }
  }

  awaitable<void> LeaseReaper() {
    // Check often enough that a lease never outlives its timeout by more than a quarter.
    const auto period =
        std::chrono::milliseconds(std::clamp<uint64_t>(config_.lease_timeout_ms / 4, 5, 1000));
    asio::steady_timer timer(*contexts_.front());
    for (;;) {
      timer.expires_after(period);
      try {
        co_await timer.async_wait(use_awaitable);
      } catch (const boost::system::system_error&) {
        co_return;
      }
      if (size_t n = service_->ExpireLeases(); n > 0) {
        spdlog::warn("{} client lease(s) expired; their slots were reclaimed", n);
      }
    }
  }

  const ServerConfig config_;
  SteadyClock clock_;
  tiers::UnixClock unix_clock_;  // NVMe TTLs must mean the same after a restart
  std::unique_ptr<tiers::DramTier> dram_;
  std::unique_ptr<tiers::NvmeTier> nvme_;
  std::unique_ptr<NvmePlacement> placement_;  // between dram_ and nvme_: destroyed before them
  std::unique_ptr<NvmeExecutors> blocking_;
  std::unique_ptr<Service> service_;
  // One per network thread, beside contexts_; connections remove their mailboxes as their
  // coroutine frames die with the contexts, so these outlive them.
  std::vector<std::unique_ptr<MailboxSet>> mailboxes_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::unique_ptr<UnixProtocol::acceptor> unix_acceptor_;
  std::unique_ptr<asio::ip::tcp::acceptor> tcp_acceptor_;
  std::unique_ptr<MetricsListener> metrics_;
  std::string socket_path_;
  std::atomic<uint64_t> next_connection_id_{1};
  std::atomic<size_t> next_context_{0};
  absl::Mutex maintenance_mu_;
  bool stopping_ ABSL_GUARDED_BY(maintenance_mu_) = false;
};

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const ServerConfig& config) {
  auto impl = std::make_unique<Impl>(config);
  KVTIER_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;
absl::Status Server::Run() { return impl_->Run(); }
void Server::Shutdown() { impl_->Shutdown(); }
uint16_t Server::tcp_port() const { return impl_->tcp_port(); }

}  // namespace kvtier::server
