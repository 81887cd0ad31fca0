// MailboxClient against a fake daemon in a thread of this process, sharing a memfd: the
// doorbell rung only when the daemon is not polling, replies and error replies read back,
// sleeping callers woken, and the failures that break the mailbox (a reply overrunning its
// area, a dead peer, a timeout). The real daemon's side is tests/integration/mailbox_test.cc.
#include "mailbox_client.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "kvtier/proto/mailbox.h"
#include "kvtier/proto/messages.h"

namespace kvtier::client {
namespace {

using proto::MailboxWord;
using proto::MailboxWords;

constexpr size_t kSize = 64 << 10;

proto::MailboxInfo Info() {
  proto::MailboxInfo info;
  info.set_size_bytes(kSize);
  info.set_request_offset(4096);
  info.set_request_capacity(16 << 10);
  info.set_reply_offset(4096 + (16 << 10));
  info.set_reply_capacity(kSize - 4096 - (16 << 10));
  return info;
}

// The daemon's end: its own mapping of the memfd, answering with `answer(request)`.
class FakeDaemon {
 public:
  FakeDaemon() {
    fd_ = memfd_create("mailbox-test", MFD_CLOEXEC);
    EXPECT_EQ(ftruncate(fd_, kSize), 0);
    base_ =
        static_cast<std::byte*>(mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0));
  }
  ~FakeDaemon() {
    Stop();
    munmap(base_, kSize);
    if (fd_ >= 0) close(fd_);
  }
  // A descriptor for the client (which closes it).
  int ClientFd() const { return dup(fd_); }
  void SetPolling(bool p) { MailboxWord(base_, MailboxWords::kDaemonPolling).store(p ? 1 : 0); }

  // Serves requests in a thread until Stop(): `status` 0 answers with a LookupReply of
  // prefix_blocks = number of keys, else an ErrorReply of that code; `len_override` (if not 0)
  // is written as the reply length instead of the real one.
  void Run(uint32_t status, uint32_t len_override = 0, int delay_ms = 0) {
    thread_ = std::thread([=, this] {
      uint32_t served = 0;
      while (!stop_.load()) {
        const uint32_t seq = MailboxWord(base_, MailboxWords::kRequestSeq).load();
        if (seq == served) {
          std::this_thread::yield();
          continue;
        }
        served = seq;
        if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        const uint32_t len = MailboxWord(base_, MailboxWords::kRequestLen).load();
        proto::LookupRequest req;
        EXPECT_TRUE(
            proto::ParseBody(std::string_view(reinterpret_cast<char*>(base_ + 4096), len), &req)
                .ok());
        std::string body;
        if (status == 0) {
          proto::LookupReply reply;
          reply.set_prefix_blocks(static_cast<uint32_t>(req.keys().size() / 32));
          body = reply.SerializeAsString();
        } else {
          proto::ErrorReply e;
          e.set_code(static_cast<int32_t>(status));
          e.set_message("namespace 9 was never opened");
          body = e.SerializeAsString();
        }
        std::memcpy(base_ + Info().reply_offset(), body.data(), body.size());
        MailboxWord(base_, MailboxWords::kReplyStatus).store(status);
        MailboxWord(base_, MailboxWords::kReplyLen)
            .store(len_override != 0 ? len_override : static_cast<uint32_t>(body.size()));
        MailboxWord(base_, MailboxWords::kReplySeq).store(seq);
        if (MailboxWord(base_, MailboxWords::kClientWaiting).load() != 0) {
          proto::MailboxWakeReplyWaiter(base_);
        }
      }
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

proto::LookupRequest Lookup(size_t keys) {
  proto::LookupRequest r;
  r.set_namespace_id(9);
  r.set_keys(std::string(keys * 32, 'k'));
  return r;
}

TEST(MailboxClientTest, RepliesAndTheDoorbell) {
  FakeDaemon daemon;
  auto m = MailboxClient::Map(daemon.ClientFd(), Info());
  ASSERT_TRUE(m.ok()) << m.status();
  daemon.Run(0);
  int rings = 0;
  auto ring = [&] {
    ++rings;
    return absl::OkStatus();
  };
  auto alive = [] { return false; };
  // Not polling: every request rings; a spinning and a sleeping caller both get the reply.
  for (auto spin : {std::chrono::microseconds(0), std::chrono::microseconds(200)}) {
    for (size_t keys : {1, 7, 64}) {
      proto::LookupReply reply;
      ASSERT_TRUE(
          (*m)->Call(proto::Opcode::kLookup, Lookup(keys), &reply, {.spin = spin}, ring, alive)
              .ok());
      EXPECT_EQ(reply.prefix_blocks(), keys);
    }
  }
  EXPECT_EQ(rings, 6);
  // Polling: no doorbell.
  daemon.SetPolling(true);
  proto::LookupReply reply;
  ASSERT_TRUE((*m)->Call(proto::Opcode::kLookup, Lookup(3), &reply, {}, ring, alive).ok());
  EXPECT_EQ(reply.prefix_blocks(), 3u);
  EXPECT_EQ(rings, 6);
  // A body larger than the request area is refused before anything is written.
  EXPECT_TRUE(absl::IsInvalidArgument(
      (*m)->Call(proto::Opcode::kLookup, Lookup(1000), &reply, {}, ring, alive)));
  EXPECT_FALSE((*m)->broken());
}

TEST(MailboxClientTest, AnErrorReplyIsTheDaemonsStatusAndKeepsTheMailbox) {
  FakeDaemon daemon;
  auto m = MailboxClient::Map(daemon.ClientFd(), Info());
  ASSERT_TRUE(m.ok()) << m.status();
  daemon.Run(static_cast<uint32_t>(absl::StatusCode::kFailedPrecondition));
  proto::LookupReply reply;
  absl::Status s = (*m)->Call(
      proto::Opcode::kLookup, Lookup(2), &reply, {}, [] { return absl::OkStatus(); },
      [] { return false; });
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(s.message().find("never opened"), std::string::npos) << s;
  EXPECT_FALSE((*m)->broken());
}

TEST(MailboxClientTest, AReplyPastItsAreaBreaksTheMailbox) {
  FakeDaemon daemon;
  auto m = MailboxClient::Map(daemon.ClientFd(), Info());
  ASSERT_TRUE(m.ok()) << m.status();
  daemon.Run(0, /*len_override=*/Info().reply_capacity() + 1);
  proto::LookupReply reply;
  absl::Status s = (*m)->Call(
      proto::Opcode::kLookup, Lookup(2), &reply, {}, [] { return absl::OkStatus(); },
      [] { return false; });
  EXPECT_TRUE(absl::IsInternal(s)) << s;
  EXPECT_TRUE((*m)->broken());
  EXPECT_TRUE(absl::IsUnavailable((*m)->Call(
      proto::Opcode::kLookup, Lookup(2), &reply, {}, [] { return absl::OkStatus(); },
      [] { return false; })));
}

TEST(MailboxClientTest, ADeadPeerOrNoReplyEndsTheWait) {
  FakeDaemon daemon;  // never answers
  {
    auto m = MailboxClient::Map(daemon.ClientFd(), Info());
    ASSERT_TRUE(m.ok()) << m.status();
    int checks = 0;
    proto::LookupReply reply;
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status s = (*m)->Call(
        proto::Opcode::kLookup, Lookup(1), &reply, {.timeout = std::chrono::seconds(30)},
        [] { return absl::OkStatus(); }, [&] { return ++checks >= 3; });
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
    EXPECT_TRUE((*m)->broken());
  }
  {
    auto m = MailboxClient::Map(daemon.ClientFd(), Info());
    ASSERT_TRUE(m.ok()) << m.status();
    proto::LookupReply reply;
    absl::Status s = (*m)->Call(
        proto::Opcode::kLookup, Lookup(1), &reply, {.timeout = std::chrono::milliseconds(120)},
        [] { return absl::OkStatus(); }, [] { return false; });
    EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  }
  {
    // A doorbell that cannot be sent fails the call.
    auto m = MailboxClient::Map(daemon.ClientFd(), Info());
    ASSERT_TRUE(m.ok()) << m.status();
    proto::LookupReply reply;
    absl::Status s = (*m)->Call(
        proto::Opcode::kLookup, Lookup(1), &reply, {},
        [] { return absl::UnavailableError("socket closed"); }, [] { return false; });
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  }
}

TEST(MailboxClientTest, InconsistentGeometryIsRefused) {
  FakeDaemon daemon;
  proto::MailboxInfo overlapping = Info();
  overlapping.set_reply_offset(overlapping.request_offset() + 16);
  EXPECT_TRUE(absl::IsInvalidArgument(MailboxClient::Map(daemon.ClientFd(), overlapping).status()));
  proto::MailboxInfo outside = Info();
  outside.set_reply_capacity(kSize);
  EXPECT_TRUE(absl::IsInvalidArgument(MailboxClient::Map(daemon.ClientFd(), outside).status()));
  proto::MailboxInfo on_the_words = Info();
  on_the_words.set_request_offset(0);
  EXPECT_TRUE(
      absl::IsInvalidArgument(MailboxClient::Map(daemon.ClientFd(), on_the_words).status()));
}

}  // namespace
}  // namespace kvtier::client
