// MailboxClient: the client's end of a request mailbox (kvtier/proto/mailbox.h, protocol.md
// 7.4): requests written into memory shared with the daemon, answered in place.
//
// Session uses it for lookups when the daemon offers one; everything else, and any request
// whose body does not fit the request area, goes over the socket. The doorbell (a frame on the
// socket, sent only when the daemon's thread is not polling) and the liveness check are the
// caller's, passed in, so that the mailbox itself knows nothing of sockets. Not thread-safe:
// one request at a time, like the connection it belongs to.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message_lite.h"
#include "kvtier.pb.h"
#include "kvtier/proto/frame.h"

namespace kvtier::client {

class MailboxClient {
 public:
  // Maps `fd` (taken over and closed) as `info` describes. InvalidArgument when the areas do
  // not lie inside size_bytes; Unavailable when mmap fails.
  static absl::StatusOr<std::unique_ptr<MailboxClient>> Map(int fd, const proto::MailboxInfo& info);
  ~MailboxClient();
  MailboxClient(const MailboxClient&) = delete;
  MailboxClient& operator=(const MailboxClient&) = delete;

  // Largest request body that fits.
  size_t request_capacity() const { return info_.request_capacity(); }
  // Set once a call failed in transport (see Call); the mailbox is then useless.
  bool broken() const { return broken_; }

  struct Wait {
    // Re-read the reply word this long before sleeping on it (the client's busy_poll).
    std::chrono::microseconds spin{0};
    // Fail with DeadlineExceeded when no reply came within this.
    std::chrono::milliseconds timeout{10'000};
  };

  // One request. `ring` sends the doorbell; `peer_gone` says whether the daemon's end of the
  // connection has closed (checked while sleeping, so a dead daemon is noticed within ~50 ms).
  // Errors: the daemon's error reply as its status; Unavailable (daemon gone), DeadlineExceeded,
  // or Internal (a reply that does not parse or fit): after those the mailbox must not be used
  // again, as with a broken socket.
  absl::Status Call(proto::Opcode op, const google::protobuf::MessageLite& request,
                    google::protobuf::MessageLite* reply, const Wait& wait,
                    absl::FunctionRef<absl::Status()> ring, absl::FunctionRef<bool()> peer_gone);

 private:
  MailboxClient(std::byte* base, const proto::MailboxInfo& info) : base_(base), info_(info) {}

  // Waits until the reply word equals `seq`.
  absl::Status AwaitReply(uint32_t seq, const Wait& wait, absl::FunctionRef<bool()> peer_gone);
  absl::Status Fail(absl::Status s) {
    broken_ = true;
    return s;
  }

  std::byte* const base_;
  const proto::MailboxInfo info_;
  uint32_t seq_ = 0;
  bool broken_ = false;
};

}  // namespace kvtier::client
