// kvtierd's figures in the Prometheus text exposition format (version 0.0.4), for /metrics.
//
// The page is rendered from the same StatsReply that `kvtierctl stats` shows, so the two never
// disagree: every counter of kvtier.proto's Counters, TierStats, NvmeStats, NamespaceStats and
// ServerStats appears once, under a `kvtier_` name in base units (seconds, bytes), with
// `_total` on counters. Per-tier figures carry a `tier` label ("dram", "nvme"); per-namespace
// ones `namespace` (the id), `model`, `dtype`, `tp_rank` and `tier`. Ratios (hit rate,
// compression) are left to PromQL, from the counters they come from (deploy/prometheus has the
// recording rules), so that they can be taken over any window.
//
// Prometheus-cpp, the usual client library, is not packaged in Debian 12; the format is a
// line-based text page whose rules (one HELP and TYPE per family, all of a family's samples
// together, label values escaped) are all this file needs. The tests check the page with the
// real `promtool check metrics` and a real Prometheus server scraping kvtierd.
#pragma once

#include <string>
#include <string_view>

#include "kvtier.pb.h"

namespace kvtier::server {

// Content-Type of the page.
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// The whole /metrics page. `version` goes into kvtier_build_info. Pure; thread-safe.
std::string RenderPrometheusText(const proto::StatsReply& stats, std::string_view version);

// `value` escaped for a label value in double quotes: backslash, double quote and line feed.
std::string EscapeLabelValue(std::string_view value);

}  // namespace kvtier::server
