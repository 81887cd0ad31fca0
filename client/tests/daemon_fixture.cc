#include "daemon_fixture.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "kvtier/client/client.h"

namespace kvtier::client::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Binds port 0 to learn a free port, then lets it go for the daemon. Another process could take
// it in between; the daemon then fails to start and the test says why.
absl::StatusOr<uint16_t> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("no free port: ", std::strerror(errno)));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

bool RunningDaemon::BinaryExists() { return access(KVTIERD_PATH, X_OK) == 0; }

std::string RunningDaemon::LogTail() const {
  std::ifstream in(dir_ + "/kvtierd.log");
  std::stringstream s;
  s << in.rdbuf();
  std::string log = s.str();
  if (log.size() > 2000) log = log.substr(log.size() - 2000);
  return log;
}

absl::StatusOr<std::unique_ptr<RunningDaemon>> RunningDaemon::Start(const DaemonArgs& args) {
  std::unique_ptr<RunningDaemon> d(new RunningDaemon());
  char tmpl[] = "/tmp/kvtier-client-it-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::UnavailableError("mkdtemp failed");
  d->dir_ = tmpl;
  std::vector<std::string> argv = {KVTIERD_PATH,       "--socket",    d->socket_path(),
                                   "--data-dir",       d->dir_,       "--dram-capacity",
                                   args.dram_capacity, "--log-level", "warn"};
  if (args.tcp) {
    auto port = FreePort();
    if (!port.ok()) return port.status();
    d->tcp_port_ = *port;
    argv.push_back("--tcp-listen");
    argv.push_back(absl::StrCat("127.0.0.1:", *port));
  }
  if (!args.auth_token.empty()) {
    argv.push_back("--auth-token");
    argv.push_back(args.auth_token);
  }
  argv.insert(argv.end(), args.extra.begin(), args.extra.end());
  const std::string log_path = d->dir_ + "/kvtierd.log";

  const pid_t pid = fork();
  if (pid < 0) return absl::UnavailableError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log >= 0) dup2(log, STDERR_FILENO);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  d->pid_ = pid;

  ClientOptions options;
  options.use_shared_arena = false;
  options.auth_token = args.auth_token;
  options.connect_timeout = std::chrono::milliseconds(1000);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  absl::Status last;
  while (Clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      d->pid_ = -1;
      return absl::InternalError(absl::StrCat("kvtierd exited at startup (status ", status,
                                              "); its log:\n", d->LogTail()));
    }
    auto client = Client::Connect(args.tcp ? d->tcp_uri() : d->unix_uri(), options);
    if (client.ok()) {
      auto health = (*client)->Health();
      if (health.ok() && health->serving()) return d;
      last = health.ok() ? absl::UnavailableError("not serving yet") : health.status();
    } else {
      last = client.status();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "kvtierd not healthy within 10 s: ", last.message(), "\nits log:\n", d->LogTail()));
}

absl::StatusOr<int> RunningDaemon::Stop() {
  if (pid_ <= 0) return 0;
  kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (Clock::now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return absl::DeadlineExceededError("kvtierd ignored SIGTERM for 10 s and was killed");
}

RunningDaemon::~RunningDaemon() {
  (void)Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace kvtier::client::testing
