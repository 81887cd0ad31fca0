// Session against a scripted fake daemon on a socketpair: framing, Hello with an attached arena
// descriptor, both data paths of put and get, the seqlock and lease rules, and how protocol
// violations and error replies are handled. The fake runs on its own thread and checks what
// the client sends; the test body checks what the client reports.
#include "session.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <functional>
#include <optional>
#include <thread>

#include "kvtier/proto/messages.h"

namespace kvtier::client {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kArenaBytes = 1 << 20;
constexpr uint32_t kPageBytes = 4096;
constexpr uint64_t kTableBytes = 4096;  // 256 pages * 8 bytes = 2 KiB, padded to a page

// The daemon side of the socketpair: blocking reads of request frames and scripted replies.
class FakePeer {
 public:
  struct Request {
    proto::FrameHeader header;
    std::string body;
    std::string payload;
  };

  explicit FakePeer(int fd) : fd_(fd) {}
  ~FakePeer() { close(fd_); }

  Request Read() {
    Request r;
    std::array<std::byte, proto::kFrameHeaderSize> raw;
    ReadExact(raw.data(), raw.size());
    auto h = proto::DecodeFrameHeader(raw, proto::Limits());
    EXPECT_TRUE(h.ok()) << h.status();
    r.header = *h;
    r.body.resize(h->body_len);
    ReadExact(r.body.data(), r.body.size());
    r.payload.resize(h->payload_len);
    ReadExact(r.payload.data(), r.payload.size());
    return r;
  }

  template <typename M>
  M Parse(const Request& r, proto::Opcode expected) {
    EXPECT_EQ(r.header.opcode, expected);
    EXPECT_EQ(r.header.flags, 0u);
    M m;
    EXPECT_TRUE(proto::ParseBody(r.body, &m).ok());
    return m;
  }

  void Reply(const Request& to, const google::protobuf::MessageLite& body,
             std::string_view payload = {}, int attach_fd = -1, uint32_t extra_flags = 0,
             std::optional<uint64_t> request_id = std::nullopt) {
    std::string encoded = *proto::SerializeBody(body, proto::Limits());
    proto::FrameHeader h;
    h.opcode = to.header.opcode;
    h.flags =
        proto::kFlagReply | extra_flags | (attach_fd >= 0 ? uint32_t{proto::kFlagFdAttached} : 0u);
    h.body_len = encoded.size();
    h.request_id = request_id.value_or(to.header.request_id);
    h.payload_len = payload.size();
    std::array<std::byte, proto::kFrameHeaderSize> raw;
    proto::EncodeFrameHeader(h, raw);
    std::string frame(reinterpret_cast<const char*>(raw.data()), raw.size());
    frame += encoded;
    frame += payload;
    iovec v{frame.data(), frame.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &v;
    msg.msg_iovlen = 1;
    if (attach_fd >= 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &attach_fd, sizeof(int));
    }
    size_t sent = 0;
    while (sent < frame.size()) {
      const ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      sent += n;
      v.iov_base = frame.data() + sent;
      v.iov_len = frame.size() - sent;
      msg.msg_control = nullptr;
      msg.msg_controllen = 0;
    }
  }

  void ReplyError(const Request& to, absl::Status s) {
    Reply(to, proto::ErrorReplyFromStatus(s), {}, -1, proto::kFlagError);
  }

  // Answers Hello; with an arena when `arena_fd` >= 0. `max_keys` 0 keeps the default.
  void ServeHello(int arena_fd, uint32_t max_keys = 0) {
    Request r = Read();
    auto hello = Parse<proto::HelloRequest>(r, proto::Opcode::kHello);
    EXPECT_EQ(hello.protocol_version(), proto::kProtocolVersion);
    EXPECT_EQ(hello.auth_token(), "secret");
    proto::HelloReply reply;
    reply.set_protocol_version(proto::kProtocolVersion);
    reply.set_server_version("fake");
    reply.set_max_keys_per_request(max_keys);
    if (arena_fd >= 0) {
      reply.mutable_arena()->set_size_bytes(kArenaBytes);
      reply.mutable_arena()->set_generation_table_bytes(kTableBytes);
      reply.mutable_arena()->set_page_bytes(kPageBytes);
    }
    Reply(r, reply, {}, arena_fd);
  }

  void ServeOpenNamespace(uint32_t id) {
    Request r = Read();
    auto req = Parse<proto::OpenNamespaceRequest>(r, proto::Opcode::kOpenNamespace);
    EXPECT_EQ(req.namespace_descriptor().model_id(), "m");
    proto::OpenNamespaceReply reply;
    reply.set_namespace_id(id);
    reply.set_key_seed(std::string(32, '\x5a'));
    Reply(r, reply);
  }

 private:
  void ReadExact(void* p, size_t n) {
    auto* c = static_cast<char*>(p);
    while (n > 0) {
      const ssize_t got = read(fd_, c, n);
      ASSERT_GT(got, 0) << "client hung up";
      c += got;
      n -= got;
    }
  }
  int fd_;
};

// An arena that the fake daemon maps, with the fd to hand over.
struct FakeArena {
  FakeArena() {
    fd = memfd_create("fake-arena", MFD_CLOEXEC);
    EXPECT_EQ(ftruncate(fd, kArenaBytes), 0);
    base = static_cast<std::byte*>(
        mmap(nullptr, kArenaBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  }
  ~FakeArena() {
    munmap(base, kArenaBytes);
    close(fd);
  }
  uint64_t* generations() { return reinterpret_cast<uint64_t*>(base); }
  int fd;
  std::byte* base;
};

std::vector<std::byte> Block(size_t n, int seed) {
  std::vector<std::byte> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = std::byte((i * 31 + seed) & 0xff);
  return b;
}

BlockKey Key(uint8_t k) {
  BlockKey key;
  key.bytes.fill(k);
  return key;
}

class SessionTest : public ::testing::Test {
 protected:
  // Runs `script` as the daemon and connects a Session to it (Hello is part of the script).
  std::unique_ptr<Session> Start(std::function<void(FakePeer&)> script, bool want_arena) {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    peer_ = std::thread([fd = fds[1], script = std::move(script)] {
      FakePeer peer(fd);
      script(peer);
    });
    ClientOptions options;
    options.auth_token = "secret";
    options.io_timeout = milliseconds(5000);
    auto session =
        Session::Handshake(*Socket::Adopt(fds[0], "unix:///fake.sock"), want_arena, options);
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? *std::move(session) : nullptr;
  }
  void TearDown() override {
    if (peer_.joinable()) peer_.join();
  }

  NamespaceDescriptor Descriptor(uint64_t block_bytes) {
    NamespaceDescriptor d;
    d.model_id = "m";
    d.dtype = "bf16";
    d.block_tokens = 16;
    d.block_bytes = block_bytes;
    return d;
  }

  std::thread peer_;
};

TEST_F(SessionTest, InlinePutAndGetWithTooSmallBuffer) {
  const auto b0 = Block(100, 1), b1 = Block(60, 2);
  auto session = Start(
      [&](FakePeer& p) {
        p.ServeHello(-1);
        p.ServeOpenNamespace(7);
        auto r = p.Read();
        auto put = p.Parse<proto::PutRequest>(r, proto::Opcode::kPut);
        EXPECT_EQ(put.namespace_id(), 7u);
        EXPECT_EQ(put.mode(), proto::DATA_INLINE);
        ASSERT_EQ(put.lengths_size(), 2);
        EXPECT_EQ(r.payload.size(), 160u);
        EXPECT_EQ(std::memcmp(r.payload.data(), b0.data(), 100), 0);
        EXPECT_EQ(std::memcmp(r.payload.data() + 100, b1.data(), 60), 0);
        proto::PutReply pr;
        pr.add_codes(0);
        pr.add_codes(static_cast<int>(absl::StatusCode::kAlreadyExists));
        p.Reply(r, pr);

        r = p.Read();
        auto get = p.Parse<proto::GetRequest>(r, proto::Opcode::kGet);
        EXPECT_EQ(get.mode(), proto::DATA_INLINE);
        proto::GetReply gr;
        for (int code : {0, 5, 0}) gr.add_codes(code);
        for (int len : {100, 0, 60}) gr.add_lengths(len);
        gr.set_tiers(std::string("\x02\x00\x02", 3));
        std::string payload(reinterpret_cast<const char*>(b0.data()), 100);
        payload.append(reinterpret_cast<const char*>(b1.data()), 60);
        p.Reply(r, gr, payload);

        r = p.Read();  // the stream must still be in step
        proto::HealthReply hr;
        hr.set_serving(true);
        p.Reply(r, hr);
      },
      /*want_arena=*/false);
  ASSERT_NE(session, nullptr);
  EXPECT_FALSE(session->has_arena());
  auto ns = session->OpenNamespace(Descriptor(128));
  ASSERT_TRUE(ns.ok()) << ns.status();
  EXPECT_EQ(ns->id, 7u);

  const BlockKey keys[] = {Key(1), Key(2)};
  const std::span<const std::byte> blocks[] = {b0, b1};
  auto put = session->Put(*ns, keys, blocks);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE((*put)[0].ok());
  EXPECT_TRUE(absl::IsAlreadyExists((*put)[1]));
  EXPECT_TRUE(IsStored((*put)[1]));

  std::vector<std::byte> o0(128), o1(128), o2(10);  // o2 is too small for the 60-byte block
  const BlockKey gkeys[] = {Key(1), Key(3), Key(2)};
  const std::span<std::byte> outs[] = {o0, o1, o2};
  auto got = session->Get(*ns, gkeys, outs);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*got)[0].status.ok());
  EXPECT_EQ((*got)[0].length, 100u);
  EXPECT_EQ((*got)[0].tier, proto::TIER_DRAM);
  EXPECT_EQ(std::memcmp(o0.data(), b0.data(), 100), 0);
  EXPECT_TRUE(absl::IsNotFound((*got)[1].status));
  EXPECT_TRUE(absl::IsInvalidArgument((*got)[2].status));
  EXPECT_EQ((*got)[2].length, 60u);
  auto health = session->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_TRUE(health->serving());
}

// A daemon running --nvme-write-through answers a put whose NVMe write failed with
// UNAVAILABLE for the block the device failed and ABORTED for the others (all or nothing): the
// statuses must tell the user that, not just "block failed".
TEST_F(SessionTest, WriteThroughFailuresSayWhatHappened) {
  const auto b = Block(100, 5);
  auto session = Start(
      [&](FakePeer& p) {
        p.ServeHello(-1);
        p.ServeOpenNamespace(7);
        auto r = p.Read();
        (void)p.Parse<proto::PutRequest>(r, proto::Opcode::kPut);
        proto::PutReply pr;
        for (absl::StatusCode c : {absl::StatusCode::kAborted, absl::StatusCode::kUnavailable,
                                   absl::StatusCode::kResourceExhausted}) {
          pr.add_codes(static_cast<int>(c));
        }
        p.Reply(r, pr);
      },
      /*want_arena=*/false);
  ASSERT_NE(session, nullptr);
  auto ns = session->OpenNamespace(Descriptor(128));
  ASSERT_TRUE(ns.ok()) << ns.status();
  const BlockKey keys[] = {Key(1), Key(2), Key(3)};
  const std::span<const std::byte> blocks[] = {b, b, b};
  auto put = session->Put(*ns, keys, blocks);
  ASSERT_TRUE(put.ok()) << put.status();
  const absl::Status& aborted = (*put)[0];
  const absl::Status& failed = (*put)[1];
  const absl::Status& full = (*put)[2];
  EXPECT_TRUE(absl::IsAborted(aborted)) << aborted;
  EXPECT_NE(aborted.message().find("all or nothing"), std::string::npos) << aborted;
  EXPECT_TRUE(absl::IsUnavailable(failed)) << failed;
  EXPECT_NE(failed.message().find("NVMe"), std::string::npos) << failed;
  EXPECT_NE(failed.message().find("nothing was stored"), std::string::npos) << failed;
  EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
  EXPECT_NE(full.message().find("NVMe device is full"), std::string::npos) << full;
  for (const absl::Status& s : *put) EXPECT_FALSE(IsStored(s)) << s;
}

TEST_F(SessionTest, ArenaPutCopiesThenCommits) {
  FakeArena arena;
  const auto b0 = Block(5000, 3), b1 = Block(70, 4);
  auto session = Start(
      [&](FakePeer& p) {
        p.ServeHello(arena.fd);
        p.ServeOpenNamespace(1);
        auto r = p.Read();
        auto put = p.Parse<proto::PutRequest>(r, proto::Opcode::kPut);
        EXPECT_EQ(put.mode(), proto::DATA_SHARED_ARENA);
        EXPECT_TRUE(r.payload.empty());
        proto::PutReply pr;
        pr.add_codes(0);
        pr.add_codes(static_cast<int>(absl::StatusCode::kAlreadyExists));
        pr.set_lease_id(42);
        pr.add_offsets(3 * kPageBytes);
        pr.add_offsets(0);
        p.Reply(r, pr);

        r = p.Read();
        auto commit = p.Parse<proto::PutCommitRequest>(r, proto::Opcode::kPutCommit);
        EXPECT_EQ(commit.lease_id(), 42u);
        // The client must have copied the block before committing.
        EXPECT_EQ(std::memcmp(arena.base + 3 * kPageBytes, b0.data(), b0.size()), 0);
        proto::PutCommitReply cr;
        cr.add_codes(0);
        cr.add_codes(0);
        p.Reply(r, cr);

        // Second put: the commit answers one code per reserved block only.
        r = p.Read();
        p.Reply(r, pr);
        r = p.Read();
        p.Parse<proto::PutCommitRequest>(r, proto::Opcode::kPutCommit);
        proto::PutCommitReply expired;
        expired.add_codes(static_cast<int>(absl::StatusCode::kDeadlineExceeded));
        p.Reply(r, expired);
      },
      /*want_arena=*/true);
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(session->has_arena());
  auto ns = session->OpenNamespace(Descriptor(8192));
  ASSERT_TRUE(ns.ok());
  const BlockKey keys[] = {Key(1), Key(2)};
  const std::span<const std::byte> blocks[] = {b0, b1};
  auto put = session->Put(*ns, keys, blocks);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE((*put)[0].ok());
  EXPECT_TRUE(absl::IsAlreadyExists((*put)[1]));

  put = session->Put(*ns, keys, blocks);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE(absl::IsDeadlineExceeded((*put)[0])) << (*put)[0];
  EXPECT_FALSE(IsStored((*put)[0]));
  EXPECT_TRUE(absl::IsAlreadyExists((*put)[1]));
}

TEST_F(SessionTest, ArenaGetVoidsCopiesWhoseGenerationMoved) {
  FakeArena arena;
  const auto b0 = Block(4096, 5), b1 = Block(4096, 6);
  auto session = Start(
      [&](FakePeer& p) {
        p.ServeHello(arena.fd);
        p.ServeOpenNamespace(1);
        std::memcpy(arena.base + 2 * kPageBytes, b0.data(), b0.size());
        std::memcpy(arena.base + 5 * kPageBytes, b1.data(), b1.size());
        arena.generations()[2] = 9;
        arena.generations()[5] = 4;  // evicted and reused since the daemon quoted 3
        for (bool expire : {false, true}) {
          auto r = p.Read();
          p.Parse<proto::GetRequest>(r, proto::Opcode::kGet);
          proto::GetReply gr;
          for (int code : {0, 0, 5}) gr.add_codes(code);
          for (int len : {4096, 4096, 0}) gr.add_lengths(len);
          for (uint64_t off : {2 * kPageBytes, 5 * kPageBytes, 0u}) gr.add_offsets(off);
          for (uint64_t g : {9, 3, 0}) gr.add_generations(g);
          gr.set_lease_id(77);
          p.Reply(r, gr);
          r = p.Read();
          EXPECT_EQ(p.Parse<proto::ReleaseRequest>(r, proto::Opcode::kRelease).lease_id(), 77u);
          proto::ReleaseReply rr;
          rr.set_expired(expire);
          p.Reply(r, rr);
        }
      },
      /*want_arena=*/true);
  ASSERT_NE(session, nullptr);
  auto ns = session->OpenNamespace(Descriptor(4096));
  ASSERT_TRUE(ns.ok());
  std::vector<std::byte> o0(4096), o1(4096), o2(4096);
  const BlockKey keys[] = {Key(1), Key(2), Key(3)};
  const std::span<std::byte> outs[] = {o0, o1, o2};

  auto got = session->Get(*ns, keys, outs);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*got)[0].status.ok()) << (*got)[0].status;
  EXPECT_EQ(o0, b0);
  EXPECT_TRUE(absl::IsUnavailable((*got)[1].status)) << (*got)[1].status;
  EXPECT_TRUE(absl::IsNotFound((*got)[2].status));

  // Same reply, but the lease expired before the release: every copy is void.
  got = session->Get(*ns, keys, outs);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(absl::IsUnavailable((*got)[0].status)) << (*got)[0].status;
  EXPECT_TRUE(absl::IsUnavailable((*got)[1].status));
  EXPECT_TRUE(absl::IsNotFound((*got)[2].status));
}

TEST_F(SessionTest, OutOfRangeArenaOffsetBreaksTheConnectionWithoutWriting) {
  FakeArena arena;
  const auto b0 = Block(100, 7);
  auto session = Start(
      [&](FakePeer& p) {
        p.ServeHello(arena.fd);
        p.ServeOpenNamespace(1);
        auto r = p.Read();
        proto::PutReply pr;
        pr.add_codes(0);
        pr.set_lease_id(1);
        pr.add_offsets(kArenaBytes - 50);  // the block would run past the end
        p.Reply(r, pr);
      },
      /*want_arena=*/true);
  ASSERT_NE(session, nullptr);
  auto ns = session->OpenNamespace(Descriptor(128));
  ASSERT_TRUE(ns.ok());
  const BlockKey keys[] = {Key(1)};
  const std::span<const std::byte> blocks[] = {b0};
  auto put = session->Put(*ns, keys, blocks);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInternal) << put.status();
  EXPECT_TRUE(session->broken());
  EXPECT_EQ(session->Health().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SessionTest, ErrorReplyKeepsConnectionAndWrongRequestIdBreaksIt) {
  auto session = Start(
      [&](FakePeer& p) {
        p.ServeHello(-1);
        auto r = p.Read();
        p.ReplyError(r, absl::PermissionDeniedError("stats need the admin token"));
        r = p.Read();
        proto::HealthReply hr;
        hr.set_serving(true);
        p.Reply(r, hr);
        r = p.Read();
        p.Reply(r, hr, {}, -1, 0, r.header.request_id + 100);
      },
      /*want_arena=*/false);
  ASSERT_NE(session, nullptr);
  auto stats = session->Stats();
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(std::string(stats.status().message()).find("stats need the admin token"),
            std::string::npos)
      << stats.status();
  EXPECT_TRUE(session->Health().ok());
  EXPECT_EQ(session->Health().status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(session->broken());
}

TEST_F(SessionTest, RejectedFrameReplyReportsTheDaemonsReason) {
  auto session = Start(
      [&](FakePeer& p) {
        p.ServeHello(-1);
        auto r = p.Read();
        // protocol.md 6.1: request id 0, opcode hello, then the daemon closes.
        r.header.opcode = proto::Opcode::kHello;
        p.Reply(r, proto::ErrorReplyFromStatus(absl::InvalidArgumentError("bad magic")), {}, -1,
                proto::kFlagError, /*request_id=*/0);
      },
      /*want_arena=*/false);
  ASSERT_NE(session, nullptr);
  auto health = session->Health();
  EXPECT_EQ(health.status().code(), absl::StatusCode::kInvalidArgument) << health.status();
  EXPECT_NE(std::string(health.status().message()).find("bad magic"), std::string::npos);
  EXPECT_TRUE(session->broken());
  EXPECT_EQ(session->Health().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SessionTest, LookupSplitsBatchesAndStopsAtTheFirstGap) {
  auto session = Start(
      [&](FakePeer& p) {
        p.ServeHello(-1, /*max_keys=*/2);
        p.ServeOpenNamespace(1);
        for (uint32_t found : {2u, 1u}) {
          auto r = p.Read();
          auto req = p.Parse<proto::LookupRequest>(r, proto::Opcode::kLookup);
          EXPECT_EQ(req.keys().size(), 64u);
          proto::LookupReply lr;
          lr.set_prefix_blocks(found);
          lr.set_tiers(std::string(found, '\x02'));
          p.Reply(r, lr);
        }
      },
      /*want_arena=*/false);
  ASSERT_NE(session, nullptr);
  auto ns = session->OpenNamespace(Descriptor(128));
  ASSERT_TRUE(ns.ok());
  const BlockKey keys[] = {Key(1), Key(2), Key(3), Key(4), Key(5)};
  auto found = session->Lookup(*ns, keys);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->prefix_blocks, 3u);
  EXPECT_EQ(found->tiers.size(), 3u);
}

TEST_F(SessionTest, HandleFromAnotherConnectionIsReopenedOnce) {
  auto session = Start(
      [&](FakePeer& p) {
        p.ServeHello(-1);
        p.ServeOpenNamespace(3);  // this connection's id differs from the handle's
        for (int i = 0; i < 2; ++i) {
          auto r = p.Read();
          EXPECT_EQ(p.Parse<proto::RemoveRequest>(r, proto::Opcode::kRemove).namespace_id(), 3u);
          proto::RemoveReply rr;
          rr.add_codes(0);
          p.Reply(r, rr);
        }
      },
      /*want_arena=*/false);
  ASSERT_NE(session, nullptr);
  NamespaceHandle foreign;
  foreign.id = 11;
  foreign.key_seed.bytes.fill(0x5a);
  foreign.descriptor = Descriptor(128);
  foreign.block_bytes = 128;
  const BlockKey keys[] = {Key(1)};
  for (int i = 0; i < 2; ++i) {
    auto removed = session->Remove(foreign, keys);
    ASSERT_TRUE(removed.ok()) << removed.status();
    EXPECT_TRUE((*removed)[0].ok());
  }
}

TEST_F(SessionTest, RejectsBadInputBeforeSending) {
  auto session = Start([&](FakePeer& p) { p.ServeHello(-1); }, /*want_arena=*/false);
  ASSERT_NE(session, nullptr);
  NamespaceDescriptor bad = Descriptor(128);
  bad.block_tokens = 0;
  EXPECT_EQ(session->OpenNamespace(bad).status().code(), absl::StatusCode::kInvalidArgument);
  NamespaceHandle ns;
  ns.block_bytes = 10;
  const auto big = Block(11, 0);
  const BlockKey keys[] = {Key(1)};
  const std::span<const std::byte> blocks[] = {big};
  EXPECT_EQ(session->Put(ns, keys, blocks).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(session->Put(ns, keys, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(session->broken());
}

}  // namespace
}  // namespace kvtier::client
