#include "render.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kvtier/common/units.h"
#include "table.h"

namespace kvtier::ctl {
namespace {

using nlohmann::json;
using Align = Table::Align;

json HitRate(uint64_t hits, uint64_t misses) {
  if (hits + misses == 0) return nullptr;
  return static_cast<double>(hits) / static_cast<double>(hits + misses);
}

json CountersJson(const proto::Counters& c) {
  return json{{"hits", c.hits()},
              {"misses", c.misses()},
              {"hit_rate", HitRate(c.hits(), c.misses())},
              {"evictions", c.evictions()},
              {"bytes_in", c.bytes_in()},
              {"bytes_out", c.bytes_out()},
              {"puts", c.puts()},
              {"removes", c.removes()},
              {"lookups", c.lookups()},
              {"lookup_keys", c.lookup_keys()},
              {"lookup_hit_keys", c.lookup_hit_keys()}};
}

json DescriptorJson(const proto::NamespaceDescriptor& d) {
  return json{{"model_id", d.model_id()},
              {"dtype", d.dtype()},
              {"kv_layout", d.kv_layout()},
              {"block_tokens", d.block_tokens()},
              {"block_bytes", d.block_bytes()},
              {"tp_rank", d.tp_rank()},
              {"tp_size", std::max<uint32_t>(d.tp_size(), 1)},
              {"pp_rank", d.pp_rank()},
              {"pp_size", std::max<uint32_t>(d.pp_size(), 1)},
              // The salt separates tenants; its bytes are a secret of theirs, so only its
              // presence and length are shown.
              {"tenant_salt_bytes", d.tenant_salt().size()}};
}

// Merges the entries of `extra` into `base` (flat objects).
json Merge(json base, const json& extra) {
  for (auto it = extra.begin(); it != extra.end(); ++it) base[it.key()] = it.value();
  return base;
}

std::string Num(uint64_t v) { return absl::StrCat(v); }
std::string Bytes(uint64_t v) { return FormatByteSize(v); }

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  return absl::StrFormat("%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

std::string Parallel(const proto::NamespaceDescriptor& d) {
  return absl::StrCat("tp", d.tp_rank(), "/", std::max<uint32_t>(d.tp_size(), 1), " pp",
                      d.pp_rank(), "/", std::max<uint32_t>(d.pp_size(), 1));
}

}  // namespace

std::string FormatDuration(uint64_t ms) {
  const uint64_t s = ms / 1000, m = s / 60, h = m / 60, d = h / 24;
  if (d > 0) return absl::StrFormat("%dd %02dh", d, h % 24);
  if (h > 0) return absl::StrFormat("%dh %02dm", h, m % 60);
  if (m > 0) return absl::StrFormat("%dm %02ds", m, s % 60);
  return absl::StrFormat("%.1fs", static_cast<double>(ms) / 1000.0);
}

std::string FormatHitRate(uint64_t hits, uint64_t misses) { return Percent(hits, hits + misses); }

std::string FormatRatio(uint64_t raw, uint64_t stored) {
  if (stored == 0) return "-";
  return absl::StrFormat("%.2fx", static_cast<double>(raw) / static_cast<double>(stored));
}

namespace {
// Ratio for JSON: null when nothing is stored.
json RatioJson(uint64_t raw, uint64_t stored) {
  if (stored == 0) return nullptr;
  return static_cast<double>(raw) / static_cast<double>(stored);
}
}  // namespace

json HealthJson(const proto::HealthReply& health, std::string_view uri) {
  return json{{"uri", uri},
              {"serving", health.serving()},
              {"server_version", health.server_version()},
              {"uptime_ms", health.uptime_ms()}};
}

json NvmeJson(const proto::NvmeStats& n) {
  return json{{"promotions", n.promotions()},
              {"demotions", n.demotions()},
              {"demotions_dropped", n.demotions_dropped()},
              {"admission_rejections", n.admission_rejections()},
              {"write_throughs", n.write_throughs()},
              {"write_through_failures", n.write_through_failures()},
              {"shutdown_saved", n.shutdown_saved()},
              {"checksum_failures", n.checksum_failures()},
              {"io_errors", n.io_errors()},
              {"index_errors", n.index_errors()},
              {"region_evictions", n.region_evictions()},
              {"reclaimed_ahead", n.reclaimed_ahead()},
              {"reclaim_stall_ms", n.reclaim_stall_ms()},
              {"demotion_encoder", n.demotion_encoder()},
              {"demotion_encode_ms", n.demotion_encode_ms()},
              {"evicted_blocks", n.evicted_blocks()},
              {"reinserted_blocks", n.reinserted_blocks()},
              {"flash_bytes_written", n.flash_bytes_written()},
              {"flash_bytes_read", n.flash_bytes_read()},
              {"expired", n.expired()},
              {"engine", n.engine()},
              {"admission_policy", n.admission_policy()},
              {"region_bytes", n.region_bytes()},
              {"regions", n.regions()},
              {"regions_in_use", n.regions_in_use()},
              {"dram_index_bytes", n.dram_index_bytes()},
              {"rocksdb_memory_bytes", n.rocksdb_memory_bytes()},
              {"blocks_recovered", n.blocks_recovered()},
              {"index_rebuilt", n.index_rebuilt()},
              {"startup_ms", n.startup_ms()},
              {"demotion_queue_bytes", n.demotion_queue_bytes()},
              {"prefetch_requests", n.prefetch_requests()},
              {"prefetch_promoted", n.prefetch_promoted()},
              {"prefetch_dropped", n.prefetch_dropped()},
              {"quota_drops", n.quota_drops()},
              {"quota_rejections", n.quota_rejections()}};
}

int64_t LatencyQuantileMicros(const proto::RequestLatency& l, double q) {
  uint64_t count = 0;
  for (uint64_t c : l.bucket_counts()) count += c;
  if (count == 0) return 0;
  // The rank of the quantile's request, 1-based: the smallest bucket whose cumulative count
  // reaches it holds it.
  const auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count)));
  uint64_t cumulative = 0;
  for (int i = 0; i < l.bucket_counts_size(); ++i) {
    cumulative += l.bucket_counts(i);
    if (cumulative >= std::max<uint64_t>(rank, 1)) {
      // The last bucket holds what the one before it could not: more than that one's bound.
      if (i + 1 == l.bucket_counts_size()) return i == 0 ? -1 : -(int64_t{1} << (i - 1));
      return int64_t{1} << i;
    }
  }
  return -1;
}

std::string FormatLatencyBound(int64_t micros) {
  if (micros == 0) return "-";
  auto human = [](double us) {
    if (us < 1000) return absl::StrCat(static_cast<int64_t>(us), "us");
    if (us < 1'000'000) return absl::StrFormat("%.1fms", us / 1000);
    return absl::StrFormat("%.1fs", us / 1e6);
  };
  if (micros < 0) return "> " + human(static_cast<double>(-micros));
  return "<= " + human(static_cast<double>(micros));
}

namespace {

uint64_t Delta(uint64_t before, uint64_t after) { return after >= before ? after - before : after; }

const proto::TierStats* FindTier(const proto::StatsReply& r, proto::Tier tier) {
  for (const proto::TierStats& t : r.tiers()) {
    if (t.tier() == tier) return &t;
  }
  return nullptr;
}

// `after`'s histogram of `op` less `before`'s.
proto::RequestLatency LatencyDelta(const proto::StatsReply& before, const proto::StatsReply& after,
                                   const std::string& op) {
  proto::RequestLatency d;
  d.set_op(op);
  const proto::RequestLatency* b = proto::FindRequestLatency(before, op);
  const proto::RequestLatency* a = proto::FindRequestLatency(after, op);
  if (a == nullptr) return d;
  uint64_t count = 0;
  for (int i = 0; i < a->bucket_counts_size(); ++i) {
    const uint64_t prev = b != nullptr && i < b->bucket_counts_size() ? b->bucket_counts(i) : 0;
    const uint64_t c = Delta(prev, a->bucket_counts(i));
    d.add_bucket_counts(c);
    count += c;
  }
  d.set_count(count);
  d.set_sum_ns(Delta(b != nullptr ? b->sum_ns() : 0, a->sum_ns()));
  return d;
}

// Hit rate of an interval's hits and misses, or null when there were none.
json IntervalRate(uint64_t hits, uint64_t misses) {
  return hits + misses == 0 ? json(nullptr)
                            : json(static_cast<double>(hits) / static_cast<double>(hits + misses));
}

}  // namespace

json IntervalJson(const proto::StatsReply& before, const proto::StatsReply& after, double seconds) {
  const double s = seconds > 0 ? seconds : 1;
  auto per_s = [s](uint64_t n) { return static_cast<double>(n) / s; };
  json out;
  out["seconds"] = seconds;
  out["requests_per_s"] = per_s(Delta(before.server().requests(), after.server().requests()));
  out["tiers"] = json::array();
  for (const proto::TierStats& t : after.tiers()) {
    const proto::TierStats* b = FindTier(before, t.tier());
    const proto::Counters zero;
    const proto::Counters& cb = b != nullptr ? b->counters() : zero;
    const proto::Counters& ca = t.counters();
    const uint64_t hits = Delta(cb.hits(), ca.hits());
    const uint64_t misses = Delta(cb.misses(), ca.misses());
    const uint64_t keys = Delta(cb.lookup_keys(), ca.lookup_keys());
    const uint64_t hit_keys = Delta(cb.lookup_hit_keys(), ca.lookup_hit_keys());
    out["tiers"].push_back(
        json{{"tier", TierName(t.tier())},
             {"gets_per_s", per_s(hits + misses)},
             {"hit_rate", IntervalRate(hits, misses)},
             {"lookup_keys_per_s", per_s(keys)},
             {"lookup_hit_rate", IntervalRate(hit_keys, keys - std::min(keys, hit_keys))},
             {"puts_per_s", per_s(Delta(cb.puts(), ca.puts()))},
             {"evictions_per_s", per_s(Delta(cb.evictions(), ca.evictions()))},
             {"bytes_in_per_s", per_s(Delta(cb.bytes_in(), ca.bytes_in()))},
             {"bytes_out_per_s", per_s(Delta(cb.bytes_out(), ca.bytes_out()))},
             {"used_bytes", t.used_bytes()},
             {"capacity_bytes", t.capacity_bytes()}});
  }
  out["request_p99_us_at_most"] = json::object();
  for (const proto::RequestLatency& l : after.server().request_latency()) {
    const proto::RequestLatency d = LatencyDelta(before, after, l.op());
    if (d.count() > 0) out["request_p99_us_at_most"][l.op()] = LatencyQuantileMicros(d, 0.99);
  }
  return out;
}

void PrintInterval(const proto::StatsReply& before, const proto::StatsReply& after, double seconds,
                   bool header, std::ostream& out) {
  const json j = IntervalJson(before, after, seconds);
  auto rate = [](const json& v) {
    return v.is_null() ? std::string("-") : absl::StrFormat("%.1f%%", 100 * v.get<double>());
  };
  auto num = [](double v) { return absl::StrFormat("%.0f", v); };
  auto bytes = [](double v) { return FormatByteSize(static_cast<uint64_t>(v)) + "/s"; };
  Table table({{"TIER", Align::kLeft},
               {"GETS/S"},
               {"HIT RATE"},
               {"LOOKUP KEYS/S"},
               {"PREFIX HIT"},
               {"PUTS/S"},
               {"EVICT/S"},
               {"IN"},
               {"OUT"},
               {"USED%"}});
  for (const json& t : j["tiers"]) {
    table.AddRow({t["tier"].get<std::string>(), num(t["gets_per_s"].get<double>()),
                  rate(t["hit_rate"]), num(t["lookup_keys_per_s"].get<double>()),
                  rate(t["lookup_hit_rate"]), num(t["puts_per_s"].get<double>()),
                  num(t["evictions_per_s"].get<double>()), bytes(t["bytes_in_per_s"].get<double>()),
                  bytes(t["bytes_out_per_s"].get<double>()),
                  Percent(t["used_bytes"].get<uint64_t>(), t["capacity_bytes"].get<uint64_t>())});
  }
  if (header) {
    out << "every " << absl::StrFormat("%.1f", seconds)
        << " s: rates and hit rates of the interval alone\n";
  }
  std::string p99;
  for (const auto& [op, us] : j["request_p99_us_at_most"].items()) {
    absl::StrAppend(&p99, p99.empty() ? "" : ", ", op, " ", FormatLatencyBound(us.get<int64_t>()));
  }
  out << "\n"
      << num(j["requests_per_s"].get<double>()) << " requests/s"
      << (p99.empty() ? "" : "; p99 " + p99) << "\n";
  table.Print(out);
}

json StatsJson(const proto::StatsReply& stats, const proto::HealthReply& health,
               std::string_view uri) {
  const proto::ServerStats& s = stats.server();
  json out;
  out["server"] = json{{"uri", uri},
                       {"server_version", health.server_version()},
                       {"uptime_ms", s.uptime_ms()},
                       {"connections_total", s.connections_total()},
                       {"connections_active", s.connections_active()},
                       {"connections_refused", s.connections_refused()},
                       {"requests", s.requests()},
                       {"mailbox_requests", s.mailbox_requests()},
                       {"mailboxes_active", s.mailboxes_active()},
                       {"bad_frames", s.bad_frames()},
                       {"error_replies", s.error_replies()},
                       {"leases_active", s.leases_active()},
                       {"leases_expired", s.leases_expired()},
                       {"eviction_policy", s.eviction_policy()},
                       {"metrics_scrapes", s.metrics_scrapes()},
                       {"metrics_bad_requests", s.metrics_bad_requests()}};
  // Quantiles are bucket bounds (us; -1: beyond the last bound), as in the text output.
  out["server"]["request_latency"] = json::array();
  for (const proto::RequestLatency& l : s.request_latency()) {
    out["server"]["request_latency"].push_back(json{
        {"op", l.op()},
        {"count", l.count()},
        {"sum_ns", l.sum_ns()},
        {"mean_us", l.count() == 0
                        ? 0.0
                        : static_cast<double>(l.sum_ns()) / 1e3 / static_cast<double>(l.count())},
        {"p50_us_at_most", LatencyQuantileMicros(l, 0.5)},
        {"p99_us_at_most", LatencyQuantileMicros(l, 0.99)},
        {"p999_us_at_most", LatencyQuantileMicros(l, 0.999)},
        {"bucket_counts",
         std::vector<uint64_t>(l.bucket_counts().begin(), l.bucket_counts().end())}});
  }
  out["tiers"] = json::array();
  for (const proto::TierStats& t : stats.tiers()) {
    json tier = Merge(json{{"tier", TierName(t.tier())},
                           {"capacity_bytes", t.capacity_bytes()},
                           {"used_bytes", t.used_bytes()},
                           {"blocks", t.blocks()},
                           {"stored_bytes", t.stored_bytes()},
                           {"raw_bytes", t.raw_bytes()},
                           {"compression_ratio", RatioJson(t.raw_bytes(), t.stored_bytes())},
                           {"slab_reclaims", t.slab_reclaims()},
                           {"blocks_moved", t.blocks_moved()},
                           {"slab_reclaims_ahead", t.slab_reclaims_ahead()}},
                      CountersJson(t.counters()));
    if (t.has_nvme()) tier["nvme"] = NvmeJson(t.nvme());
    out["tiers"].push_back(std::move(tier));
  }
  out["namespaces"] = NamespacesJson(stats);
  return out;
}

json NamespacesJson(const proto::StatsReply& stats) {
  json list = json::array();
  for (const proto::NamespaceStats& n : stats.namespaces()) {
    json entry = Merge(
        json{{"namespace_id", n.namespace_id()},
             {"blocks", n.blocks()},
             {"used_bytes", n.used_bytes()},
             {"pinned_blocks", n.pinned_blocks()},
             {"dram_slot_bytes", n.dram_slot_bytes()},
             {"dram_quota_bytes", n.limits().dram_quota_bytes()},
             {"priority", n.limits().priority()},
             {"default_ttl_seconds", n.limits().default_ttl_seconds()},
             {"expirations", n.expirations()},
             {"quota_evictions", n.quota_evictions()},
             {"nvme_blocks", n.nvme_blocks()},
             {"nvme_used_bytes", n.nvme_used_bytes()},
             {"nvme_quota_bytes", n.limits().nvme_quota_bytes()},
             {"nvme_quota_drops", n.nvme_quota_drops()},
             {"nvme_quota_rejections", n.nvme_quota_rejections()},
             {"compression", n.options().compression() == proto::COMPRESSION_KVZ ? "kvz" : "none"},
             {"raw_bytes", n.raw_bytes()},
             {"compression_ratio", RatioJson(n.raw_bytes(), n.used_bytes())},
             {"nvme_written_stored_bytes", n.nvme_written_stored_bytes()},
             {"nvme_written_raw_bytes", n.nvme_written_raw_bytes()}},
        DescriptorJson(n.namespace_descriptor()));
    list.push_back(Merge(std::move(entry), CountersJson(n.counters())));
  }
  return list;
}

void PrintHealth(const proto::HealthReply& health, std::string_view uri, std::ostream& out) {
  out << "kvtierd " << health.server_version() << " at " << uri << " is "
      << (health.serving() ? "serving" : "NOT serving") << " (up "
      << FormatDuration(health.uptime_ms()) << ")\n";
}

void PrintStats(const proto::StatsReply& stats, const proto::HealthReply& health,
                std::string_view uri, std::ostream& out) {
  const proto::ServerStats& s = stats.server();
  out << "kvtierd " << health.server_version() << " at " << uri << ", up "
      << FormatDuration(s.uptime_ms()) << "\n"
      << "  connections " << s.connections_active() << " active / " << s.connections_total()
      << " total (" << s.connections_refused() << " refused), requests " << s.requests() << " ("
      << s.mailbox_requests() << " through " << s.mailboxes_active()
      << " mailboxes), error replies " << s.error_replies() << ", bad frames " << s.bad_frames()
      << ", leases " << s.leases_active() << " active / " << s.leases_expired() << " expired\n\n";

  Table tiers({{"TIER", Align::kLeft},
               {"CAPACITY"},
               {"USED"},
               {"USED%"},
               {"BLOCKS"},
               {"HITS"},
               {"MISSES"},
               {"HIT RATE"},
               {"EVICTIONS"},
               {"BYTES IN"},
               {"BYTES OUT"},
               {"RATIO"}});
  for (const proto::TierStats& t : stats.tiers()) {
    const proto::Counters& c = t.counters();
    tiers.AddRow({TierName(t.tier()), Bytes(t.capacity_bytes()), Bytes(t.used_bytes()),
                  Percent(t.used_bytes(), t.capacity_bytes()), Num(t.blocks()), Num(c.hits()),
                  Num(c.misses()), FormatHitRate(c.hits(), c.misses()), Num(c.evictions()),
                  Bytes(c.bytes_in()), Bytes(c.bytes_out()),
                  FormatRatio(t.raw_bytes(), t.stored_bytes())});
  }
  tiers.Print(out);
  for (const proto::TierStats& t : stats.tiers()) {
    // Slabs that changed size class (several block sizes, or a compressed namespace's frames):
    // shown once there are any, since each costs copies (by the put that needed the slab,
    // unless the maintenance thread took it ahead).
    if (t.slab_reclaims() == 0) continue;
    out << "\n  " << TierName(t.tier()) << ": " << t.slab_reclaims()
        << " slabs taken by another size class (" << t.slab_reclaims_ahead() << " ahead of need), "
        << t.blocks_moved() << " blocks moved out of them instead of evicted\n";
  }
  for (const proto::TierStats& t : stats.tiers()) {
    if (!t.has_nvme()) continue;
    const proto::NvmeStats& n = t.nvme();
    out << "\n  nvme: " << n.engine() << ", admission " << n.admission_policy() << ", regions "
        << n.regions_in_use() << "/" << n.regions() << " of " << Bytes(n.region_bytes())
        << ", index " << Bytes(n.dram_index_bytes()) << " of DRAM\n"
        << "  promotions " << n.promotions() << ", demotions " << n.demotions() << " (dropped "
        << n.demotions_dropped() << ", refused by admission " << n.admission_rejections()
        << ", staged " << Bytes(n.demotion_queue_bytes()) << "; encoded by " << n.demotion_encoder()
        << " in " << n.demotion_encode_ms() << " ms), write-through " << n.write_throughs()
        << " (failed " << n.write_through_failures() << "), saved at shutdown "
        << n.shutdown_saved() << ", prefetch " << n.prefetch_promoted() << " promoted of "
        << n.prefetch_requests() << " hints (" << n.prefetch_dropped() << " keys dropped)\n"
        << "  flash written " << Bytes(n.flash_bytes_written()) << ", read "
        << Bytes(n.flash_bytes_read()) << ", region evictions " << n.region_evictions() << " ("
        << n.reclaimed_ahead() << " ahead; writer stalled " << n.reclaim_stall_ms()
        << " ms; reinserted " << n.reinserted_blocks() << ", dropped " << n.evicted_blocks()
        << "), checksum failures " << n.checksum_failures() << ", I/O errors " << n.io_errors()
        << ", index errors " << n.index_errors() << "\n"
        << "  quotas: " << n.quota_drops() << " records dropped, " << n.quota_rejections()
        << " blocks refused\n"
        << "  this start: " << n.blocks_recovered() << " blocks recovered in " << n.startup_ms()
        << " ms" << (n.index_rebuilt() ? " (index rebuilt)" : "") << "\n";
  }
  if (s.request_latency_size() > 0) {
    // Time in the daemon per kind of request; quantiles are the bounds of power-of-two buckets.
    out << "\n";
    Table latency({{"REQUEST", Align::kLeft}, {"COUNT"}, {"MEAN"}, {"P50"}, {"P99"}, {"P99.9"}});
    for (const proto::RequestLatency& l : s.request_latency()) {
      const double mean_us =
          l.count() == 0 ? 0
                         : static_cast<double>(l.sum_ns()) / 1e3 / static_cast<double>(l.count());
      latency.AddRow({l.op(), Num(l.count()),
                      mean_us < 1000 ? absl::StrFormat("%.1fus", mean_us)
                                     : absl::StrFormat("%.2fms", mean_us / 1000),
                      FormatLatencyBound(LatencyQuantileMicros(l, 0.5)),
                      FormatLatencyBound(LatencyQuantileMicros(l, 0.99)),
                      FormatLatencyBound(LatencyQuantileMicros(l, 0.999))});
    }
    latency.Print(out);
  }
  out << "\n";
  if (stats.namespaces().empty()) {
    out << "no namespaces open\n";
    return;
  }
  Table spaces({{"NS"},
                {"MODEL", Align::kLeft},
                {"BLOCKS"},
                {"USED"},
                {"HITS"},
                {"MISSES"},
                {"HIT RATE"},
                {"EVICTIONS"},
                {"BYTES IN"},
                {"BYTES OUT"},
                {"RATIO"},
                {"NVME RATIO"}});
  for (const proto::NamespaceStats& n : stats.namespaces()) {
    const proto::Counters& c = n.counters();
    spaces.AddRow({Num(n.namespace_id()), n.namespace_descriptor().model_id(), Num(n.blocks()),
                   Bytes(n.used_bytes()), Num(c.hits()), Num(c.misses()),
                   FormatHitRate(c.hits(), c.misses()), Num(c.evictions()), Bytes(c.bytes_in()),
                   Bytes(c.bytes_out()), FormatRatio(n.raw_bytes(), n.used_bytes()),
                   FormatRatio(n.nvme_written_raw_bytes(), n.nvme_written_stored_bytes())});
  }
  spaces.Print(out);
}

void PrintNamespaces(const proto::StatsReply& stats, std::ostream& out) {
  if (stats.namespaces().empty()) {
    out << "no namespaces open\n";
    return;
  }
  Table table({{"NS"},
               {"MODEL", Align::kLeft},
               {"DTYPE", Align::kLeft},
               {"LAYOUT", Align::kLeft},
               {"PARALLEL", Align::kLeft},
               {"TOKENS"},
               {"BLOCK"},
               {"SALT"},
               {"BLOCKS"},
               {"USED"},
               {"QUOTA"},
               {"NVME QUOTA"},
               {"PRIO"},
               {"TTL"},
               {"COMPRESS", Align::kLeft}});
  for (const proto::NamespaceStats& n : stats.namespaces()) {
    const proto::NamespaceDescriptor& d = n.namespace_descriptor();
    table.AddRow({Num(n.namespace_id()), d.model_id(), d.dtype(),
                  d.kv_layout().empty() ? "-" : d.kv_layout(), Parallel(d), Num(d.block_tokens()),
                  Bytes(d.block_bytes()),
                  d.tenant_salt().empty() ? "-" : absl::StrCat(d.tenant_salt().size(), " B"),
                  Num(n.blocks()), Bytes(n.used_bytes()),
                  n.limits().dram_quota_bytes() == 0 ? "-" : Bytes(n.limits().dram_quota_bytes()),
                  n.limits().nvme_quota_bytes() == 0 ? "-" : Bytes(n.limits().nvme_quota_bytes()),
                  absl::StrCat(n.limits().priority()),
                  n.limits().default_ttl_seconds() == 0
                      ? "-"
                      : absl::StrCat(n.limits().default_ttl_seconds(), " s"),
                  n.options().compression() == proto::COMPRESSION_KVZ ? "kvz" : "-"});
  }
  table.Print(out);
}

}  // namespace kvtier::ctl
