// A Clock that moves only when a test tells it to. Test-only (target kvtier_common_testing).
#pragma once

#include <atomic>

#include "kvtier/common/clock.h"

namespace kvtier::testing {

class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_nanos = 1'000'000'000) : now_(start_nanos) {}
  int64_t NowNanos() const override { return now_.load(std::memory_order_acquire); }
  void Advance(int64_t nanos) { now_.fetch_add(nanos, std::memory_order_acq_rel); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace kvtier::testing
