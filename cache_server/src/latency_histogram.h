// LatencyHistogram: how long kvtierd takes over requests, in power-of-two buckets, per opcode
// (ServerCounters::latency), for /metrics (a Prometheus histogram) and `kvtierctl stats`.
//
// Bucket i < kBuckets - 1 counts durations of at most 2^i microseconds (and, for i > 0, more
// than 2^(i-1)): 1 us to 4.2 s; the last bucket counts the rest. Record is a few relaxed atomic
// adds and safe from any thread; a snapshot taken meanwhile may count a request in its bucket
// but not yet in the sum, never the reverse of a whole request.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

#include "kvtier.pb.h"

namespace kvtier::server {

class LatencyHistogram {
 public:
  static constexpr int kBuckets = 24;

  // Upper bound of bucket i < kBuckets - 1, in nanoseconds.
  static constexpr uint64_t BoundNanos(int i) { return uint64_t{1000} << i; }

  // The bucket a duration falls in.
  static constexpr int BucketOf(uint64_t nanos) {
    if (nanos <= 1000) return 0;
    const int i = std::bit_width((nanos - 1) / 1000);
    return i < kBuckets - 1 ? i : kBuckets - 1;
  }

  void Record(uint64_t nanos) {
    buckets_[BucketOf(nanos)].fetch_add(1, std::memory_order_relaxed);
    sum_nanos_.fetch_add(nanos, std::memory_order_relaxed);
  }

  // Fills `out` (op, count, sum, per-bucket counts); count is the buckets' sum. Returns false,
  // leaving `out` alone, when nothing was recorded.
  bool FillProto(std::string_view op, proto::RequestLatency* out) const {
    std::array<uint64_t, kBuckets> counts;
    uint64_t count = 0;
    for (int i = 0; i < kBuckets; ++i) {
      counts[i] = buckets_[i].load(std::memory_order_relaxed);
      count += counts[i];
    }
    if (count == 0) return false;
    out->set_op(std::string(op));
    out->set_count(count);
    out->set_sum_ns(sum_nanos_.load(std::memory_order_relaxed));
    for (uint64_t c : counts) out->add_bucket_counts(c);
    return true;
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_nanos_{0};
};

}  // namespace kvtier::server
