#include "kvtier/client/endpoint.h"

#include <gtest/gtest.h>

#include <string>

namespace kvtier::client {
namespace {

TEST(ParseEndpoint, UnixForms) {
  for (const char* uri : {"unix:///tmp/k.sock", "/tmp/k.sock"}) {
    auto e = ParseEndpoint(uri);
    ASSERT_TRUE(e.ok()) << uri << ": " << e.status();
    EXPECT_EQ(e->kind, Endpoint::Kind::kUnix);
    EXPECT_EQ(e->path, "/tmp/k.sock");
    EXPECT_EQ(e->ToUri(), "unix:///tmp/k.sock");
  }
  auto rel = ParseEndpoint("./var/kvtierd.sock");
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(rel->path, "./var/kvtierd.sock");
  auto rel_uri = ParseEndpoint("unix://var/kvtierd.sock");
  ASSERT_TRUE(rel_uri.ok());
  EXPECT_EQ(rel_uri->path, "var/kvtierd.sock");
}

TEST(ParseEndpoint, TcpForms) {
  auto v4 = ParseEndpoint("tcp://127.0.0.1:7070");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->kind, Endpoint::Kind::kTcp);
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 7070);
  EXPECT_EQ(v4->ToUri(), "tcp://127.0.0.1:7070");

  auto v6 = ParseEndpoint("tcp://[::1]:9");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 9);
  EXPECT_EQ(v6->ToUri(), "tcp://[::1]:9");

  auto name = ParseEndpoint("tcp://cache-node-3:65535");
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(name->host, "cache-node-3");
}

TEST(ParseEndpoint, RejectsWithActionableMessages) {
  for (const char* uri : {"", "unix://", "tcp://host", "tcp://:80", "tcp://h:0", "tcp://h:65536",
                          "tcp://h:http", "tcp://::1:80", "tcp://[::1", "http://x:80"}) {
    auto e = ParseEndpoint(uri);
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << uri;
    EXPECT_NE(std::string(e.status().message()).find("tcp://host:port"), std::string::npos)
        << e.status();
  }
}

TEST(ParseEndpoint, UnixPathLengthLimit) {
  EXPECT_TRUE(ParseEndpoint("/" + std::string(106, 'a')).ok());
  auto e = ParseEndpoint("/" + std::string(107, 'a'));
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(e.status().message()).find("107"), std::string::npos) << e.status();
}

}  // namespace
}  // namespace kvtier::client
