// Bad input against the real kvtierd: garbage, truncated frames, lengths past the limits,
// unknown ops, wrong versions, lies about payload sizes, ops before hello, wrong auth. Each
// case must get an error reply or a closed connection and a counter -- never a crash, a hang,
// or a disturbance to other clients. After every case the daemon must still answer a
// well-behaved client.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "kvtier/proto/messages.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/raw_connection.h"

namespace kvtier {
namespace {

using proto::FrameHeader;
using proto::Opcode;
using testing::DaemonOptions;
using testing::DaemonProcess;
using testing::RawConnection;

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon({}); }

  void StartDaemon(const DaemonOptions& options) {
    daemon_.reset();
    auto d = DaemonProcess::Start(options);
    if (absl::IsNotFound(d.status())) GTEST_SKIP() << d.status();
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
  }

  std::unique_ptr<RawConnection> Connect() {
    auto c = RawConnection::ConnectUnix(daemon_->socket_path());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::unique_ptr<RawConnection> ConnectWithHello() {
    auto c = Connect();
    auto hello = c->Hello();
    EXPECT_TRUE(hello.ok()) << hello.status();
    return c;
  }

  // The error code of a reply that must be an error.
  static absl::StatusCode ErrorCode(const absl::StatusOr<testing::RawFrame>& f) {
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok()) return absl::StatusCode::kOk;
    EXPECT_TRUE(f->header.flags & proto::kFlagError);
    proto::ErrorReply e;
    EXPECT_TRUE(e.ParseFromString(f->body));
    return static_cast<absl::StatusCode>(e.code());
  }

  // A fresh, well-behaved client gets served, and the daemon is alive.
  void ExpectStillServing() {
    auto c = ConnectWithHello();
    ASSERT_NE(c, nullptr);
    proto::HealthRequest req;
    ASSERT_TRUE(c->SendRequest(Opcode::kHealth, req).ok());
    auto f = c->ReadFrame();
    ASSERT_TRUE(f.ok()) << f.status();
    proto::HealthReply health;
    ASSERT_TRUE(health.ParseFromString(f->body));
    EXPECT_TRUE(health.serving());
    EXPECT_EQ(::kill(daemon_->pid(), 0), 0) << "kvtierd died";
  }

  proto::StatsReply Stats() {
    auto c = ConnectWithHello();
    proto::StatsRequest req;
    EXPECT_TRUE(c->SendRequest(Opcode::kStats, req).ok());
    auto f = c->ReadFrame();
    proto::StatsReply stats;
    EXPECT_TRUE(f.ok() && stats.ParseFromString(f->body));
    return stats;
  }

  uint32_t OpenNamespace(RawConnection* c, uint64_t block_bytes = 4096) {
    proto::OpenNamespaceRequest req;
    auto* d = req.mutable_namespace_descriptor();
    d->set_model_id("test-model");
    d->set_dtype("bf16");
    d->set_block_tokens(16);
    d->set_block_bytes(block_bytes);
    EXPECT_TRUE(c->SendRequest(Opcode::kOpenNamespace, req).ok());
    auto f = c->ReadFrame();
    proto::OpenNamespaceReply reply;
    EXPECT_TRUE(f.ok() && !(f->header.flags & proto::kFlagError) && reply.ParseFromString(f->body));
    return reply.namespace_id();
  }

  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(BadInputTest, GarbageGetsAnErrorReplyThenAClose) {
  auto c = Connect();
  ASSERT_TRUE(c->SendBytes(std::string(64, 'G')).ok());
  EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(c->ClosedByPeer());
  ExpectStillServing();
  EXPECT_GE(Stats().server().bad_frames(), 1u);
}

TEST_F(BadInputTest, WrongVersionIsNamed) {
  auto c = Connect();
  FrameHeader h;
  h.version = 9;
  h.opcode = Opcode::kHealth;
  ASSERT_TRUE(c->SendFrame(h, "").ok());
  EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(c->ClosedByPeer());
  ExpectStillServing();
}

TEST_F(BadInputTest, UnknownOpcodeIsUnimplemented) {
  auto c = ConnectWithHello();
  FrameHeader h;
  h.opcode = static_cast<Opcode>(999);
  ASSERT_TRUE(c->SendFrame(h, "").ok());
  EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kUnimplemented);
  ExpectStillServing();
}

TEST_F(BadInputTest, LengthsPastTheLimitsAreRefusedBeforeAllocation) {
  {
    auto c = ConnectWithHello();
    FrameHeader h;
    h.opcode = Opcode::kLookup;
    h.body_len = 0xFFFFFFFFu;  // 4 GiB body: must not be allocated
    ASSERT_TRUE(c->SendFrame(h, "").ok());
    EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kResourceExhausted);
    EXPECT_TRUE(c->ClosedByPeer());
  }
  {
    auto c = ConnectWithHello();
    FrameHeader h;
    h.opcode = Opcode::kPut;
    h.payload_len = 1ull << 62;
    ASSERT_TRUE(c->SendFrame(h, "").ok());
    EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kResourceExhausted);
    EXPECT_TRUE(c->ClosedByPeer());
  }
  ExpectStillServing();
}

TEST_F(BadInputTest, TruncatedFramesAndVanishingClientsLeaveNoTrace) {
  for (size_t cut : {1, 10, 31, 32, 40}) {
    auto c = ConnectWithHello();
    proto::LookupRequest req;
    req.set_namespace_id(1);
    req.set_keys(std::string(64, 'k'));
    const std::string body = req.SerializeAsString();
    FrameHeader h;
    h.opcode = Opcode::kLookup;
    h.body_len = static_cast<uint32_t>(body.size());
    std::array<std::byte, proto::kFrameHeaderSize> hdr;
    proto::EncodeFrameHeader(h, hdr);
    std::string frame(reinterpret_cast<const char*>(hdr.data()), hdr.size());
    frame += body;
    ASSERT_TRUE(c->SendBytes(std::string_view(frame).substr(0, cut)).ok());
    c.reset();  // the client vanishes mid-frame
  }
  ExpectStillServing();
}

TEST_F(BadInputTest, RequestBeforeHelloAndSecondHelloAreRefused) {
  auto c = Connect();
  proto::StatsRequest req;
  ASSERT_TRUE(c->SendRequest(Opcode::kStats, req).ok());
  EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kFailedPrecondition);
  // The connection stays open: hello now works, a second hello does not.
  EXPECT_TRUE(c->Hello().ok());
  EXPECT_EQ(c->Hello().status().code(), absl::StatusCode::kFailedPrecondition);
  ExpectStillServing();
}

TEST_F(BadInputTest, MalformedBodiesGetAnErrorAndTheConnectionStaysUsable) {
  auto c = ConnectWithHello();
  const uint32_t ns = OpenNamespace(c.get());
  // Not protobuf at all.
  FrameHeader h;
  h.opcode = Opcode::kLookup;
  const std::string junk = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
  h.body_len = static_cast<uint32_t>(junk.size());
  ASSERT_TRUE(c->SendFrame(h, junk).ok());
  EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kInvalidArgument);
  // Keys that are not a whole number of 32-byte keys.
  proto::LookupRequest bad_keys;
  bad_keys.set_namespace_id(ns);
  bad_keys.set_keys(std::string(33, 'k'));
  ASSERT_TRUE(c->SendRequest(Opcode::kLookup, bad_keys).ok());
  EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kInvalidArgument);
  // A namespace that was never opened.
  proto::LookupRequest unknown_ns;
  unknown_ns.set_namespace_id(ns + 100);
  unknown_ns.set_keys(std::string(32, 'k'));
  ASSERT_TRUE(c->SendRequest(Opcode::kLookup, unknown_ns).ok());
  EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kFailedPrecondition);
  // The same connection still works.
  proto::LookupRequest good;
  good.set_namespace_id(ns);
  good.set_keys(std::string(32, 'k'));
  ASSERT_TRUE(c->SendRequest(Opcode::kLookup, good).ok());
  auto f = c->ReadFrame();
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->header.flags & proto::kFlagError);
  proto::LookupReply reply;
  ASSERT_TRUE(reply.ParseFromString(f->body));
  EXPECT_EQ(reply.prefix_blocks(), 0u);
  EXPECT_GE(Stats().server().bad_frames(), 2u);
}

TEST_F(BadInputTest, InlinePutWhosePayloadDisagreesWithItsLengthsIsRejected) {
  auto c = ConnectWithHello();
  const uint32_t ns = OpenNamespace(c.get());
  proto::PutRequest put;
  put.set_namespace_id(ns);
  put.set_keys(std::string(64, 'p'));
  put.add_lengths(4096);
  put.add_lengths(4096);
  ASSERT_TRUE(c->SendRequest(Opcode::kPut, put, std::string(100, 'x')).ok());
  EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kInvalidArgument);
  // The 100 payload bytes were discarded: the stream is still in sync.
  proto::HealthRequest health;
  ASSERT_TRUE(c->SendRequest(Opcode::kHealth, health).ok());
  auto hf = c->ReadFrame();
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_FALSE(hf->header.flags & proto::kFlagError);
  // A block longer than the namespace's block size.
  proto::PutRequest big;
  big.set_namespace_id(ns);
  big.set_keys(std::string(32, 'q'));
  big.add_lengths(8192);
  ASSERT_TRUE(c->SendRequest(Opcode::kPut, big, std::string(8192, 'x')).ok());
  auto f = c->ReadFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  proto::PutReply reply;
  ASSERT_TRUE(reply.ParseFromString(f->body));
  ASSERT_EQ(reply.codes_size(), 1);
  EXPECT_EQ(reply.codes(0), static_cast<int>(absl::StatusCode::kInvalidArgument));
  ExpectStillServing();
}

TEST_F(BadInputTest, ManyMisbehavingClientsDoNotDisturbAGoodOne) {
  std::atomic<bool> stop{false};
  std::thread attackers([&] {
    std::mt19937_64 rng(42);
    while (!stop.load()) {
      auto c = RawConnection::ConnectUnix(daemon_->socket_path());
      if (!c.ok()) continue;
      std::string junk(rng() % 200, '\0');
      for (char& ch : junk) ch = static_cast<char>(rng());
      if (rng() % 2) {
        // A valid header start so that parsing goes deeper.
        junk.insert(0, "KVTR\x01\x00", 6);
      }
      (void)(*c)->SendBytes(junk);
    }
  });
  auto good = ConnectWithHello();
  const uint32_t ns = OpenNamespace(good.get());
  for (int i = 0; i < 200; ++i) {
    proto::PutRequest put;
    put.set_namespace_id(ns);
    std::string key(32, '\0');
    key[0] = static_cast<char>(i);
    key[1] = static_cast<char>(i >> 8);
    put.set_keys(key);
    put.add_lengths(4096);
    const std::string block(4096, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(good->SendRequest(Opcode::kPut, put, block).ok());
    auto pf = good->ReadFrame();
    ASSERT_TRUE(pf.ok()) << pf.status();
    ASSERT_FALSE(pf->header.flags & proto::kFlagError);

    proto::GetRequest get;
    get.set_namespace_id(ns);
    get.set_keys(key);
    ASSERT_TRUE(good->SendRequest(Opcode::kGet, get).ok());
    auto gf = good->ReadFrame();
    ASSERT_TRUE(gf.ok()) << gf.status();
    proto::GetReply reply;
    ASSERT_TRUE(reply.ParseFromString(gf->body));
    ASSERT_EQ(reply.codes(0), 0);
    ASSERT_EQ(gf->payload, block) << "wrong bytes for block " << i;
  }
  stop = true;
  attackers.join();
  ExpectStillServing();
}

TEST_F(BadInputTest, AuthTokenIsEnforced) {
  StartDaemon({.extra_args = {"--auth-token", "s3cret"}});
  auto c = Connect();
  EXPECT_EQ(c->Hello("wrong").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(c->Hello("").status().code(), absl::StatusCode::kUnauthenticated);
  // Nothing but hello is served until the token is right.
  proto::StatsRequest stats;
  ASSERT_TRUE(c->SendRequest(Opcode::kStats, stats).ok());
  EXPECT_EQ(ErrorCode(c->ReadFrame()), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(c->Hello("s3cret").ok());
}

TEST_F(BadInputTest, TcpCarriesPayloadInlineAndRefusesTheArena) {
  StartDaemon({.tcp = true});
  auto c = RawConnection::ConnectTcp(daemon_->tcp_port());
  ASSERT_TRUE(c.ok()) << c.status();
  proto::HelloRequest hello;
  hello.set_protocol_version(proto::kProtocolVersion);
  hello.set_want_shared_arena(true);
  ASSERT_TRUE((*c)->SendRequest(Opcode::kHello, hello).ok());
  auto hf = (*c)->ReadFrame();
  ASSERT_TRUE(hf.ok());
  EXPECT_FALSE(hf->header.flags & proto::kFlagFdAttached) << "no fd can cross TCP";
  const uint32_t ns = OpenNamespace(c->get());
  proto::PutRequest put;
  put.set_namespace_id(ns);
  put.set_keys(std::string(32, 'a'));
  put.add_lengths(10);
  put.set_mode(proto::DATA_SHARED_ARENA);
  ASSERT_TRUE((*c)->SendRequest(Opcode::kPut, put).ok());
  EXPECT_EQ(ErrorCode((*c)->ReadFrame()), absl::StatusCode::kFailedPrecondition);
}

TEST_F(BadInputTest, SigtermShutsDownCleanlyAndRemovesTheSocket) {
  auto c = ConnectWithHello();  // an open connection must not block shutdown
  auto status = daemon_->Stop(SIGTERM);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_FALSE(std::filesystem::exists(daemon_->socket_path()));
}

}  // namespace
}  // namespace kvtier
