#include "request_mailbox.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/proto/frame.h"
#include "kvtier/proto/mailbox.h"
#include "kvtier/proto/messages.h"

namespace kvtier::server {
namespace {

using proto::MailboxWord;
using proto::MailboxWords;

constexpr uint32_t kRequestOffset = 4096;
constexpr uint32_t kRequestCapacity = 96 << 10;
constexpr uint32_t kReplyOffset = kRequestOffset + kRequestCapacity;
constexpr uint32_t kReplyCapacity = RequestMailbox::kMailboxBytes - kReplyOffset;

absl::Status ErrnoStatus(std::string_view what) {
  return absl::ResourceExhaustedError(absl::StrCat("request mailbox: ", AbslView(what), ": ",
                                                   std::strerror(errno),
                                                   "; the client falls back to the socket"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<RequestMailbox>> RequestMailbox::Create() {
  const int fd = memfd_create("kvtier-mailbox", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return ErrnoStatus("memfd_create");
  auto fail = [fd](std::string_view what) {
    absl::Status s = ErrnoStatus(what);
    close(fd);
    return s;
  };
  if (ftruncate(fd, kMailboxBytes) != 0) return fail("ftruncate");
  // Sealed: a client that could shrink the file would make the daemon's next access SIGBUS.
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return fail("sealing the memfd");
  }
  void* base = mmap(nullptr, kMailboxBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail("mmap");
  return std::unique_ptr<RequestMailbox>(new RequestMailbox(fd, static_cast<std::byte*>(base)));
}

RequestMailbox::~RequestMailbox() {
  CloseFd();
  munmap(base_, kMailboxBytes);
}

void RequestMailbox::CloseFd() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

proto::MailboxInfo RequestMailbox::info() const {
  proto::MailboxInfo info;
  info.set_size_bytes(kMailboxBytes);
  info.set_request_offset(kRequestOffset);
  info.set_request_capacity(kRequestCapacity);
  info.set_reply_offset(kReplyOffset);
  info.set_reply_capacity(kReplyCapacity);
  return info;
}

void RequestMailbox::SetDaemonPolling(bool polling) {
  MailboxWord(base_, MailboxWords::kDaemonPolling).store(polling ? 1 : 0);
}

bool RequestMailbox::Serve(Service* service) {
  const uint32_t seq = MailboxWord(base_, MailboxWords::kRequestSeq).load();
  if (seq == served_seq_) return false;
  served_seq_ = seq;
  ServerCounters& counters = service->counters();
  const uint32_t op = MailboxWord(base_, MailboxWords::kRequestOpcode).load();
  // Timed from its pickup to its reply, under the opcode it claims (0 when unknown).
  struct Timer {
    ServerCounters& counters;
    uint32_t op;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    ~Timer() {
      counters.RecordLatency(
          static_cast<proto::Opcode>(op <= proto::kMaxOpcode ? op : 0),
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now() - start)
                                    .count()));
    }
  } timer{counters, op};
  counters.requests.fetch_add(1, std::memory_order_relaxed);
  counters.mailbox_requests.fetch_add(1, std::memory_order_relaxed);
  const uint32_t len = MailboxWord(base_, MailboxWords::kRequestLen).load();
  if (len > kRequestCapacity) {
    counters.bad_frames.fetch_add(1, std::memory_order_relaxed);
    Reply(seq, nullptr,
          absl::InvalidArgumentError(absl::StrCat("mailbox request of ", len,
                                                  " bytes is larger than the request area (",
                                                  kRequestCapacity, "); send it on the socket")),
          counters);
    return true;
  }
  if (op != static_cast<uint32_t>(proto::Opcode::kLookup)) {
    Reply(seq, nullptr,
          absl::UnimplementedError(absl::StrCat(
              "opcode ", op, " (", AbslView(proto::OpcodeName(static_cast<proto::Opcode>(op))),
              ") is not served through the mailbox; send it on the socket")),
          counters);
    return true;
  }
  request_.assign(reinterpret_cast<const char*>(base_ + kRequestOffset), len);
  proto::LookupRequest req;
  if (absl::Status s = proto::ParseRequest(request_, 0, service->limits(), &req); !s.ok()) {
    counters.bad_frames.fetch_add(1, std::memory_order_relaxed);
    Reply(seq, nullptr, s, counters);
    return true;
  }
  absl::StatusOr<proto::LookupReply> reply = service->Lookup(req);
  Reply(seq, reply.ok() ? &*reply : nullptr, reply.status(), counters);
  return true;
}

void RequestMailbox::Reply(uint32_t seq, const google::protobuf::MessageLite* body,
                           const absl::Status& status, ServerCounters& counters) {
  absl::Status out = status;
  if (out.ok() && body->ByteSizeLong() > kReplyCapacity) {
    out = absl::ResourceExhaustedError(
        absl::StrCat("the reply is ", body->ByteSizeLong(), " bytes, more than the mailbox's ",
                     kReplyCapacity, "; send the request on the socket"));
  }
  std::byte* area = base_ + kReplyOffset;
  size_t n = 0;
  if (out.ok()) {
    body->SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(area));
    n = body->GetCachedSize();
  } else {
    counters.error_replies.fetch_add(1, std::memory_order_relaxed);
    const proto::ErrorReply e = proto::ErrorReplyFromStatus(out);
    // An ErrorReply is at most a code and kMaxErrorMessageBytes of message: it always fits.
    e.SerializeToArray(area, kReplyCapacity);
    n = e.ByteSizeLong();
  }
  MailboxWord(base_, MailboxWords::kReplyStatus).store(static_cast<uint32_t>(out.code()));
  MailboxWord(base_, MailboxWords::kReplyLen).store(static_cast<uint32_t>(n));
  std::atomic_ref<uint32_t> reply_seq = MailboxWord(base_, MailboxWords::kReplySeq);
  reply_seq.store(seq);
  if (MailboxWord(base_, MailboxWords::kClientWaiting).load() != 0) {
    proto::MailboxWakeReplyWaiter(base_);
  }
}

void MailboxSet::Add(RequestMailbox* m) {
  m->SetDaemonPolling(polling_);
  mailboxes_.push_back(m);
}

void MailboxSet::Remove(RequestMailbox* m) {
  mailboxes_.erase(std::remove(mailboxes_.begin(), mailboxes_.end(), m), mailboxes_.end());
}

size_t MailboxSet::ServeAll() {
  size_t n = 0;
  for (RequestMailbox* m : mailboxes_) n += m->Serve(service_) ? 1 : 0;
  return n;
}

void MailboxSet::SetPolling(bool polling) {
  if (polling == polling_) return;
  polling_ = polling;
  for (RequestMailbox* m : mailboxes_) m->SetDaemonPolling(polling);
}

}  // namespace kvtier::server
