#include "prometheus_text.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kvtier/proto/messages.h"
#include "latency_histogram.h"

namespace kvtier::server {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Collects samples by family and writes each family once, its HELP and TYPE first and all its
// samples together, in the order the families were first used: the format requires the
// grouping, and tiers and namespaces fill the same families from separate loops.
class Exposition {
 public:
  void Counter(const std::string& name, const std::string& help, const Labels& labels,
               uint64_t value) {
    Add(name, "counter", help, labels, absl::StrCat(value));
  }
  void Gauge(const std::string& name, const std::string& help, const Labels& labels,
             uint64_t value) {
    Add(name, "gauge", help, labels, absl::StrCat(value));
  }
  void SignedGauge(const std::string& name, const std::string& help, const Labels& labels,
                   int64_t value) {
    Add(name, "gauge", help, labels, absl::StrCat(value));
  }
  // Figures kept in milliseconds, exposed in seconds (Prometheus' base unit).
  void CounterSeconds(const std::string& name, const std::string& help, const Labels& labels,
                      uint64_t ms) {
    Add(name, "counter", help, labels, Seconds(ms));
  }
  void GaugeSeconds(const std::string& name, const std::string& help, const Labels& labels,
                    uint64_t ms) {
    Add(name, "gauge", help, labels, Seconds(ms));
  }

  // A histogram of request durations: cumulative buckets with `le` in seconds, sum and count.
  void Histogram(const std::string& name, const std::string& help, const Labels& labels,
                 const proto::RequestLatency& l) {
    uint64_t cumulative = 0;
    for (int i = 0; i < l.bucket_counts_size(); ++i) {
      cumulative += l.bucket_counts(i);
      Labels with_le = labels;
      with_le.emplace_back(
          "le",
          i + 1 < l.bucket_counts_size()
              ? absl::StrFormat("%.6f", static_cast<double>(LatencyHistogram::BoundNanos(i)) / 1e9)
              : std::string("+Inf"));
      Add(name, "histogram", help, with_le, absl::StrCat(cumulative), name + "_bucket");
    }
    Add(name, "histogram", help, labels,
        absl::StrFormat("%u.%09u", l.sum_ns() / 1'000'000'000, l.sum_ns() % 1'000'000'000),
        name + "_sum");
    Add(name, "histogram", help, labels, absl::StrCat(cumulative), name + "_count");
  }

  std::string Render() const {
    std::string out;
    for (const Family& f : families_) {
      absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", f.type, "\n",
                      f.samples);
    }
    return out;
  }

 private:
  struct Family {
    std::string name;
    std::string type;
    std::string help;
    std::string samples;
  };

  static std::string Seconds(uint64_t ms) {
    return absl::StrFormat("%u.%03u", ms / 1000, static_cast<unsigned>(ms % 1000));
  }

  // A sample of family `name`, named `sample` when not the family's own name (a histogram's
  // _bucket, _sum and _count).
  void Add(const std::string& name, std::string_view type, const std::string& help,
           const Labels& labels, const std::string& value, const std::string& sample = "") {
    auto [it, added] = index_.try_emplace(name, families_.size());
    if (added) families_.push_back(Family{name, std::string(type), help, {}});
    std::string& s = families_[it->second].samples;
    absl::StrAppend(&s, sample.empty() ? name : sample);
    if (!labels.empty()) {
      s += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        absl::StrAppend(&s, i == 0 ? "" : ",", labels[i].first, "=\"",
                        EscapeLabelValue(labels[i].second), "\"");
      }
      s += '}';
    }
    absl::StrAppend(&s, " ", value, "\n");
  }

  std::vector<Family> families_;
  absl::flat_hash_map<std::string, size_t> index_;
};

// The Counters message of a tier (prefix "kvtier_tier_") or of a namespace in one tier
// ("kvtier_namespace_"). Separate families, so that summing one never counts a block twice.
void AddCounters(Exposition& e, std::string_view prefix, const Labels& labels,
                 const proto::Counters& c) {
  auto n = [prefix](const char* what) { return std::string(prefix) + what; };
  e.Counter(n("hits_total"), "Blocks served by gets.", labels, c.hits());
  e.Counter(n("misses_total"), "Blocks asked for by gets and not found.", labels, c.misses());
  e.Counter(n("evictions_total"), "Blocks evicted to make room.", labels, c.evictions());
  e.Counter(n("put_bytes_total"), "Block bytes stored by puts.", labels, c.bytes_in());
  e.Counter(n("get_bytes_total"), "Block bytes served by gets.", labels, c.bytes_out());
  e.Counter(n("puts_total"), "Blocks stored by puts.", labels, c.puts());
  e.Counter(n("removes_total"), "Blocks removed by clients.", labels, c.removes());
  e.Counter(n("lookups_total"), "Lookup requests.", labels, c.lookups());
  e.Counter(n("lookup_keys_total"), "Keys asked for by lookups.", labels, c.lookup_keys());
  e.Counter(n("lookup_hit_keys_total"), "Keys that lookups found.", labels, c.lookup_hit_keys());
}

void AddServer(Exposition& e, const proto::ServerStats& s, std::string_view version) {
  e.Gauge("kvtier_build_info", "kvtierd's version and DRAM eviction policy; always 1.",
          {{"version", std::string(version)}, {"eviction_policy", s.eviction_policy()}}, 1);
  e.GaugeSeconds("kvtier_uptime_seconds", "Seconds since kvtierd started.", {}, s.uptime_ms());
  e.Counter("kvtier_connections_total", "Client connections accepted.", {}, s.connections_total());
  e.Gauge("kvtier_connections_active", "Client connections open now.", {}, s.connections_active());
  e.Counter("kvtier_connections_refused_total",
            "Connections closed at accept: max_connections were open.", {},
            s.connections_refused());
  e.Counter("kvtier_requests_total", "Requests served (socket and mailbox).", {}, s.requests());
  e.Counter("kvtier_mailbox_requests_total", "Requests served through shared-memory mailboxes.", {},
            s.mailbox_requests());
  e.Gauge("kvtier_mailboxes_active", "Connections with a request mailbox attached.", {},
          s.mailboxes_active());
  e.Counter("kvtier_bad_frames_total", "Malformed frames that closed or errored a connection.", {},
            s.bad_frames());
  e.Counter("kvtier_error_replies_total", "Requests answered with an error.", {},
            s.error_replies());
  e.Gauge("kvtier_leases_active", "Client leases held (puts in progress, gets being copied).", {},
          s.leases_active());
  e.Counter("kvtier_leases_expired_total", "Client leases that timed out.", {}, s.leases_expired());
  e.Counter("kvtier_metrics_scrapes_total", "/metrics pages served, this one included.", {},
            s.metrics_scrapes());
  e.Counter("kvtier_metrics_bad_requests_total",
            "HTTP requests to the metrics listener that were refused (4xx).", {},
            s.metrics_bad_requests());
  for (const proto::RequestLatency& l : s.request_latency()) {
    e.Histogram("kvtier_request_duration_seconds",
                "Time from a request's frame read to its reply written (mailbox: from pickup).",
                {{"op", l.op()}}, l);
  }
}

void AddTier(Exposition& e, const proto::TierStats& t) {
  const Labels tier = {{"tier", proto::TierName(t.tier())}};
  e.Gauge("kvtier_tier_capacity_bytes", "Bytes the tier may hold.", tier, t.capacity_bytes());
  e.Gauge("kvtier_tier_used_bytes", "Bytes the tier's blocks take.", tier, t.used_bytes());
  e.Gauge("kvtier_tier_blocks", "Blocks the tier holds.", tier, t.blocks());
  AddCounters(e, "kvtier_tier_", tier, t.counters());
  if (t.tier() == proto::TIER_DRAM) {
    e.Gauge("kvtier_dram_stored_bytes",
            "Bytes of the DRAM tier's blocks as stored (compressed namespaces' frames).", {},
            t.stored_bytes());
    e.Gauge("kvtier_dram_raw_bytes", "Bytes of the DRAM tier's blocks before compression.", {},
            t.raw_bytes());
    e.Counter("kvtier_dram_slab_reclaims_total", "Slabs one size class took from another.", {},
              t.slab_reclaims());
    e.Counter("kvtier_dram_slab_reclaims_ahead_total",
              "Of the slab reclaims, those made ahead of need (dram.reclaim_ahead).", {},
              t.slab_reclaims_ahead());
    e.Counter("kvtier_dram_blocks_moved_total",
              "Blocks slab reclaims moved within their class instead of evicting them.", {},
              t.blocks_moved());
  }
  if (t.tier() != proto::TIER_NVME || !t.has_nvme()) return;
  const proto::NvmeStats& n = t.nvme();
  e.Gauge("kvtier_nvme_info",
          "The NVMe tier's I/O engine, admission policy and demotion "
          "encoder; always 1.",
          {{"engine", n.engine()},
           {"admission_policy", n.admission_policy()},
           {"demotion_encoder", n.demotion_encoder()}},
          1);
  e.Counter("kvtier_nvme_written_stored_bytes_total",
            "Bytes of blocks written to flash as stored (compressed namespaces' frames).", {},
            t.stored_bytes());
  e.Counter("kvtier_nvme_written_raw_bytes_total",
            "Bytes of blocks written to flash, before compression.", {}, t.raw_bytes());
  e.Counter("kvtier_nvme_promotions_total", "Blocks read from NVMe into DRAM.", {}, n.promotions());
  e.Counter("kvtier_nvme_demotions_total", "Blocks evicted from DRAM and written to NVMe.", {},
            n.demotions());
  e.Counter("kvtier_nvme_demotions_dropped_total",
            "Evicted blocks not demoted: staging full or I/O failed.", {}, n.demotions_dropped());
  e.Counter("kvtier_nvme_admission_rejections_total",
            "Demoted blocks the admission policy refused.", {}, n.admission_rejections());
  e.Counter("kvtier_nvme_write_throughs_total",
            "Puts written to NVMe before their acknowledgement.", {}, n.write_throughs());
  e.Counter("kvtier_nvme_write_through_failures_total",
            "Blocks of write-through puts not stored: NVMe could not take the put.", {},
            n.write_through_failures());
  e.Gauge("kvtier_nvme_shutdown_saved_blocks",
          "DRAM blocks written to NVMe at the last clean shutdown.", {}, n.shutdown_saved());
  e.Counter("kvtier_nvme_checksum_failures_total",
            "Records that failed a check: misses, never served.", {}, n.checksum_failures());
  e.Counter("kvtier_nvme_io_errors_total", "NVMe reads and writes that failed.", {}, n.io_errors());
  e.Counter("kvtier_nvme_index_errors_total", "RocksDB index operations that failed.", {},
            n.index_errors());
  e.Counter("kvtier_nvme_region_evictions_total", "Log regions reclaimed for new writes.", {},
            n.region_evictions());
  e.Counter("kvtier_nvme_regions_reclaimed_ahead_total",
            "Of the region evictions, those made ahead of need.", {}, n.reclaimed_ahead());
  e.CounterSeconds("kvtier_nvme_reclaim_stall_seconds_total",
                   "Time the NVMe writer spent reclaiming regions itself, the device idle.", {},
                   n.reclaim_stall_ms());
  e.Counter("kvtier_nvme_region_evicted_blocks_total", "Blocks dropped with their region.", {},
            n.evicted_blocks());
  e.Counter("kvtier_nvme_reinserted_blocks_total", "Hot blocks of reclaimed regions written again.",
            {}, n.reinserted_blocks());
  e.Counter("kvtier_nvme_flash_written_bytes_total", "Bytes written to the device.", {},
            n.flash_bytes_written());
  e.Counter("kvtier_nvme_flash_read_bytes_total", "Bytes read from the device.", {},
            n.flash_bytes_read());
  e.Counter("kvtier_nvme_expired_total", "Reads that found a block past its TTL.", {}, n.expired());
  e.Gauge("kvtier_nvme_region_bytes", "Size of one log region.", {}, n.region_bytes());
  e.Gauge("kvtier_nvme_regions", "Log regions on the device.", {}, n.regions());
  e.Gauge("kvtier_nvme_regions_in_use", "Log regions holding blocks.", {}, n.regions_in_use());
  e.Gauge("kvtier_nvme_dram_index_bytes", "DRAM the NVMe block table takes.", {},
          n.dram_index_bytes());
  e.Gauge("kvtier_nvme_rocksdb_memory_bytes", "Memory the RocksDB index takes.", {},
          n.rocksdb_memory_bytes());
  e.Gauge("kvtier_nvme_blocks_recovered", "Blocks served again after this start.", {},
          n.blocks_recovered());
  e.Gauge("kvtier_nvme_index_rebuilt", "1 if this start rebuilt the index.", {},
          n.index_rebuilt() ? 1 : 0);
  e.GaugeSeconds("kvtier_nvme_startup_seconds", "Time this start took to open the NVMe tier.", {},
                 n.startup_ms());
  e.Gauge("kvtier_nvme_demotion_queue_bytes", "Evicted bytes staged, waiting to be written.", {},
          n.demotion_queue_bytes());
  e.CounterSeconds("kvtier_nvme_demotion_encode_seconds_total",
                   "Time spent encoding demotions of compressed namespaces.", {},
                   n.demotion_encode_ms());
  e.Counter("kvtier_nvme_prefetch_requests_total", "Prefetch hints received.", {},
            n.prefetch_requests());
  e.Counter("kvtier_nvme_prefetch_promoted_total", "Blocks promoted by prefetch hints.", {},
            n.prefetch_promoted());
  e.Counter("kvtier_nvme_prefetch_dropped_total", "Hinted keys left alone at the bound.", {},
            n.prefetch_dropped());
  e.Counter("kvtier_nvme_quota_drops_total",
            "Records dropped to keep namespaces within their NVMe quotas.", {}, n.quota_drops());
  e.Counter("kvtier_nvme_quota_rejections_total",
            "Blocks refused: their namespace's NVMe quota cannot hold them.", {},
            n.quota_rejections());
}

void AddNamespace(Exposition& e, const proto::NamespaceStats& n, bool nvme_on) {
  const proto::NamespaceDescriptor& d = n.namespace_descriptor();
  Labels ns = {{"namespace", absl::StrCat(n.namespace_id())},
               {"model", d.model_id()},
               {"dtype", d.dtype()},
               {"tp_rank", absl::StrCat(d.tp_rank())}};
  e.Gauge(
      "kvtier_namespace_info", "An open namespace, with its compression; always 1.",
      [&] {
        Labels l = ns;
        l.emplace_back("compression",
                       n.options().compression() == proto::COMPRESSION_KVZ ? "kvz" : "none");
        l.emplace_back("block_bytes", absl::StrCat(d.block_bytes()));
        return l;
      }(),
      1);
  Labels dram = ns;
  dram.emplace_back("tier", "dram");
  e.Gauge("kvtier_namespace_blocks", "Blocks the namespace holds in the tier.", dram, n.blocks());
  e.Gauge("kvtier_namespace_used_bytes", "Bytes the namespace's blocks take in the tier.", dram,
          n.used_bytes());
  AddCounters(e, "kvtier_namespace_", dram, n.counters());
  e.Gauge("kvtier_namespace_dram_raw_bytes",
          "Bytes of the namespace's DRAM blocks before compression.", ns, n.raw_bytes());
  e.Gauge("kvtier_namespace_dram_slot_bytes",
          "Bytes of the DRAM slots the namespace's blocks occupy (what its quota bounds).", ns,
          n.dram_slot_bytes());
  e.Gauge("kvtier_namespace_pinned_blocks", "The namespace's blocks pinned in DRAM.", ns,
          n.pinned_blocks());
  e.Counter("kvtier_namespace_expirations_total",
            "Blocks dropped from DRAM because their TTL ran out.", ns, n.expirations());
  e.Counter("kvtier_namespace_quota_evictions_total",
            "DRAM evictions that kept the namespace within its quota.", ns, n.quota_evictions());
  e.Gauge("kvtier_namespace_dram_quota_bytes", "The namespace's DRAM quota; 0: none.", ns,
          n.limits().dram_quota_bytes());
  e.Gauge("kvtier_namespace_default_ttl_seconds",
          "TTL of the namespace's puts that give none; 0: they do not expire.", ns,
          n.limits().default_ttl_seconds());
  e.SignedGauge("kvtier_namespace_priority", "The namespace's priority: lower is evicted first.",
                ns, n.limits().priority());
  if (!nvme_on) return;
  Labels nvme = ns;
  nvme.emplace_back("tier", "nvme");
  e.Gauge("kvtier_namespace_blocks", "Blocks the namespace holds in the tier.", nvme,
          n.nvme_blocks());
  e.Gauge("kvtier_namespace_used_bytes", "Bytes the namespace's blocks take in the tier.", nvme,
          n.nvme_used_bytes());
  AddCounters(e, "kvtier_namespace_", nvme, n.nvme_counters());
  e.Counter("kvtier_namespace_nvme_written_stored_bytes_total",
            "Bytes of the namespace's blocks written to flash as stored.", ns,
            n.nvme_written_stored_bytes());
  e.Counter("kvtier_namespace_nvme_written_raw_bytes_total",
            "Bytes of the namespace's blocks written to flash, before compression.", ns,
            n.nvme_written_raw_bytes());
  e.Gauge("kvtier_namespace_nvme_quota_bytes", "The namespace's NVMe quota; 0: none.", ns,
          n.limits().nvme_quota_bytes());
  e.Counter("kvtier_namespace_nvme_quota_drops_total",
            "NVMe records dropped to keep the namespace within its quota.", ns,
            n.nvme_quota_drops());
  e.Counter("kvtier_namespace_nvme_quota_rejections_total",
            "Blocks refused for NVMe: the namespace's quota cannot hold them.", ns,
            n.nvme_quota_rejections());
}

}  // namespace

std::string RenderPrometheusText(const proto::StatsReply& stats, std::string_view version) {
  Exposition e;
  AddServer(e, stats.server(), version);
  bool nvme_on = false;
  for (const proto::TierStats& t : stats.tiers()) {
    AddTier(e, t);
    nvme_on |= t.tier() == proto::TIER_NVME;
  }
  for (const proto::NamespaceStats& n : stats.namespaces()) AddNamespace(e, n, nvme_on);
  return e.Render();
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace kvtier::server
