#include "socket.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

namespace kvtier::client {
namespace {

using std::chrono::milliseconds;

std::pair<Socket, Socket> Pair() {
  int fds[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {*Socket::Adopt(fds[0], "a"), *Socket::Adopt(fds[1], "b")};
}

TEST(ConsumeIovec, SkipsWholeAndPartialEntries) {
  char a[4], b[0], c[8];
  std::vector<iovec> v = {{a, 4}, {b, 0}, {c, 8}};
  auto rest = ConsumeIovec(v, 6);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].iov_base, c + 2);
  EXPECT_EQ(rest[0].iov_len, 6u);
  EXPECT_TRUE(ConsumeIovec(rest, 6).empty());
}

TEST(Socket, ScatterGatherLargerThanSocketBuffers) {
  auto [a, b] = Pair();
  // Several MiB in many pieces: forces partial writes, EAGAIN and more than IOV_MAX entries.
  std::vector<std::vector<std::byte>> pieces(3000);
  for (size_t i = 0; i < pieces.size(); ++i) {
    pieces[i].resize(1 + (i * 977) % 4000);
    for (size_t j = 0; j < pieces[i].size(); ++j) pieces[i][j] = std::byte((i + j) & 0xff);
  }
  std::vector<iovec> out;
  size_t total = 0;
  for (auto& p : pieces) {
    out.push_back({p.data(), p.size()});
    total += p.size();
  }
  std::thread writer([&, &a = a] { ASSERT_TRUE(a.WriteAll(out, milliseconds(5000)).ok()); });
  std::vector<std::byte> got(total);
  ASSERT_TRUE(b.ReadAll(std::span(got), milliseconds(5000)).ok());
  writer.join();
  size_t pos = 0;
  for (auto& p : pieces) {
    ASSERT_EQ(std::memcmp(got.data() + pos, p.data(), p.size()), 0);
    pos += p.size();
  }
}

TEST(Socket, TimeoutAndPeerClose) {
  auto [a, b] = Pair();
  std::byte buf[4];
  auto s = b.ReadAll(std::span(buf), milliseconds(20));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  a = Socket();  // close
  s = b.ReadAll(std::span(buf), milliseconds(1000));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(std::string(s.message()).find("closed the connection"), std::string::npos) << s;
}

TEST(Socket, ReceivesAttachedDescriptor) {
  auto [a, b] = Pair();
  const int memfd = memfd_create("t", MFD_CLOEXEC);
  ASSERT_GE(memfd, 0);
  char byte = 'x';
  iovec v{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &v;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &memfd, sizeof(int));
  ASSERT_EQ(sendmsg(a.fd(), &msg, 0), 1);
  close(memfd);

  std::byte got;
  int fd = -1;
  ASSERT_TRUE(b.ReadAll(std::span(&got, 1), milliseconds(1000), &fd).ok());
  EXPECT_EQ(got, std::byte('x'));
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ftruncate(fd, 4096), 0);  // a real, usable descriptor
  close(fd);
}

TEST(Socket, ConnectFailureNamesTheCauseAndHint) {
  auto e = ParseEndpoint("unix:///nonexistent-dir/x.sock");
  ASSERT_TRUE(e.ok());
  auto s = Socket::Connect(*e, milliseconds(100));
  ASSERT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  const std::string msg(s.status().message());
  EXPECT_NE(msg.find("cannot connect to unix:///nonexistent-dir/x.sock"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("is kvtierd running?"), std::string::npos) << msg;
}

}  // namespace
}  // namespace kvtier::client
