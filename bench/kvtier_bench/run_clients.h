// Runs C client threads that start together, and reports the wall time from their common
// start to the last one's end. Each thread's body gets its index and the shared start time.
#pragma once

#include <chrono>
#include <functional>
#include <latch>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace kvtier::bench {

// `setup(c)` runs first on every thread (connect, prefill: not timed); once all setups are
// done, `body(c)` runs on every thread and is timed. Returns the first error of any thread.
inline absl::Status RunClients(int clients, const std::function<absl::Status(int)>& setup,
                               const std::function<absl::Status(int)>& body, double* seconds) {
  std::vector<absl::Status> status(clients);
  std::latch ready(clients + 1);
  std::latch go(1);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      status[c] = setup(c);
      ready.count_down();
      go.wait();
      if (status[c].ok()) status[c] = body(c);
    });
  }
  ready.arrive_and_wait();
  const auto start = std::chrono::steady_clock::now();
  go.count_down();
  for (auto& t : threads) t.join();
  *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& s : status) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace kvtier::bench
