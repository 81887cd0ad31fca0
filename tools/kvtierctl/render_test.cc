#include "render.h"

#include <gtest/gtest.h>

#include <sstream>

namespace kvtier::ctl {
namespace {

proto::StatsReply SampleStats() {
  proto::StatsReply r;
  r.mutable_server()->set_uptime_ms(3'723'000);
  r.mutable_server()->set_connections_active(2);
  proto::TierStats* t = r.add_tiers();
  t->set_tier(proto::TIER_DRAM);
  t->set_capacity_bytes(64ull << 20);
  t->set_used_bytes(16ull << 20);
  t->set_blocks(256);
  t->mutable_counters()->set_hits(3);
  t->mutable_counters()->set_misses(1);
  proto::NamespaceStats* n = r.add_namespaces();
  n->set_namespace_id(1);
  n->mutable_namespace_descriptor()->set_model_id("llama");
  n->mutable_namespace_descriptor()->set_dtype("bf16");
  n->mutable_namespace_descriptor()->set_block_tokens(16);
  n->mutable_namespace_descriptor()->set_block_bytes(65536);
  n->mutable_namespace_descriptor()->set_tenant_salt("secret");
  n->set_blocks(256);
  return r;
}

TEST(Render, NvmeTierFiguresAppearInJsonAndTable) {
  proto::StatsReply r = SampleStats();
  proto::TierStats* t = r.add_tiers();
  t->set_tier(proto::TIER_NVME);
  t->set_capacity_bytes(1ull << 30);
  t->mutable_nvme()->set_promotions(7);
  t->mutable_nvme()->set_demotions(11);
  t->mutable_nvme()->set_admission_rejections(5);
  t->mutable_nvme()->set_checksum_failures(2);
  t->mutable_nvme()->set_flash_bytes_written(3ull << 20);
  t->mutable_nvme()->set_engine("io_uring");
  t->mutable_nvme()->set_admission_policy("hits:1");
  t->mutable_nvme()->set_demotion_encoder("gpu (NVIDIA H100 80GB HBM3)");
  t->mutable_nvme()->set_demotion_encode_ms(42);
  proto::HealthReply h;
  const auto j = StatsJson(r, h, "unix:///x.sock");
  ASSERT_EQ(j["tiers"].size(), 2u);
  EXPECT_FALSE(j["tiers"][0].contains("nvme"));
  const auto& n = j["tiers"][1]["nvme"];
  EXPECT_EQ(j["tiers"][1]["tier"], "nvme");
  EXPECT_EQ(n["promotions"], 7);
  EXPECT_EQ(n["demotions"], 11);
  EXPECT_EQ(n["admission_rejections"], 5);
  EXPECT_EQ(n["checksum_failures"], 2);
  EXPECT_EQ(n["flash_bytes_written"], 3 << 20);
  EXPECT_EQ(n["engine"], "io_uring");
  EXPECT_EQ(n["demotion_encoder"], "gpu (NVIDIA H100 80GB HBM3)");
  EXPECT_EQ(n["demotion_encode_ms"], 42);
  std::ostringstream text;
  PrintStats(r, h, "unix:///x.sock", text);
  EXPECT_NE(text.str().find("promotions 7, demotions 11"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("refused by admission 5"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("checksum failures 2"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("encoded by gpu (NVIDIA H100 80GB HBM3) in 42 ms"), std::string::npos)
      << text.str();
}

TEST(Render, RequestLatencyQuantilesAreBucketBounds) {
  proto::RequestLatency l;
  l.set_op("get");
  // 24 buckets; 90 requests of at most 8 us, 9 of at most 1 ms (2^10 us), 1 beyond 4.2 s.
  for (int i = 0; i < 24; ++i) l.add_bucket_counts(i == 3 ? 90 : i == 10 ? 9 : i == 23 ? 1 : 0);
  l.set_count(100);
  l.set_sum_ns(100'000);
  EXPECT_EQ(LatencyQuantileMicros(l, 0.5), 8);
  EXPECT_EQ(LatencyQuantileMicros(l, 0.9), 8);
  EXPECT_EQ(LatencyQuantileMicros(l, 0.91), 1024);
  EXPECT_EQ(LatencyQuantileMicros(l, 0.99), 1024);
  EXPECT_EQ(LatencyQuantileMicros(l, 0.999), -(int64_t{1} << 22));
  EXPECT_EQ(LatencyQuantileMicros(proto::RequestLatency(), 0.5), 0);
  EXPECT_EQ(FormatLatencyBound(8), "<= 8us");
  EXPECT_EQ(FormatLatencyBound(1024), "<= 1.0ms");
  EXPECT_EQ(FormatLatencyBound(-(int64_t{1} << 22)), "> 4.2s");
  EXPECT_EQ(FormatLatencyBound(0), "-");
  // The open bucket's bound follows the histogram's length, not a constant: a daemon with
  // 12 buckets reports the slowest requests as more than 2^10 us.
  proto::RequestLatency short_histogram;
  for (int i = 0; i < 12; ++i) short_histogram.add_bucket_counts(i == 11 ? 1 : 0);
  EXPECT_EQ(LatencyQuantileMicros(short_histogram, 0.5), -1024);
  EXPECT_EQ(FormatLatencyBound(LatencyQuantileMicros(short_histogram, 0.5)), "> 1.0ms");

  proto::StatsReply r = SampleStats();
  *r.mutable_server()->add_request_latency() = l;
  const auto j = StatsJson(r, proto::HealthReply(), "unix:///x.sock");
  const auto& g = j["server"]["request_latency"][0];
  EXPECT_EQ(g["op"], "get");
  EXPECT_EQ(g["count"], 100);
  EXPECT_EQ(g["p50_us_at_most"], 8);
  EXPECT_EQ(g["p99_us_at_most"], 1024);
  EXPECT_EQ(g["bucket_counts"].size(), 24u);
  std::ostringstream text;
  PrintStats(r, proto::HealthReply(), "unix:///x.sock", text);
  EXPECT_NE(text.str().find("REQUEST"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("<= 1.0ms"), std::string::npos) << text.str();
}

TEST(Render, TopShowsTheIntervalNotTheTotals) {
  // Since start: 900 hits and 100 misses (90%); in the last 2 s: 10 hits and 30 misses (25%).
  proto::StatsReply before = SampleStats();
  before.mutable_server()->set_requests(1000);
  proto::Counters* c = before.mutable_tiers(0)->mutable_counters();
  c->set_hits(890);
  c->set_misses(70);
  c->set_lookup_keys(500);
  c->set_lookup_hit_keys(400);
  c->set_puts(5);
  proto::RequestLatency* l = before.mutable_server()->add_request_latency();
  l->set_op("get");
  for (int i = 0; i < 24; ++i) l->add_bucket_counts(i == 3 ? 1000 : 0);  // all <= 8 us
  proto::StatsReply after = before;
  after.mutable_server()->set_requests(1100);
  c = after.mutable_tiers(0)->mutable_counters();
  c->set_hits(900);
  c->set_misses(100);
  c->set_lookup_keys(600);
  c->set_lookup_hit_keys(450);
  c->set_puts(5);
  // The interval's 100 gets: 98 within 8 us, 2 within 1 ms: p99 <= 1 ms (totals: <= 8 us).
  after.mutable_server()->mutable_request_latency(0)->set_bucket_counts(3, 1098);
  after.mutable_server()->mutable_request_latency(0)->set_bucket_counts(10, 2);
  const auto j = IntervalJson(before, after, 2.0);
  EXPECT_DOUBLE_EQ(j["requests_per_s"].get<double>(), 50.0);
  const auto& dram = j["tiers"][0];
  EXPECT_EQ(dram["tier"], "dram");
  EXPECT_DOUBLE_EQ(dram["gets_per_s"].get<double>(), 20.0);
  EXPECT_DOUBLE_EQ(dram["hit_rate"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(dram["lookup_hit_rate"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(dram["puts_per_s"].get<double>(), 0.0);
  EXPECT_EQ(j["request_p99_us_at_most"]["get"], 1024);
  // Nothing happened: no rate, not 0 %.
  EXPECT_TRUE(IntervalJson(after, after, 1.0)["tiers"][0]["hit_rate"].is_null());
  // A restarted daemon's counters went down: they count from zero.
  EXPECT_DOUBLE_EQ(IntervalJson(after, before, 1.0)["tiers"][0]["gets_per_s"].get<double>(), 960.0);
  std::ostringstream text;
  PrintInterval(before, after, 2.0, true, text);
  EXPECT_NE(text.str().find("25.0%"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("50 requests/s; p99 get <= 1.0ms"), std::string::npos) << text.str();
}

TEST(Render, Durations) {
  EXPECT_EQ(FormatDuration(12'345), "12.3s");
  EXPECT_EQ(FormatDuration(249'000), "4m 09s");
  EXPECT_EQ(FormatDuration(3'723'000), "1h 02m");
  EXPECT_EQ(FormatDuration(3 * 86'400'000ull + 4 * 3'600'000ull), "3d 04h");
}

TEST(Render, HitRateIsUndefinedWithoutRequests) {
  EXPECT_EQ(FormatHitRate(0, 0), "-");
  EXPECT_EQ(FormatHitRate(3, 1), "75.0%");
  EXPECT_EQ(FormatRatio(3, 2), "1.50x");
  EXPECT_EQ(FormatRatio(3, 0), "-");
}

TEST(Render, StatsJsonHasEveryFieldScriptsUse) {
  proto::HealthReply h;
  h.set_server_version("0.1.0");
  const auto j = StatsJson(SampleStats(), h, "unix:///x.sock");
  EXPECT_EQ(j["server"]["uptime_ms"], 3'723'000);
  EXPECT_EQ(j["server"]["server_version"], "0.1.0");
  ASSERT_EQ(j["tiers"].size(), 1u);
  const auto& t = j["tiers"][0];
  EXPECT_EQ(t["tier"], "dram");
  for (const char* field : {"capacity_bytes", "used_bytes", "blocks", "hits", "misses", "hit_rate",
                            "evictions", "bytes_in", "bytes_out"}) {
    EXPECT_TRUE(t.contains(field)) << field;
  }
  EXPECT_DOUBLE_EQ(t["hit_rate"].get<double>(), 0.75);
  const auto& n = j["namespaces"][0];
  EXPECT_EQ(n["model_id"], "llama");
  EXPECT_EQ(n["tp_size"], 1);            // unset on the wire means 1
  EXPECT_EQ(n["tenant_salt_bytes"], 6);  // the salt itself is never shown
  EXPECT_TRUE(n["hit_rate"].is_null());  // no requests yet
  EXPECT_EQ(j.dump().find("secret"), std::string::npos);
}

TEST(Render, StatsTableShowsTiersAndNamespaces) {
  proto::HealthReply h;
  h.set_server_version("0.1.0");
  std::ostringstream out;
  PrintStats(SampleStats(), h, "unix:///x.sock", out);
  const std::string text = out.str();
  EXPECT_NE(text.find("up 1h 02m"), std::string::npos) << text;
  EXPECT_NE(text.find("64.00 MiB"), std::string::npos) << text;
  EXPECT_NE(text.find("25.0%"), std::string::npos) << text;
  EXPECT_NE(text.find("75.0%"), std::string::npos) << text;
  EXPECT_NE(text.find("llama"), std::string::npos) << text;
}

TEST(Render, CompressionRatiosPerTierAndNamespace) {
  proto::StatsReply r = SampleStats();
  r.mutable_tiers(0)->set_stored_bytes(2 << 20);
  r.mutable_tiers(0)->set_raw_bytes(3 << 20);
  proto::NamespaceStats* n = r.mutable_namespaces(0);
  n->mutable_options()->set_compression(proto::COMPRESSION_KVZ);
  n->set_used_bytes(4 << 20);
  n->set_raw_bytes(6 << 20);
  n->set_dram_slot_bytes(5 << 20);
  n->set_nvme_written_stored_bytes(10);
  n->set_nvme_written_raw_bytes(15);
  const auto j = StatsJson(r, proto::HealthReply(), "unix:///x.sock");
  EXPECT_DOUBLE_EQ(j["tiers"][0]["compression_ratio"].get<double>(), 1.5);
  EXPECT_EQ(j["namespaces"][0]["compression"], "kvz");
  EXPECT_DOUBLE_EQ(j["namespaces"][0]["compression_ratio"].get<double>(), 1.5);
  EXPECT_EQ(j["namespaces"][0]["dram_slot_bytes"], 5 << 20);  // what the DRAM quota counts
  EXPECT_EQ(j["namespaces"][0]["nvme_written_raw_bytes"], 15);
  proto::HealthReply h;
  std::ostringstream stats;
  PrintStats(r, h, "unix:///x.sock", stats);
  EXPECT_NE(stats.str().find("1.50x"), std::string::npos) << stats.str();
  EXPECT_EQ(stats.str().find("size class"), std::string::npos) << "no reclaims, no line";
  r.mutable_tiers(0)->set_slab_reclaims(7);
  r.mutable_tiers(0)->set_blocks_moved(300);
  r.mutable_tiers(0)->set_slab_reclaims_ahead(5);
  const auto with = StatsJson(r, proto::HealthReply(), "unix:///x.sock");
  EXPECT_EQ(with["tiers"][0]["slab_reclaims"], 7);
  EXPECT_EQ(with["tiers"][0]["slab_reclaims_ahead"], 5);
  EXPECT_EQ(with["tiers"][0]["blocks_moved"], 300);
  std::ostringstream moved;
  PrintStats(r, h, "unix:///x.sock", moved);
  EXPECT_NE(moved.str().find("7 slabs taken by another size class (5 ahead of need), 300 blocks "
                             "moved"),
            std::string::npos)
      << moved.str();
  std::ostringstream spaces;
  PrintNamespaces(r, spaces);
  EXPECT_NE(spaces.str().find("kvz"), std::string::npos) << spaces.str();
}

TEST(Render, NvmeQuotasAndWriteThroughFailuresInJsonAndTables) {
  proto::StatsReply r = SampleStats();
  proto::TierStats* t = r.add_tiers();
  t->set_tier(proto::TIER_NVME);
  t->mutable_nvme()->set_quota_drops(9);
  t->mutable_nvme()->set_quota_rejections(4);
  t->mutable_nvme()->set_write_throughs(12);
  t->mutable_nvme()->set_write_through_failures(3);
  proto::NamespaceStats* n = r.mutable_namespaces(0);
  n->mutable_limits()->set_nvme_quota_bytes(3ull << 30);
  n->set_nvme_quota_drops(9);
  n->set_nvme_quota_rejections(4);
  const auto j = StatsJson(r, proto::HealthReply(), "unix:///x.sock");
  EXPECT_EQ(j["namespaces"][0]["nvme_quota_bytes"], 3ull << 30);
  EXPECT_EQ(j["namespaces"][0]["nvme_quota_drops"], 9);
  EXPECT_EQ(j["namespaces"][0]["nvme_quota_rejections"], 4);
  EXPECT_EQ(j["tiers"][1]["nvme"]["quota_drops"], 9);
  EXPECT_EQ(j["tiers"][1]["nvme"]["quota_rejections"], 4);
  EXPECT_EQ(j["tiers"][1]["nvme"]["write_through_failures"], 3);
  std::ostringstream stats;
  PrintStats(r, proto::HealthReply(), "unix:///x.sock", stats);
  EXPECT_NE(stats.str().find("quotas: 9 records dropped, 4 blocks refused"), std::string::npos)
      << stats.str();
  EXPECT_NE(stats.str().find("write-through 12 (failed 3)"), std::string::npos) << stats.str();
  std::ostringstream spaces;
  PrintNamespaces(r, spaces);
  EXPECT_NE(spaces.str().find("NVME QUOTA"), std::string::npos) << spaces.str();
  EXPECT_NE(spaces.str().find("3.00 GiB"), std::string::npos) << spaces.str();
}

}  // namespace
}  // namespace kvtier::ctl
