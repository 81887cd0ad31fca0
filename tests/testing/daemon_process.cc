#include "daemon_process.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"

namespace kvtier::testing {
namespace {

bool CanConnect(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

bool CanConnectTcp(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

// $KVTIER_KVTIERD, where set, wins: on a GPU machine the binaries live in a bundle.
std::string DaemonProcess::BinaryPath() {
  const char* env = std::getenv("KVTIER_KVTIERD");
  return env != nullptr && env[0] != '\0' ? env : KVTIERD_PATH;
}

absl::StatusOr<uint16_t> PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("cannot pick a port: ", std::strerror(errno)));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(const DaemonOptions& options) {
  if (!std::filesystem::exists(BinaryPath())) {
    return absl::NotFoundError(absl::StrCat(BinaryPath(), " is not built"));
  }
  std::unique_ptr<DaemonProcess> d(new DaemonProcess());
  char tmpl[] = "/tmp/kvtier-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    return absl::UnavailableError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  d->data_dir_ = tmpl;
  d->socket_path_ = d->data_dir_ + "/kvtierd.sock";
  if (options.tcp) {
    auto port = PickFreePort();
    if (!port.ok()) return port.status();
    d->tcp_port_ = *port;
  }
  if (absl::Status s = d->Spawn(options); !s.ok()) return s;
  return d;
}

absl::Status DaemonProcess::Restart(const DaemonOptions& options) {
  if (pid_ > 0) return absl::FailedPreconditionError("daemon is still running; Stop it first");
  return Spawn(options);
}

absl::Status DaemonProcess::Spawn(const DaemonOptions& options) {
  std::vector<std::string> args = {
      BinaryPath(),      "--data-dir",          data_dir_,     "--socket", socket_path_,
      "--dram-capacity", options.dram_capacity, "--log-level", "warn"};
  if (tcp_port_ != 0) {
    args.push_back("--tcp-listen");
    args.push_back(absl::StrCat("127.0.0.1:", tcp_port_));
  }
  auto expand = [&](std::string arg) {
    for (size_t at; (at = arg.find("{data_dir}")) != std::string::npos;) {
      arg.replace(at, 10, data_dir_);
    }
    return arg;
  };
  for (const std::string& arg : options.extra_args) args.push_back(expand(arg));
  const std::string stderr_path = expand(options.stderr_path);

  const pid_t pid = ::fork();
  if (pid < 0) return absl::UnavailableError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    if (!stderr_path.empty()) {
      const int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0 || ::dup2(fd, 2) < 0) ::_exit(126);
    }
    if (options.memlock_bytes > 0) {
      // Root gets back at exec every capability in its bounding set, so drop it there (fails
      // harmlessly for a user who never had it).
      (void)::prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0);
      rlimit limit;
      ::getrlimit(RLIMIT_MEMLOCK, &limit);
      limit.rlim_cur = std::min<rlim_t>(options.memlock_bytes, limit.rlim_max);
      limit.rlim_max = limit.rlim_cur;
      if (::setrlimit(RLIMIT_MEMLOCK, &limit) != 0) ::_exit(125);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("kvtierd exited at startup with status ", status));
    }
    if (CanConnect(socket_path_) && (tcp_port_ == 0 || CanConnectTcp(tcp_port_))) {
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::DeadlineExceededError("kvtierd did not start listening within 30 s");
}

absl::StatusOr<int> DaemonProcess::Stop(int signal, std::chrono::seconds timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("daemon is not running");
  ::kill(pid_, signal);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("kvtierd did not exit within ", timeout.count(), " s"));
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  std::error_code ec;
  if (!data_dir_.empty()) std::filesystem::remove_all(data_dir_, ec);
}

}  // namespace kvtier::testing
