// Rendering of kvtierd's replies for kvtierctl: aligned tables for people, JSON for scripts.
//
// JSON field names follow kvtier.proto (snake_case, bytes in bytes, times in ms) so that
// scripts can rely on them; derived figures (hit_rate) are added next to the counters they
// come from and are null when undefined (no hits and no misses yet). Pure functions of their
// arguments; thread-safe.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "kvtier.pb.h"
#include "kvtier/proto/messages.h"
#include "nlohmann/json.hpp"

namespace kvtier::ctl {

// "hbm", "dram", "nvme", "none".
using proto::TierName;
// "3d 04h", "2h 05m", "4m 09s", "12.3s".
std::string FormatDuration(uint64_t ms);
// "97.5%", or "-" with no requests.
std::string FormatHitRate(uint64_t hits, uint64_t misses);
// Compression ratio raw / stored as "1.50x"; "-" when nothing is stored.
std::string FormatRatio(uint64_t raw, uint64_t stored);

// Upper bound, in microseconds, of the bucket that holds quantile `q` (0 < q <= 1) of a
// RequestLatency; for the last, unbounded bucket, minus the bound of the one before it (the
// quantile is more than that), whatever the histogram's number of buckets; 0 when it counts
// nothing. JSON carries the same values (`p99_us_at_most` and the like).
int64_t LatencyQuantileMicros(const proto::RequestLatency& l, double q);
// "<= 64us", "<= 2.1ms", "> 4.2s" (for -4194304) for LatencyQuantileMicros' values; "-" for 0.
std::string FormatLatencyBound(int64_t micros);

// `kvtierctl top`: what happened between two snapshots taken `seconds` apart -- rates per second
// and the hit rates of that interval alone, not since start (which a long-running daemon's
// totals hide), and each request kind's p99 from the histograms' difference. Counters that went
// down (a restarted daemon) count from zero. JSON: one object per interval.
nlohmann::json IntervalJson(const proto::StatsReply& before, const proto::StatsReply& after,
                            double seconds);
// The same as a table row per tier under a header line (`header` prints the header first).
void PrintInterval(const proto::StatsReply& before, const proto::StatsReply& after, double seconds,
                   bool header, std::ostream& out);

nlohmann::json HealthJson(const proto::HealthReply& health, std::string_view uri);
nlohmann::json StatsJson(const proto::StatsReply& stats, const proto::HealthReply& health,
                         std::string_view uri);
nlohmann::json NamespacesJson(const proto::StatsReply& stats);
// The NVMe tier's own figures (kvtier.proto NvmeStats), field by field.
nlohmann::json NvmeJson(const proto::NvmeStats& nvme);

void PrintHealth(const proto::HealthReply& health, std::string_view uri, std::ostream& out);
// A server summary line, then a table per tier and a table per namespace.
void PrintStats(const proto::StatsReply& stats, const proto::HealthReply& health,
                std::string_view uri, std::ostream& out);
void PrintNamespaces(const proto::StatsReply& stats, std::ostream& out);

}  // namespace kvtier::ctl
