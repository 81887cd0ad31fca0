// Clock: the source of time for lease expiry, TTLs and stats. Injected so that tests can move
// time by hand (common/testing/manual_clock.h) instead of sleeping. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

namespace kvtier {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time in nanoseconds since an arbitrary origin; never goes backwards.
  virtual int64_t NowNanos() const = 0;
};

// The process's steady clock. Stateless; one shared instance is fine.
class SteadyClock final : public Clock {
 public:
  int64_t NowNanos() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace kvtier
