// The daemon's side of request mailboxes (kvtier/proto/mailbox.h, protocol.md 7.4).
//
// A RequestMailbox belongs to one Unix-socket connection; a MailboxSet holds the mailboxes of
// the connections of one network thread, which polls them between its socket events while it
// busy-polls and tells their clients to ring the doorbell once it stops. Everything here runs on
// that one thread (the connection's coroutine and the thread's run loop share it), so nothing is
// locked; the only other party is the client, through the shared words.
//
// What a mailbox serves: lookup (opcode 3). Anything else gets an UNIMPLEMENTED error reply
// naming the socket as the way to send it. A malformed request (length past the area, bad body)
// gets an error reply in the mailbox and counts in bad_frames, like the socket's; the client's
// scribbling can only hurt its own replies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvtier.pb.h"
#include "service.h"

namespace kvtier::server {

class RequestMailbox {
 public:
  // A sealed memfd of kMailboxBytes, mapped; `fd()` is to be sent to the client and closed.
  static absl::StatusOr<std::unique_ptr<RequestMailbox>> Create();
  ~RequestMailbox();
  RequestMailbox(const RequestMailbox&) = delete;
  RequestMailbox& operator=(const RequestMailbox&) = delete;

  // 128 KiB: a 4 KiB page of words, 96 KiB for request bodies (3,000 keys of a lookup; larger
  // ones go over the socket), 28 KiB for replies.
  static constexpr size_t kMailboxBytes = 128 << 10;

  int fd() const { return fd_; }
  void CloseFd();
  proto::MailboxInfo info() const;

  // Serves the request waiting in the mailbox, if there is one. Returns whether there was.
  bool Serve(Service* service);
  // Tells the client whether this thread is polling (it need not ring the doorbell).
  void SetDaemonPolling(bool polling);

 private:
  RequestMailbox(int fd, std::byte* base) : fd_(fd), base_(base) {}
  // Writes the reply body (or, for an error, its ErrorReply) and publishes it.
  void Reply(uint32_t seq, const google::protobuf::MessageLite* body, const absl::Status& status,
             ServerCounters& counters);

  int fd_;
  std::byte* const base_;
  uint32_t served_seq_ = 0;  // the client's first request is seq 1
  std::string request_;      // the body, copied out of shared memory before it is parsed
};

class MailboxSet {
 public:
  explicit MailboxSet(Service* service) : service_(service) {}

  // `m` is served by ServeAll until removed; it starts with this set's polling state.
  void Add(RequestMailbox* m);
  void Remove(RequestMailbox* m);
  // Serves every waiting request; returns how many there were.
  size_t ServeAll();
  // Sets the polling word of every mailbox (and of those added later).
  void SetPolling(bool polling);
  bool empty() const { return mailboxes_.empty(); }

 private:
  Service* const service_;
  std::vector<RequestMailbox*> mailboxes_;
  bool polling_ = false;
};

}  // namespace kvtier::server
