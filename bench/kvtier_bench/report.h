// Reporting helpers shared by the bench modes: the progress line, latency percentiles, rates.
//
// Units: GB/s are decimal (1e9 bytes per second), as link and memory bandwidths are quoted;
// latencies are microseconds. Progress goes to stderr once a second ("\r"-rewritten on a
// terminal, one line per second otherwise) so stdout stays clean for the result or --json.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kvtier::bench {

class Progress {
 public:
  // Starts the reporting thread when `enabled`. `unit` names what Add() counts ("blocks",
  // "lookups"); the GB/s column is left out when nothing counts bytes. Thread-safe Add().
  Progress(std::string label, bool enabled, std::string unit = "blocks");
  ~Progress();  // stops and ends the line

  void Add(uint64_t blocks, uint64_t bytes) {
    blocks_.fetch_add(blocks, std::memory_order_relaxed);
    bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }

 private:
  void Run();

  const std::string label_;
  const std::string unit_;
  std::atomic<uint64_t> blocks_{0};
  std::atomic<uint64_t> bytes_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  bool tty_ = false;
  std::thread thread_;
};

struct LatencySummary {
  uint64_t count = 0;
  double mean_us = 0, p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
};

// Sorts `samples_ns` in place and summarizes it (nearest-rank percentiles).
LatencySummary Summarize(std::vector<uint64_t>& samples_ns);

inline double Gbps(uint64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0.0;
}
inline double PerSecond(uint64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}
inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace kvtier::bench
