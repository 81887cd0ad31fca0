// DaemonTest: a gtest fixture around one real kvtierd (DaemonProcess) and one client connected
// to it over its Unix socket, for the integration tests; and TestDescriptor, the namespace
// those tests open. Header-only: the tests that use it already link gtest and the client.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "kvtier/client/client.h"
#include "tests/testing/daemon_process.h"

namespace kvtier::testing {

// A namespace of `block_bytes` blocks of 16 tokens for model `model`.
inline NamespaceDescriptor TestDescriptor(const std::string& model, uint64_t block_bytes,
                                          const std::string& dtype = "bf16",
                                          const std::string& kv_layout = "") {
  NamespaceDescriptor d;
  d.model_id = model;
  d.dtype = dtype;
  d.kv_layout = kv_layout;
  d.block_tokens = 16;
  d.block_bytes = block_bytes;
  return d;
}

class DaemonTest : public ::testing::Test {
 protected:
  // Starts kvtierd with options_ and connects client_. Skips the test where kvtierd was not
  // built; a caller goes on only if neither that nor a fatal failure happened
  // (ASSERT_NO_FATAL_FAILURE, IsSkipped). A failed start shows the daemon's log when
  // options_.stderr_path holds it.
  void StartDaemon() {
    auto d = DaemonProcess::Start(options_);
    if (absl::IsNotFound(d.status())) GTEST_SKIP() << d.status();
    ASSERT_TRUE(d.ok()) << d.status() << "\n" << DaemonLog();
    daemon_ = std::move(*d);
    ConnectClient();
  }

  // Drops client_, restarts kvtierd on the same data directory with options_, reconnects.
  void RestartDaemon() {
    client_.reset();
    const absl::Status s = daemon_->Restart(options_);
    ASSERT_TRUE(s.ok()) << s << "\n" << DaemonLog();
    ConnectClient();
  }

  // A new client_ over the Unix socket, then OnConnect().
  void ConnectClient() {
    auto c = client::Client::Connect(daemon_->unix_uri(), {});
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
    OnConnect();
  }

  // Runs after every connection (e.g. to open the test's namespaces again).
  virtual void OnConnect() {}

  // The daemon's log so far, when options_.stderr_path captures it.
  std::string DaemonLog() const {
    if (options_.stderr_path.empty()) return "";
    std::ifstream in(options_.stderr_path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  DaemonOptions options_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<client::Client> client_;
};

}  // namespace kvtier::testing
