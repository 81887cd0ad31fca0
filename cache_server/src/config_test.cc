#include "kvtier/server/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace kvtier::server {
namespace {

std::string WriteFile(const std::string& name, const std::string& text) {
  const auto path =
      std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()) + ".toml");
  std::ofstream(path) << text;
  return path.string();
}

TEST(ServerConfig, DefaultsAreValidAndSocketFollowsDataDir) {
  ServerConfig c;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  EXPECT_EQ(c.EffectiveSocketPath(), "./var/kvtierd.sock");
  c.data_dir = "/tmp/x";
  EXPECT_EQ(c.EffectiveSocketPath(), "/tmp/x/kvtierd.sock");
  c.socket_path = "none";
  EXPECT_EQ(c.EffectiveSocketPath(), "");
  EXPECT_FALSE(c.Validate().ok()) << "no listener at all must be rejected";
  c.tcp_listen = "7070";
  EXPECT_TRUE(c.Validate().ok());
}

TEST(ServerConfig, FileOverridesDefaultsAndAcceptsSizesWithUnits) {
  const std::string path = WriteFile("good", R"(
[server]
data_dir = "/tmp/kv"
tcp_listen = "127.0.0.1:7070"
metrics_listen = "0.0.0.0:9464"
io_threads = 4
log_level = "debug"
[dram]
capacity = "256MiB"
lease_timeout_ms = 500
reclaim_ahead = false
[limits]
max_payload_bytes = "64MiB"
)");
  ServerConfig c;
  ASSERT_TRUE(LoadConfigFile(path, &c).ok());
  EXPECT_EQ(c.data_dir, "/tmp/kv");
  EXPECT_EQ(c.io_threads, 4u);
  EXPECT_EQ(c.metrics_listen, "0.0.0.0:9464");
  EXPECT_EQ(c.dram_capacity_bytes, 256ull << 20);
  EXPECT_EQ(c.lease_timeout_ms, 500u);
  EXPECT_FALSE(c.dram_reclaim_ahead);
  EXPECT_EQ(c.limits.max_payload_bytes, 64ull << 20);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_TRUE(c.Validate().ok());
  std::filesystem::remove(path);
}

TEST(ServerConfig, NvmeSectionIsReadAndChecked) {
  const std::string path = WriteFile("nvme", R"(
[server]
data_dir = "/tmp/kv"
[nvme]
path = "/tmp/kv/nvme.img"
capacity = "64GiB"
region_size = "32MiB"
admission = "rate:100MiB/s"
write_through = true
shutdown_save_ms = 5000
engine = "thread_pool"
queue_depth = 64
reclaim_batch = 4
demotion_buffer = "1GiB"
demotion_encoder = "cpu"
demotion_encode_threads = 6
threads = 8
)");
  ServerConfig c;
  ASSERT_TRUE(LoadConfigFile(path, &c).ok()) << LoadConfigFile(path, &c);
  EXPECT_EQ(c.nvme_path, "/tmp/kv/nvme.img");
  EXPECT_EQ(c.nvme_capacity_bytes, 64ull << 30);
  EXPECT_EQ(c.nvme_region_bytes, 32ull << 20);
  EXPECT_EQ(c.nvme_admission, "rate:100MiB/s");
  EXPECT_TRUE(c.nvme_write_through);
  EXPECT_EQ(c.nvme_shutdown_save_ms, 5000u);
  EXPECT_EQ(c.nvme_engine, "thread_pool");
  EXPECT_EQ(c.nvme_queue_depth, 64u);
  EXPECT_EQ(c.nvme_reclaim_batch, 4u);
  EXPECT_EQ(c.nvme_demotion_buffer_bytes, 1ull << 30);
  EXPECT_EQ(c.nvme_threads, 8u);
  EXPECT_EQ(c.nvme_demotion_encoder, "cpu");
  EXPECT_EQ(c.nvme_demotion_encode_threads, 6u);
  EXPECT_EQ(c.EffectiveNvmeIndexDir(), "/tmp/kv/nvme-index");
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  std::filesystem::remove(path);

  auto message = [](ServerConfig c) { return std::string(c.Validate().message()); };
  ServerConfig bad = c;
  bad.nvme_admission = "sometimes";
  EXPECT_NE(message(bad).find("hits:N"), std::string::npos) << message(bad);
  bad = c;
  bad.nvme_engine = "spdk";
  EXPECT_NE(message(bad).find("thread_pool"), std::string::npos) << message(bad);
  bad = c;
  bad.nvme_demotion_encoder = "tpu";
  EXPECT_NE(message(bad).find("auto, cpu, gpu"), std::string::npos) << message(bad);
  bad = c;
  bad.nvme_demotion_encode_threads = 0;
  EXPECT_NE(message(bad).find("demotion_encode_threads"), std::string::npos) << message(bad);
  bad = c;
  bad.nvme_region_bytes = 512 << 10;
  EXPECT_NE(message(bad).find("region size"), std::string::npos) << message(bad);
  bad = c;
  bad.nvme_capacity_bytes = 40ull << 20;
  EXPECT_NE(message(bad).find("two regions"), std::string::npos) << message(bad);
  // Without a path the NVMe options are not checked: the tier is off.
  bad.nvme_path.clear();
  EXPECT_TRUE(bad.Validate().ok());
  const std::string wrong_type = WriteFile("nvme-type", "[nvme]\nwrite_through = \"yes\"\n");
  ServerConfig d;
  EXPECT_NE(LoadConfigFile(wrong_type, &d).message().find("true or false"), std::string::npos);
  std::filesystem::remove(wrong_type);
}

TEST(ServerConfig, BadFilesGetMessagesNamingTheProblem) {
  ServerConfig c;
  auto s = LoadConfigFile("/nonexistent/kvtierd.toml", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);

  const std::string unknown = WriteFile("unknown", "[dram]\ncapasity = \"1GiB\"\n");
  s = LoadConfigFile(unknown, &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dram.capasity"), std::string::npos) << s;
  EXPECT_NE(s.message().find("line 2"), std::string::npos) << s;

  const std::string badsize = WriteFile("badsize", "[dram]\ncapacity = \"lots\"\n");
  s = LoadConfigFile(badsize, &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("256MiB"), std::string::npos) << s;

  const std::string syntax = WriteFile("syntax", "[server\n");
  s = LoadConfigFile(syntax, &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);

  const std::string type = WriteFile("type", "[server]\nio_threads = \"four\"\n");
  s = LoadConfigFile(type, &c);
  EXPECT_NE(s.message().find("server.io_threads"), std::string::npos) << s;
  for (const auto& p : {unknown, badsize, syntax, type}) std::filesystem::remove(p);
}

TEST(ServerConfig, ValidateRejectsNonsenseWithAFix) {
  ServerConfig c;
  c.dram_capacity_bytes = 1 << 20;
  EXPECT_NE(c.Validate().message().find("--dram-capacity"), std::string::npos);
  c = ServerConfig();
  c.log_level = "loud";
  EXPECT_FALSE(c.Validate().ok());
  c = ServerConfig();
  c.socket_path = std::string(200, 'x');
  EXPECT_NE(c.Validate().message().find("107"), std::string::npos);
  c = ServerConfig();
  c.tcp_listen = "localhost:http";
  EXPECT_FALSE(c.Validate().ok());
  c = ServerConfig();
  c.metrics_listen = "9464x";
  EXPECT_NE(c.Validate().message().find("metrics_listen"), std::string::npos) << c.Validate();
  c.metrics_listen = "9464";
  EXPECT_TRUE(c.Validate().ok());
  c = ServerConfig();
  c.dram_eviction_policy = "mru";
  EXPECT_NE(c.Validate().message().find("prefix-slru"), std::string::npos) << c.Validate();
  c.dram_eviction_policy = "lru";
  EXPECT_TRUE(c.Validate().ok());
}

TEST(ServerConfig, TheDocumentedConfigFileLoadsAndStatesTheDefaults) {
  ServerConfig from_file;
  ASSERT_TRUE(LoadConfigFile(KVTIER_DEPLOY_CONFIG, &from_file).ok())
      << LoadConfigFile(KVTIER_DEPLOY_CONFIG, &from_file);
  EXPECT_TRUE(from_file.Validate().ok()) << from_file.Validate();
  // deploy/kvtierd.toml shows every default: loading it must change nothing.
  EXPECT_EQ(from_file.ToString(), ServerConfig().ToString());
}

TEST(ParseHostPort, Forms) {
  EXPECT_EQ(ParseHostPort("7070")->host, "127.0.0.1");
  EXPECT_EQ(ParseHostPort(":7070")->port, 7070);
  EXPECT_EQ(ParseHostPort("0.0.0.0:80")->host, "0.0.0.0");
  EXPECT_EQ(ParseHostPort("[::1]:9")->host, "::1");
  EXPECT_FALSE(ParseHostPort("host:99999").ok());
  EXPECT_FALSE(ParseHostPort("[::1]9").ok());
}

}  // namespace
}  // namespace kvtier::server
