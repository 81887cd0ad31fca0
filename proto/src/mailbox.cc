#include "kvtier/proto/mailbox.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ctime>

namespace kvtier::proto {
namespace {

// Not FUTEX_PRIVATE_FLAG: the waiter and the waker are different processes sharing the memfd.
long Futex(std::byte* base, int op, uint32_t value, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(base + MailboxWords::kReplySeq), op, value,
                 timeout, nullptr, 0);
}

}  // namespace

void MailboxWakeReplyWaiter(std::byte* base) { Futex(base, FUTEX_WAKE, 1, nullptr); }

void MailboxWaitForReply(std::byte* base, uint32_t seen, std::chrono::nanoseconds timeout) {
  const timespec t{static_cast<time_t>(timeout.count() / 1'000'000'000),
                   static_cast<long>(timeout.count() % 1'000'000'000)};
  Futex(base, FUTEX_WAIT, seen, &t);
}

}  // namespace kvtier::proto
