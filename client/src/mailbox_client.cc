#include "mailbox_client.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/proto/mailbox.h"
#include "kvtier/proto/messages.h"

namespace kvtier::client {
namespace {

using proto::MailboxWord;
using proto::MailboxWords;
using Clock = std::chrono::steady_clock;

// How long one sleep on the reply word lasts before the daemon's liveness is checked again.
constexpr auto kSleepSlice = std::chrono::milliseconds(50);

bool InsideMapping(uint64_t offset, uint64_t length, uint64_t size) {
  return offset >= proto::kMailboxHeaderBytes && offset <= size && length <= size - offset;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MailboxClient>> MailboxClient::Map(int fd,
                                                                  const proto::MailboxInfo& info) {
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  const uint64_t size = info.size_bytes();
  const bool disjoint =
      info.request_offset() + uint64_t{info.request_capacity()} <= info.reply_offset() ||
      info.reply_offset() + uint64_t{info.reply_capacity()} <= info.request_offset();
  if (size == 0 || size > (uint64_t{1} << 30) ||
      !InsideMapping(info.request_offset(), info.request_capacity(), size) ||
      !InsideMapping(info.reply_offset(), info.reply_capacity(), size) || !disjoint) {
    return absl::InvalidArgumentError(
        absl::StrCat("kvtierd announced an inconsistent mailbox: ", size, " bytes, request area [",
                     info.request_offset(), ", +", info.request_capacity(), "), reply area [",
                     info.reply_offset(), ", +", info.reply_capacity(), ")"));
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (base == MAP_FAILED) {
    return absl::UnavailableError(
        absl::StrCat("cannot map kvtierd's request mailbox: ", std::strerror(errno)));
  }
  return std::unique_ptr<MailboxClient>(new MailboxClient(static_cast<std::byte*>(base), info));
}

MailboxClient::~MailboxClient() { munmap(base_, info_.size_bytes()); }

absl::Status MailboxClient::Call(proto::Opcode op, const google::protobuf::MessageLite& request,
                                 google::protobuf::MessageLite* reply, const Wait& wait,
                                 absl::FunctionRef<absl::Status()> ring,
                                 absl::FunctionRef<bool()> peer_gone) {
  const std::string_view op_name = proto::OpcodeName(op);
  const size_t len = request.ByteSizeLong();
  if (broken_) return absl::UnavailableError("the request mailbox failed before");
  if (len > info_.request_capacity()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(op_name), " body of ", len, " bytes does not fit the mailbox's ",
                     info_.request_capacity(), "; the caller sends it on the socket"));
  }
  request.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(base_ + info_.request_offset()));
  MailboxWord(base_, MailboxWords::kRequestOpcode).store(static_cast<uint32_t>(op));
  MailboxWord(base_, MailboxWords::kRequestLen).store(static_cast<uint32_t>(len));
  const uint32_t seq = ++seq_ == 0 ? ++seq_ : seq_;  // 0 means "nothing yet" to the daemon
  MailboxWord(base_, MailboxWords::kRequestSeq).store(seq);
  if (MailboxWord(base_, MailboxWords::kDaemonPolling).load() == 0) {
    if (absl::Status s = ring(); !s.ok()) return Fail(s);
  }
  if (absl::Status s = AwaitReply(seq, wait, peer_gone); !s.ok()) return Fail(s);

  const uint32_t status = MailboxWord(base_, MailboxWords::kReplyStatus).load();
  const uint32_t n = MailboxWord(base_, MailboxWords::kReplyLen).load();
  if (n > info_.reply_capacity()) {
    return Fail(
        absl::InternalError(absl::StrCat("mailbox reply of ", n, " bytes to ", AbslView(op_name),
                                         " overruns its ", info_.reply_capacity(), "-byte area")));
  }
  const std::string_view body(reinterpret_cast<const char*>(base_ + info_.reply_offset()), n);
  if (status != 0) {
    proto::ErrorReply error;
    if (!proto::ParseBody(body, &error).ok()) {
      return Fail(absl::InternalError(
          absl::StrCat("unparseable error reply to ", AbslView(op_name), " in the mailbox")));
    }
    const absl::Status remote = proto::StatusFromErrorReply(error);
    return absl::Status(remote.code(), absl::StrCat("kvtierd rejected ", AbslView(op_name), ": ",
                                                    remote.message()));
  }
  if (absl::Status s = proto::ParseBody(body, reply); !s.ok()) {
    return Fail(absl::InternalError(
        absl::StrCat("unparseable ", AbslView(op_name), " reply in the mailbox: ", s.message())));
  }
  return absl::OkStatus();
}

absl::Status MailboxClient::AwaitReply(uint32_t seq, const Wait& wait,
                                       absl::FunctionRef<bool()> peer_gone) {
  std::atomic_ref<uint32_t> reply_seq = MailboxWord(base_, MailboxWords::kReplySeq);
  const auto start = Clock::now();
  if (wait.spin.count() > 0) {
    while (reply_seq.load() != seq) {
      if (Clock::now() - start >= wait.spin) break;
    }
  }
  std::atomic_ref<uint32_t> waiting = MailboxWord(base_, MailboxWords::kClientWaiting);
  for (;;) {
    const uint32_t seen = reply_seq.load();
    if (seen == seq) break;
    // Announce the sleep, then look once more: the daemon stores its reply before it reads
    // kClientWaiting, so one of the two sides sees the other.
    waiting.store(1);
    if (reply_seq.load() == seq) break;
    proto::MailboxWaitForReply(base_, seen, kSleepSlice);
    if (reply_seq.load() == seq) break;
    if (peer_gone()) {
      waiting.store(0);
      return absl::UnavailableError(
          "kvtierd closed the connection while a mailbox request was waiting (it stopped?)");
    }
    if (Clock::now() - start >= wait.timeout) {
      waiting.store(0);
      return absl::DeadlineExceededError(
          absl::StrCat("no reply in the request mailbox within ", wait.timeout.count(), " ms"));
    }
  }
  waiting.store(0);
  return absl::OkStatus();
}

}  // namespace kvtier::client
