// RunningDaemon: the real kvtierd, started for one test and stopped with it.
//
// Start() fork/execs KVTIERD_PATH with a fresh temporary directory as --data-dir and
// <dir>/s.sock as --socket (plus a TCP listener on a free loopback port when asked), then polls
// Health through the client library for up to 10 s. The destructor SIGTERMs the daemon, waits
// for it (SIGKILL after 10 s) and removes the directory. The daemon's stderr goes to
// <dir>/kvtierd.log, which Start() quotes when the daemon fails to come up.
// Not thread-safe: one per test, driven from the test's thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier::client::testing {

struct DaemonArgs {
  std::string dram_capacity = "64MiB";
  bool tcp = false;
  std::string auth_token;          // passed as --auth-token and used by the health probe
  std::vector<std::string> extra;  // e.g. {"--lease-timeout", "600000"}
};

class RunningDaemon {
 public:
  // Whether KVTIERD_PATH exists (the test binary exits 77, "skipped", when it does not).
  static bool BinaryExists();
  static absl::StatusOr<std::unique_ptr<RunningDaemon>> Start(const DaemonArgs& args);
  ~RunningDaemon();

  std::string unix_uri() const { return "unix://" + dir_ + "/s.sock"; }
  std::string socket_path() const { return dir_ + "/s.sock"; }
  std::string tcp_uri() const { return "tcp://127.0.0.1:" + std::to_string(tcp_port_); }
  pid_t pid() const { return pid_; }

  // SIGTERM, then wait up to 10 s; returns the wait status. Idempotent.
  absl::StatusOr<int> Stop();

 private:
  RunningDaemon() = default;
  std::string LogTail() const;

  std::string dir_;
  uint16_t tcp_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace kvtier::client::testing
