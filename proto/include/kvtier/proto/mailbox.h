// The request mailbox: a shared-memory slot through which a local client sends requests (today
// lookups) without the socket (protocol.md 7.4).
//
// Why: a lookup over the Unix socket costs two system calls on each side and, whenever a
// thread has gone to sleep, a wake-up of several microseconds. With eight busy clients the
// daemon's network threads spend most of their time in those calls. Through the mailbox a
// request is a few stores to memory both sides map; a daemon thread that is polling (the
// network threads busy-poll, server.busy_poll_us) sees it at once and answers in place.
//
// One mailbox per connection, created by the daemon (attach_mailbox) as a sealed memfd, so a
// client can neither shrink it under the daemon nor see another client's. One request at a time,
// like the connection itself. The mapping:
//
//   offset            size              written by  what
//   0                 64                client      request line: kRequestSeq, kRequestOpcode,
//                                                   kRequestLen, kClientWaiting
//   64                64                daemon      reply line: kReplySeq, kReplyStatus,
//                                                   kReplyLen, kDaemonPolling
//   request_offset    request_capacity  client      request body (the opcode's protobuf)
//   reply_offset      reply_capacity    daemon      reply body (the reply's protobuf, or an
//                                                   ErrorReply when kReplyStatus != 0)
//
// Every word is a little-endian uint32 accessed atomically (std::atomic_ref). A call:
//
//   client: write the body and kRequestOpcode/kRequestLen; store kRequestSeq = seq (seq_cst);
//           if kDaemonPolling reads 0, send a mailbox_doorbell frame on the socket.
//   daemon: sees kRequestSeq change (polling, or on the doorbell); copies the body out before
//           parsing it (the client could still be writing); writes the reply body, kReplyStatus
//           and kReplyLen; stores kReplySeq = seq (seq_cst); if kClientWaiting reads 1,
//           FUTEX_WAKE on kReplySeq.
//   client: spins on kReplySeq for its busy-poll time; then stores kClientWaiting = 1 and
//           sleeps in FUTEX_WAIT on kReplySeq until it equals seq.
//
// Both "store, then load the other side's flag" pairs are sequentially consistent, so either the
// daemon's last look before sleeping sees the request or the client sees kDaemonPolling == 0
// and rings; either the client's last look before sleeping sees the reply or the daemon sees
// kClientWaiting == 1 and wakes it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace kvtier::proto {

struct MailboxWords {
  // Request line (client-written).
  static constexpr size_t kRequestSeq = 0;
  static constexpr size_t kRequestOpcode = 4;
  static constexpr size_t kRequestLen = 8;
  static constexpr size_t kClientWaiting = 12;
  // Reply line (daemon-written).
  static constexpr size_t kReplySeq = 64;
  static constexpr size_t kReplyStatus = 68;  // 0: reply body; else an absl code, ErrorReply
  static constexpr size_t kReplyLen = 72;
  static constexpr size_t kDaemonPolling = 76;
};

// The words end here; the bodies start on their own page.
inline constexpr size_t kMailboxHeaderBytes = 128;

// The uint32 at `offset` of a mailbox mapped at `base`, as an atomic. `base` is page-aligned.
inline std::atomic_ref<uint32_t> MailboxWord(std::byte* base, size_t offset) {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + offset));
}

// The daemon's side: wakes the client sleeping on kReplySeq (if any).
void MailboxWakeReplyWaiter(std::byte* base);
// The client's side: sleeps while kReplySeq still reads `seen`, at most `timeout` (and may wake
// early: callers re-check the word).
void MailboxWaitForReply(std::byte* base, uint32_t seen, std::chrono::nanoseconds timeout);

}  // namespace kvtier::proto
