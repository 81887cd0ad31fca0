// Request mailboxes through the real kvtierd (protocol.md 7.4): lookups answered in shared
// memory with the daemon's threads polling and with them asleep (doorbell only), the same
// answers as over the socket, many clients at once, lookups too large for the mailbox, a daemon
// with mailboxes off, a daemon that dies under a waiting client, and a raw client that abuses
// its mailbox (lengths past the area, garbage bodies, unsupported opcodes, stray doorbells)
// without hurting anyone else.
#include "kvtier/proto/mailbox.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <thread>

#include "kvtier/client/client.h"
#include "kvtier/proto/messages.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/daemon_test.h"
#include "tests/testing/raw_connection.h"
#include "tests/testing/seeded_blocks.h"

namespace kvtier {
namespace {

using client::Client;
using client::ClientOptions;
using client::NamespaceHandle;
using testing::DaemonOptions;
using testing::DaemonProcess;
using testing::RawConnection;

constexpr uint64_t kBlockBytes = 4096;

NamespaceDescriptor Descriptor() { return testing::TestDescriptor("mailbox-test", kBlockBytes); }

// Keys of chain `chain`: distinct chains never share a key.
std::vector<BlockKey> ChainKeys(uint64_t chain, size_t n) {
  std::vector<BlockKey> keys;
  for (size_t i = 0; i < n; ++i) keys.push_back(testing::SeededKey(chain * 1'000'003 + i));
  return keys;
}

class MailboxTest : public ::testing::TestWithParam<int> {
 protected:
  // GetParam(): the daemon's busy_poll_us. 50: its threads poll the mailboxes; 0: they sleep,
  // and every request rings the doorbell.
  void Start(std::vector<std::string> extra = {}) {
    DaemonOptions options;
    options.dram_capacity = "64MiB";
    options.tcp = true;
    options.extra_args = {"--busy-poll-us", std::to_string(GetParam())};
    options.extra_args.insert(options.extra_args.end(), extra.begin(), extra.end());
    auto d = DaemonProcess::Start(options);
    if (absl::IsNotFound(d.status())) GTEST_SKIP() << d.status();
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
  }

  std::unique_ptr<Client> Connect(bool mailbox = true, std::chrono::microseconds spin = {}) {
    ClientOptions o;
    o.use_request_mailbox = mailbox;
    o.busy_poll = spin;
    auto c = Client::Connect(daemon_->unix_uri(), o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Puts the first `n` blocks of chain `chain`.
  void PutChain(Client& c, const NamespaceHandle& ns, uint64_t chain, size_t n) {
    const std::vector<BlockKey> keys = ChainKeys(chain, n);
    std::vector<std::byte> bytes(n * kBlockBytes, std::byte{0x5a});
    std::vector<std::span<const std::byte>> blocks;
    for (size_t i = 0; i < n; ++i) {
      blocks.push_back(std::span<const std::byte>(bytes).subspan(i * kBlockBytes, kBlockBytes));
    }
    auto put = c.Put(ns, keys, blocks);
    ASSERT_TRUE(put.ok()) << put.status();
    for (const absl::Status& s : *put) ASSERT_TRUE(s.ok()) << s;
  }

  proto::ServerStats Server(Client& c) {
    auto stats = c.Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? stats->server() : proto::ServerStats();
  }

  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_P(MailboxTest, LookupsThroughTheMailboxAnswerAsTheSocketDoes) {
  Start();
  if (!daemon_) return;
  auto mailbox = Connect(true);
  auto socket = Connect(false);
  ASSERT_TRUE(mailbox && socket);
  EXPECT_TRUE(mailbox->request_mailbox());
  EXPECT_FALSE(socket->request_mailbox());
  auto ns = mailbox->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok()) << ns.status();
  PutChain(*mailbox, *ns, 1, 40);

  const proto::ServerStats before = Server(*socket);
  EXPECT_EQ(before.mailboxes_active(), 1u);
  // Whole prefix, a prefix that ends inside the query, a miss at the root, an empty query.
  std::vector<BlockKey> longer = ChainKeys(1, 64);
  std::vector<BlockKey> other = ChainKeys(2, 8);
  const std::vector<std::pair<std::vector<BlockKey>, uint32_t>> queries = {
      {ChainKeys(1, 40), 40}, {longer, 40}, {other, 0}, {ChainKeys(1, 1), 1}};
  for (const auto& [keys, expected] : queries) {
    auto a = mailbox->Lookup(*ns, keys);
    auto b = socket->Lookup(*ns, keys);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->prefix_blocks, expected);
    EXPECT_EQ(a->prefix_blocks, b->prefix_blocks);
    EXPECT_EQ(a->tiers, b->tiers);
    for (proto::Tier t : a->tiers) EXPECT_EQ(t, proto::TIER_DRAM);
  }
  const proto::ServerStats after = Server(*socket);
  EXPECT_EQ(after.mailbox_requests() - before.mailbox_requests(), queries.size());

  // (Error replies through the mailbox: AbuseOfAMailboxHurtsOnlyItsOwnClient here, and
  // client_mailbox_test for the client's reading of them.)

  // A client that goes away takes its mailbox with it.
  mailbox.reset();
  for (int i = 0; i < 100 && Server(*socket).mailboxes_active() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Server(*socket).mailboxes_active(), 0u);
}

TEST_P(MailboxTest, ASleepingClientIsWokenAndALargeLookupTakesTheSocket) {
  Start();
  if (!daemon_) return;
  auto c = Connect(true, std::chrono::microseconds(0));  // sleeps on the futex at once
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->request_mailbox());
  auto ns = c->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok()) << ns.status();
  PutChain(*c, *ns, 3, 16);
  for (int i = 0; i < 200; ++i) {
    auto r = c->Lookup(*ns, ChainKeys(3, 16));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->prefix_blocks, 16u);
  }
  // 4,000 keys are 128 KB of request body, more than the mailbox's area: the socket takes it.
  const uint64_t before = Server(*c).mailbox_requests();
  std::vector<BlockKey> many = ChainKeys(3, 16);
  const std::vector<BlockKey> rest = ChainKeys(4, 4000 - 16);
  many.insert(many.end(), rest.begin(), rest.end());
  auto r = c->Lookup(*ns, many);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prefix_blocks, 16u);
  EXPECT_EQ(Server(*c).mailbox_requests(), before);
}

TEST_P(MailboxTest, ManyClientsAtOnce) {
  Start();
  if (!daemon_) return;
  constexpr int kClients = 6;
  constexpr int kLookups = 1500;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i)
    clients.push_back(Connect(true, std::chrono::microseconds(20)));
  for (auto& c : clients) ASSERT_TRUE(c && c->request_mailbox());
  auto ns = clients[0]->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok()) << ns.status();
  for (int i = 0; i < kClients; ++i) PutChain(*clients[i], *ns, 10 + i, 8 + i);
  const uint64_t before = Server(*clients[0]).mailbox_requests();
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      // Each asks for its own chain, two blocks longer than what is cached.
      const std::vector<BlockKey> keys = ChainKeys(10 + i, 10 + i);
      for (int n = 0; n < kLookups; ++n) {
        auto r = clients[i]->Lookup(*ns, keys);
        if (!r.ok() || r->prefix_blocks != static_cast<uint32_t>(8 + i)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(Server(*clients[0]).mailbox_requests() - before, uint64_t{kClients} * kLookups);
}

TEST_P(MailboxTest, OffInTheConfigMeansTheSocket) {
  const std::string config = "/tmp/kvtier-mailbox-off-" + std::to_string(getpid()) + ".toml";
  { std::ofstream(config) << "[server]\nrequest_mailbox = false\n"; }
  Start({"--config", config});
  ::unlink(config.c_str());
  if (!daemon_) return;
  auto c = Connect(true);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->request_mailbox());
  auto ns = c->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok()) << ns.status();
  PutChain(*c, *ns, 5, 4);
  auto r = c->Lookup(*ns, ChainKeys(5, 4));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prefix_blocks, 4u);
  EXPECT_EQ(Server(*c).mailbox_requests(), 0u);
  // A raw client asking anyway is refused, and the connection goes on.
  auto raw = RawConnection::ConnectUnix(daemon_->socket_path());
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_TRUE((*raw)->Hello().ok());
  ASSERT_TRUE(
      (*raw)->SendRequest(proto::Opcode::kAttachMailbox, proto::AttachMailboxRequest()).ok());
  auto f = (*raw)->ReadFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->header.flags & proto::kFlagError);
}

TEST_P(MailboxTest, ADeadDaemonIsNoticedQuickly) {
  Start();
  if (!daemon_) return;
  ClientOptions o;
  o.io_timeout = std::chrono::milliseconds(20'000);
  auto c = Client::Connect(daemon_->unix_uri(), o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->request_mailbox());
  auto ns = (*c)->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok()) << ns.status();
  ASSERT_TRUE((*c)->Lookup(*ns, ChainKeys(6, 4)).ok());
  ASSERT_TRUE(daemon_->Stop(SIGKILL).ok());
  const auto t0 = std::chrono::steady_clock::now();
  auto r = (*c)->Lookup(*ns, ChainKeys(6, 4));
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_LT(waited, std::chrono::seconds(2)) << "the io_timeout is 20 s; the socket's hang-up "
                                                "should end the wait within ~50 ms";
  // Later calls fail at once, like after any broken connection.
  EXPECT_FALSE((*c)->Lookup(*ns, ChainKeys(6, 4)).ok());
}

// A client's view of its raw mailbox, for writing what no real client would.
class RawMailbox {
 public:
  RawMailbox(int fd, const proto::MailboxInfo& info) : info_(info) {
    void* p = mmap(nullptr, info.size_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    base_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~RawMailbox() {
    if (base_ != nullptr) munmap(base_, info_.size_bytes());
  }
  bool ok() const { return base_ != nullptr; }

  // Writes a request (body `body`, declared length `len`), rings, and waits for its reply.
  absl::StatusOr<std::pair<uint32_t, std::string>> Call(RawConnection& raw, uint32_t op,
                                                        const std::string& body, uint32_t len) {
    std::memcpy(base_ + info_.request_offset(), body.data(),
                std::min<size_t>(body.size(), info_.request_capacity()));
    proto::MailboxWord(base_, proto::MailboxWords::kRequestOpcode).store(op);
    proto::MailboxWord(base_, proto::MailboxWords::kRequestLen).store(len);
    proto::MailboxWord(base_, proto::MailboxWords::kRequestSeq).store(++seq_);
    proto::FrameHeader h;
    h.opcode = proto::Opcode::kMailboxDoorbell;
    h.request_id = 100 + seq_;
    if (auto s = raw.SendFrame(h, ""); !s.ok()) return s;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (proto::MailboxWord(base_, proto::MailboxWords::kReplySeq).load() != seq_) {
      if (std::chrono::steady_clock::now() > deadline) {
        return absl::DeadlineExceededError("no mailbox reply");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    const uint32_t n = proto::MailboxWord(base_, proto::MailboxWords::kReplyLen).load();
    return std::make_pair(
        proto::MailboxWord(base_, proto::MailboxWords::kReplyStatus).load(),
        std::string(reinterpret_cast<const char*>(base_ + info_.reply_offset()), n));
  }

 private:
  std::byte* base_ = nullptr;
  proto::MailboxInfo info_;
  uint32_t seq_ = 0;
};

TEST_P(MailboxTest, AbuseOfAMailboxHurtsOnlyItsOwnClient) {
  Start();
  if (!daemon_) return;
  auto good = Connect(true);
  ASSERT_TRUE(good && good->request_mailbox());
  auto ns = good->OpenNamespace(Descriptor());
  ASSERT_TRUE(ns.ok()) << ns.status();
  PutChain(*good, *ns, 7, 8);

  auto raw = RawConnection::ConnectUnix(daemon_->socket_path());
  ASSERT_TRUE(raw.ok()) << raw.status();
  auto hello = (*raw)->Hello();
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_TRUE(hello->mailbox_offered());
  // A doorbell before any mailbox: counted, no reply; the next request's reply comes next.
  const uint64_t bad_before = Server(*good).bad_frames();
  proto::FrameHeader ring;
  ring.opcode = proto::Opcode::kMailboxDoorbell;
  ASSERT_TRUE((*raw)->SendFrame(ring, "").ok());
  ASSERT_TRUE(
      (*raw)
          ->SendRequest(proto::Opcode::kAttachMailbox, proto::AttachMailboxRequest(), {}, 42)
          .ok());
  int fd = -1;
  auto f = (*raw)->ReadFrame(5000, &fd);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->header.request_id, 42u);
  ASSERT_FALSE(f->header.flags & proto::kFlagError);
  ASSERT_GE(fd, 0);
  proto::MailboxInfo info;
  ASSERT_TRUE(proto::ParseBody(f->body, &info).ok());
  // The daemon sealed it: a client cannot shrink it under the daemon's mapping.
  EXPECT_NE(::ftruncate(fd, 0), 0);
  RawMailbox box(fd, info);
  ASSERT_TRUE(box.ok());

  // A declared length past the area.
  auto r = box.Call(**raw, static_cast<uint32_t>(proto::Opcode::kLookup), "",
                    info.request_capacity() + 1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first, static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
  proto::ErrorReply e;
  ASSERT_TRUE(proto::ParseBody(r->second, &e).ok());
  EXPECT_NE(e.message().find("larger than the request area"), std::string::npos) << e.message();
  // Garbage that is no LookupRequest.
  const std::string garbage = "\xff\xff\xff\xff\xff\x01garbage";
  r = box.Call(**raw, static_cast<uint32_t>(proto::Opcode::kLookup), garbage, garbage.size());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first, static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
  // An opcode the mailbox does not serve.
  r = box.Call(**raw, static_cast<uint32_t>(proto::Opcode::kGet), "", 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first, static_cast<uint32_t>(absl::StatusCode::kUnimplemented));
  // And a good lookup through the same abused mailbox still works.
  proto::LookupRequest lookup;
  lookup.set_namespace_id(ns->id);
  lookup.set_keys(std::string(PackedFromKeys(ChainKeys(7, 8))));
  r = box.Call(**raw, static_cast<uint32_t>(proto::Opcode::kLookup), lookup.SerializeAsString(),
               lookup.ByteSizeLong());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->first, 0u);
  proto::LookupReply reply;
  ASSERT_TRUE(proto::ParseBody(r->second, &reply).ok());
  EXPECT_EQ(reply.prefix_blocks(), 8u);

  // Three bad frames: the stray doorbell, the overlong length, the garbage body.
  EXPECT_EQ(Server(*good).bad_frames() - bad_before, 3u);
  // A doorbell with a payload is malformed: an error reply on the socket.
  proto::FrameHeader ring_payload;
  ring_payload.opcode = proto::Opcode::kMailboxDoorbell;
  ring_payload.payload_len = 3;
  ASSERT_TRUE((*raw)->SendFrame(ring_payload, "", "abc").ok());
  f = (*raw)->ReadFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->header.flags & proto::kFlagError);
  // Everyone else was served all along.
  auto fine = good->Lookup(*ns, ChainKeys(7, 8));
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(fine->prefix_blocks, 8u);
}

TEST_P(MailboxTest, TcpConnectionsAreNotOfferedOne) {
  Start();
  if (!daemon_) return;
  auto raw = RawConnection::ConnectTcp(daemon_->tcp_port());
  ASSERT_TRUE(raw.ok()) << raw.status();
  auto hello = (*raw)->Hello();
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_FALSE(hello->mailbox_offered());
  ASSERT_TRUE(
      (*raw)->SendRequest(proto::Opcode::kAttachMailbox, proto::AttachMailboxRequest()).ok());
  auto f = (*raw)->ReadFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->header.flags & proto::kFlagError);
  auto c = Client::Connect(daemon_->tcp_uri(), {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE((*c)->request_mailbox());
}

INSTANTIATE_TEST_SUITE_P(BusyPoll, MailboxTest, ::testing::Values(0, 50),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return p.param == 0 ? std::string("DaemonSleeps")
                                               : std::string("DaemonPolls");
                         });

}  // namespace
}  // namespace kvtier
