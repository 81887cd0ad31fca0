#include "tiers/src/policy/ghost_list.h"

namespace kvtier::tiers::policy {

void GhostList::Push(uint64_t fingerprint) {
  seq_of_[fingerprint] = next_seq_;
  fifo_.push_back({fingerprint, next_seq_++});
  if (fifo_.size() > 2 * seq_of_.size() + 64) Compact();
}

bool GhostList::Erase(uint64_t fingerprint) {
  if (seq_of_.erase(fingerprint) == 0) return false;
  if (fifo_.size() > 2 * seq_of_.size() + 64) Compact();
  return true;
}

void GhostList::PopOldest() {
  while (!fifo_.empty()) {
    const Slot s = fifo_.front();
    fifo_.pop_front();
    auto it = seq_of_.find(s.fingerprint);
    if (it != seq_of_.end() && it->second == s.seq) {
      seq_of_.erase(it);
      return;
    }
  }
}

void GhostList::Compact() {
  std::deque<Slot> live;
  for (const Slot& s : fifo_) {
    auto it = seq_of_.find(s.fingerprint);
    if (it != seq_of_.end() && it->second == s.seq) live.push_back(s);
  }
  fifo_.swap(live);
}

}  // namespace kvtier::tiers::policy
