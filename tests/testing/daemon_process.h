// DaemonProcess: starts the real kvtierd binary for a test and stops it again.
//
// Each instance gets a fresh temporary data directory (removed afterwards) and its own Unix
// socket; Start() returns once the daemon accepts connections. Tests that need a TCP listener
// pass tcp=true and read tcp_port(). Not thread-safe; one per test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier::testing {

struct DaemonOptions {
  std::string dram_capacity = "64MiB";
  bool tcp = false;
  // e.g. {"--auth-token", "s3cret"}; "{data_dir}" is replaced by the data directory's path.
  std::vector<std::string> extra_args;
  // Non-empty: the daemon's stderr (its log) is appended to this file instead of going to the
  // test's stderr, so that a test can check what it logged. "{data_dir}" is replaced as above.
  std::string stderr_path;
  // > 0: the daemon runs with this RLIMIT_MEMLOCK and without CAP_IPC_LOCK (which would lift
  // it), as an unprivileged service does: e.g. to see io_uring refuse to pin its arena.
  uint64_t memlock_bytes = 0;
};

class DaemonProcess {
 public:
  // kNotFound when the kvtierd binary has not been built (tests then skip).
  static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(const DaemonOptions& options);
  ~DaemonProcess();  // SIGKILLs a daemon that is still running, removes the data directory

  const std::string& socket_path() const { return socket_path_; }
  const std::string& data_dir() const { return data_dir_; }
  uint16_t tcp_port() const { return tcp_port_; }
  std::string unix_uri() const { return "unix://" + socket_path_; }
  std::string tcp_uri() const { return "tcp://127.0.0.1:" + std::to_string(tcp_port_); }
  pid_t pid() const { return pid_; }

  // Sends `signal` and waits up to 10 s (or `timeout`) for the exit; returns the wait status.
  absl::StatusOr<int> Stop(int signal, std::chrono::seconds timeout = std::chrono::seconds(10));

  // Starts the daemon again on the same data directory and socket (after Stop), with
  // `options` (its tcp flag is ignored). Returns once it accepts connections.
  absl::Status Restart(const DaemonOptions& options);
  bool running() const { return pid_ > 0; }

  // Path of the kvtierd binary the tests use.
  static std::string BinaryPath();

 private:
  DaemonProcess() = default;
  absl::Status Spawn(const DaemonOptions& options);
  std::string data_dir_;
  std::string socket_path_;
  uint16_t tcp_port_ = 0;
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<uint16_t> PickFreePort();

}  // namespace kvtier::testing
