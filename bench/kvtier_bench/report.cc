#include "report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_format.h"

namespace kvtier::bench {

Progress::Progress(std::string label, bool enabled, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)) {
  if (!enabled) return;
  tty_ = isatty(STDERR_FILENO) == 1;
  thread_ = std::thread([this] { Run(); });
}

Progress::~Progress() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (tty_) std::fputc('\n', stderr);
}

void Progress::Run() {
  const auto start = std::chrono::steady_clock::now();
  uint64_t last_blocks = 0, last_bytes = 0;
  auto last = start;
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - last).count();
    const uint64_t blocks = blocks_.load(std::memory_order_relaxed);
    const uint64_t bytes = bytes_.load(std::memory_order_relaxed);
    std::string rate = absl::StrFormat("%10.0f %s/s", PerSecond(blocks - last_blocks, dt), unit_);
    if (bytes > 0) absl::StrAppendFormat(&rate, "  %7.3f GB/s", Gbps(bytes - last_bytes, dt));
    std::fprintf(stderr, "%s%s %5.0fs  %s%s", tty_ ? "\r" : "", label_.c_str(),
                 std::chrono::duration<double>(now - start).count(), rate.c_str(),
                 tty_ ? "   " : "\n");
    std::fflush(stderr);
    last_blocks = blocks;
    last_bytes = bytes;
    last = now;
  }
}

LatencySummary Summarize(std::vector<uint64_t>& samples_ns) {
  LatencySummary s;
  s.count = samples_ns.size();
  if (samples_ns.empty()) return s;
  std::sort(samples_ns.begin(), samples_ns.end());
  auto rank = [&](double p) {
    const size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(s.count)));
    return static_cast<double>(samples_ns[std::clamp<size_t>(i, 1, s.count) - 1]) / 1e3;
  };
  double sum = 0;
  for (uint64_t v : samples_ns) sum += static_cast<double>(v);
  s.mean_us = sum / static_cast<double>(s.count) / 1e3;
  s.p50_us = rank(0.50);
  s.p99_us = rank(0.99);
  s.p999_us = rank(0.999);
  s.max_us = static_cast<double>(samples_ns.back()) / 1e3;
  return s;
}

}  // namespace kvtier::bench
