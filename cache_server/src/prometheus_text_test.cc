#include "prometheus_text.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "latency_histogram.h"

namespace kvtier::server {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// Sets every integer field of `m` but those in `skip` to a value no other field gets (`*next`,
// counting up), and records the text each should appear as on the page: a `_ms` figure in
// seconds. Strings and bools are labels or 0/1 and are checked by name.
void FillDistinct(Message* m, uint64_t* next, std::vector<std::string>* expected,
                  const std::set<std::string>& skip = {}) {
  const auto* d = m->GetDescriptor();
  const auto* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_repeated() || skip.contains(std::string(f->name()))) continue;
    const uint64_t v = (*next)++ * 1000 + 7;
    std::string text = absl::StrCat(v);
    if (absl::EndsWith(f->name(), "_ms")) text = absl::StrFormat("%u.%03u", v / 1000, v % 1000);
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_UINT64:
        r->SetUInt64(m, f, v);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        r->SetUInt32(m, f, static_cast<uint32_t>(v));
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(m, f, -static_cast<int32_t>(v));
        text = absl::StrCat("-", v);
        break;
      default:
        continue;
    }
    expected->push_back(absl::StrCat(d->name(), ".", f->name(), "=", text));
  }
}

struct Sample {
  std::string family;
  std::string series;  // name{labels}
  std::string value;
};

struct Page {
  std::map<std::string, std::string> help, type;
  std::vector<Sample> samples;
  std::map<std::string, std::string> values;  // series -> value
};

// Reads a text-format page strictly enough to catch what Prometheus would reject: a sample
// before its family's TYPE, a family declared twice, a family's samples not together.
Page Parse(const std::string& text) {
  Page p;
  std::string current;
  std::set<std::string> closed;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> words = absl::StrSplit(line, absl::MaxSplits(' ', 3));
    if (words[0] == "#") {
      EXPECT_GE(words.size(), 4u) << line;
      auto& table = words[1] == "HELP" ? p.help : p.type;
      EXPECT_TRUE(words[1] == "HELP" || words[1] == "TYPE") << line;
      EXPECT_FALSE(table.contains(words[2])) << "declared twice: " << line;
      EXPECT_FALSE(closed.contains(words[2])) << "family split: " << line;
      if (!current.empty() && current != words[2]) closed.insert(current);
      current = words[2];
      table[words[2]] = words[3];
      continue;
    }
    const size_t space = line.rfind(' ');
    Sample s{std::string(line.substr(0, line.find_first_of("{ "))),
             std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
    // A histogram's samples are its name with _bucket, _sum or _count.
    if (p.type[current] == "histogram") {
      for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
        if (s.family == current + std::string(suffix)) s.family = current;
      }
    }
    EXPECT_EQ(s.family, current) << "sample outside its family: " << line;
    EXPECT_TRUE(p.type.contains(s.family)) << line;
    EXPECT_FALSE(p.values.contains(s.series)) << "series twice: " << line;
    p.values[s.series] = s.value;
    p.samples.push_back(std::move(s));
  }
  return p;
}

proto::StatsReply FullReply(std::vector<std::string>* expected) {
  proto::StatsReply r;
  uint64_t next = 1;
  FillDistinct(r.mutable_server(), &next, expected);
  r.mutable_server()->set_eviction_policy("prefix-slru");
  for (const char* op : {"get", "put"}) {
    proto::RequestLatency* l = r.mutable_server()->add_request_latency();
    l->set_op(op);
    for (int i = 0; i < 24; ++i) l->add_bucket_counts(i % 3);
    l->set_count(23);
    l->set_sum_ns(1'234'567'891);
  }
  proto::TierStats* dram = r.add_tiers();
  dram->set_tier(proto::TIER_DRAM);
  FillDistinct(dram, &next, expected, {"tier"});
  FillDistinct(dram->mutable_counters(), &next, expected);
  proto::TierStats* nvme = r.add_tiers();
  nvme->set_tier(proto::TIER_NVME);
  // Slab reclaims are DRAM's alone.
  FillDistinct(nvme, &next, expected,
               {"tier", "slab_reclaims", "blocks_moved", "slab_reclaims_ahead"});
  FillDistinct(nvme->mutable_counters(), &next, expected);
  FillDistinct(nvme->mutable_nvme(), &next, expected);
  nvme->mutable_nvme()->set_engine("io_uring");
  nvme->mutable_nvme()->set_admission_policy("hits:1");
  nvme->mutable_nvme()->set_demotion_encoder("cpu (2 threads)");
  nvme->mutable_nvme()->set_index_rebuilt(true);
  for (uint32_t id : {1u, 2u}) {
    proto::NamespaceStats* n = r.add_namespaces();
    n->set_namespace_id(id);
    FillDistinct(n, &next, expected, {"namespace_id"});
    FillDistinct(n->mutable_counters(), &next, expected);
    FillDistinct(n->mutable_nvme_counters(), &next, expected);
    FillDistinct(n->mutable_limits(), &next, expected);
    proto::NamespaceDescriptor* d = n->mutable_namespace_descriptor();
    d->set_model_id(id == 1 ? "llama-3-8b" : "odd \"m\\o\ndel\"");
    d->set_dtype("bf16");
    d->set_tp_rank(id);
    d->set_block_bytes(65536);
    n->mutable_options()->set_compression(id == 1 ? proto::COMPRESSION_KVZ
                                                  : proto::COMPRESSION_NONE);
  }
  return r;
}

TEST(PrometheusText, EveryFigureOfTheStatsReplyIsOnThePage) {
  std::vector<std::string> expected;
  const std::string page = RenderPrometheusText(FullReply(&expected), "1.2.3");
  const Page p = Parse(page);
  std::set<std::string> values;
  for (const Sample& s : p.samples) values.insert(s.value);
  ASSERT_GT(expected.size(), 100u);
  for (const std::string& e : expected) {
    const std::string value = e.substr(e.find('=') + 1);
    EXPECT_TRUE(values.contains(value)) << e << " is not on the page (a field of kvtier.proto "
                                        << "without a metric in prometheus_text.cc?)";
  }
}

TEST(PrometheusText, PageIsWellFormedAndNamedByConvention) {
  std::vector<std::string> expected;
  const Page p = Parse(RenderPrometheusText(FullReply(&expected), "1.2.3"));
  ASSERT_FALSE(p.samples.empty());
  for (const auto& [family, type] : p.type) {
    EXPECT_TRUE(p.help.contains(family)) << family;
    EXPECT_TRUE(absl::StartsWith(family, "kvtier_")) << family;
    EXPECT_EQ(absl::EndsWith(family, "_total"), type == "counter") << family << " " << type;
    EXPECT_FALSE(absl::StrContains(family, "_ms")) << family << ": use seconds";
  }
}

TEST(PrometheusText, SeriesCarryTheirTierAndNamespace) {
  std::vector<std::string> expected;
  const proto::StatsReply r = FullReply(&expected);
  const Page p = Parse(RenderPrometheusText(r, "1.2.3"));
  auto value = [&](const std::string& series) {
    auto it = p.values.find(series);
    return it == p.values.end() ? std::string("(absent)") : it->second;
  };
  EXPECT_EQ(value("kvtier_tier_hits_total{tier=\"dram\"}"),
            absl::StrCat(r.tiers(0).counters().hits()));
  EXPECT_EQ(value("kvtier_tier_misses_total{tier=\"nvme\"}"),
            absl::StrCat(r.tiers(1).counters().misses()));
  EXPECT_EQ(value("kvtier_tier_capacity_bytes{tier=\"nvme\"}"),
            absl::StrCat(r.tiers(1).capacity_bytes()));
  const std::string ns1 = "namespace=\"1\",model=\"llama-3-8b\",dtype=\"bf16\",tp_rank=\"1\"";
  EXPECT_EQ(value(absl::StrCat("kvtier_namespace_hits_total{", ns1, ",tier=\"dram\"}")),
            absl::StrCat(r.namespaces(0).counters().hits()));
  EXPECT_EQ(value(absl::StrCat("kvtier_namespace_hits_total{", ns1, ",tier=\"nvme\"}")),
            absl::StrCat(r.namespaces(0).nvme_counters().hits()));
  EXPECT_EQ(value(absl::StrCat("kvtier_namespace_info{", ns1,
                               ",compression=\"kvz\",block_bytes=\"65536\"}")),
            "1");
  EXPECT_EQ(value("kvtier_build_info{version=\"1.2.3\",eviction_policy=\"prefix-slru\"}"), "1");
  EXPECT_EQ(value("kvtier_nvme_index_rebuilt"), "1");
  EXPECT_EQ(value("kvtier_nvme_info{engine=\"io_uring\",admission_policy=\"hits:1\","
                  "demotion_encoder=\"cpu (2 threads)\"}"),
            "1");
}

TEST(PrometheusText, RequestDurationsAreAPrometheusHistogram) {
  proto::StatsReply r;
  proto::RequestLatency* l = r.mutable_server()->add_request_latency();
  l->set_op("get");
  // 24 buckets: 3 requests under 1 us, 2 under 4 us, 1 over 2^22 us.
  for (int i = 0; i < 24; ++i) l->add_bucket_counts(i == 0 ? 3 : i == 2 ? 2 : i == 23 ? 1 : 0);
  l->set_count(6);
  l->set_sum_ns(5'000'012'345);
  const Page p = Parse(RenderPrometheusText(r, "1.2.3"));
  EXPECT_EQ(p.type.at("kvtier_request_duration_seconds"), "histogram");
  auto at = [&](const std::string& s) {
    auto it = p.values.find(s);
    return it == p.values.end() ? std::string("(absent)") : it->second;
  };
  const std::string b = "kvtier_request_duration_seconds_bucket{op=\"get\",le=";
  EXPECT_EQ(at(b + "\"0.000001\"}"), "3");
  EXPECT_EQ(at(b + "\"0.000002\"}"), "3");
  EXPECT_EQ(at(b + "\"0.000004\"}"), "5");  // cumulative
  EXPECT_EQ(at(b + "\"4.194304\"}"), "5");
  EXPECT_EQ(at(b + "\"+Inf\"}"), "6");
  EXPECT_EQ(at("kvtier_request_duration_seconds_count{op=\"get\"}"), "6");
  EXPECT_EQ(at("kvtier_request_duration_seconds_sum{op=\"get\"}"), "5.000012345");
  size_t buckets = 0;
  for (const Sample& s : p.samples) buckets += absl::StrContains(s.series, "_bucket{");
  EXPECT_EQ(buckets, 24u);
}

TEST(LatencyHistogram, BucketsAreAtMostPowersOfTwoMicroseconds) {
  EXPECT_EQ(LatencyHistogram::BucketOf(0), 0);
  EXPECT_EQ(LatencyHistogram::BucketOf(1000), 0);
  EXPECT_EQ(LatencyHistogram::BucketOf(1001), 1);
  EXPECT_EQ(LatencyHistogram::BucketOf(2000), 1);
  EXPECT_EQ(LatencyHistogram::BucketOf(2001), 2);
  EXPECT_EQ(LatencyHistogram::BucketOf(3500), 2);
  EXPECT_EQ(LatencyHistogram::BucketOf(4000), 2);
  EXPECT_EQ(LatencyHistogram::BucketOf(LatencyHistogram::BoundNanos(22)), 22);
  EXPECT_EQ(LatencyHistogram::BucketOf(LatencyHistogram::BoundNanos(22) + 1), 23);
  EXPECT_EQ(LatencyHistogram::BucketOf(~uint64_t{0}), 23);
  // Every duration lands in the lowest bucket whose bound holds it.
  for (uint64_t ns = 1; ns < 20'000'000; ns = ns * 3 / 2 + 1) {
    const int i = LatencyHistogram::BucketOf(ns);
    ASSERT_LE(ns, LatencyHistogram::BoundNanos(i)) << ns;
    if (i > 0) ASSERT_GT(ns, LatencyHistogram::BoundNanos(i - 1)) << ns;
  }
  LatencyHistogram h;
  proto::RequestLatency l;
  EXPECT_FALSE(h.FillProto("get", &l));  // nothing recorded: no entry
  h.Record(500);
  h.Record(3000);
  h.Record(3000);
  ASSERT_TRUE(h.FillProto("get", &l));
  EXPECT_EQ(l.op(), "get");
  EXPECT_EQ(l.count(), 3u);
  EXPECT_EQ(l.sum_ns(), 6500u);
  ASSERT_EQ(l.bucket_counts_size(), LatencyHistogram::kBuckets);
  EXPECT_EQ(l.bucket_counts(0), 1u);
  EXPECT_EQ(l.bucket_counts(2), 2u);
}

TEST(PrometheusText, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  std::vector<std::string> expected;
  const std::string page = RenderPrometheusText(FullReply(&expected), "1.2.3");
  EXPECT_TRUE(absl::StrContains(page, "model=\"odd \\\"m\\\\o\\ndel\\\"\""));
}

TEST(PrometheusText, WithoutNvmeNoNvmeSeries) {
  proto::StatsReply r;
  r.add_tiers()->set_tier(proto::TIER_DRAM);
  r.add_namespaces()->set_namespace_id(3);
  const std::string page = RenderPrometheusText(r, "1.2.3");
  EXPECT_FALSE(absl::StrContains(page, "kvtier_nvme_")) << page;
  EXPECT_FALSE(absl::StrContains(page, "tier=\"nvme\"")) << page;
  EXPECT_TRUE(absl::StrContains(page, "kvtier_namespace_blocks{namespace=\"3\",")) << page;
}

// deploy/ (alerts, recording rules and their tests, the Grafana dashboard) names only metrics
// this page has: a renamed metric must not silently empty a panel or disarm an alert.
TEST(PrometheusText, DeployFilesNameOnlyMetricsThePageHas) {
  std::vector<std::string> expected;
  const Page p = Parse(RenderPrometheusText(FullReply(&expected), "1.2.3"));
  const std::regex metric("kvtier_[a-z0-9_]+");
  size_t names = 0;
  for (const char* file :
       {"deploy/prometheus/kvtier-rules.yml", "deploy/prometheus/kvtier-rules.test.yml",
        "deploy/grafana/kvtier-dashboard.json"}) {
    std::ifstream in(std::filesystem::path(KVTIER_SOURCE_DIR) / file);
    ASSERT_TRUE(in) << file;
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    for (std::sregex_iterator it(text.begin(), text.end(), metric), end; it != end; ++it) {
      ++names;
      std::string name = it->str();
      // A histogram's series: its family's name and a suffix.
      for (std::string suffix : {"_bucket", "_sum", "_count"}) {
        if (!absl::EndsWith(name, suffix)) continue;
        const std::string base = name.substr(0, name.size() - suffix.size());
        if (p.type.contains(base) && p.type.at(base) == "histogram") name = base;
      }
      EXPECT_TRUE(p.type.contains(name))
          << file << " names " << it->str() << ", which kvtierd does not export";
    }
  }
  EXPECT_GT(names, 50u);
}

// The real tool: `promtool check metrics` parses the page as Prometheus does and lints it.
TEST(PrometheusText, PromtoolAcceptsThePage) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not found (Debian package prometheus; scripts/setup.sh installs it)";
  }
  std::vector<std::string> expected;
  const auto path =
      std::filesystem::temp_directory_path() / absl::StrCat("kvtier_metrics_", ::getpid(), ".txt");
  std::ofstream(path) << RenderPrometheusText(FullReply(&expected), "1.2.3");
  const std::string out_path = path.string() + ".out";
  const int rc = std::system(
      absl::StrCat("promtool check metrics < ", path.string(), " > ", out_path, " 2>&1").c_str());
  std::ifstream out(out_path);
  const std::string report((std::istreambuf_iterator<char>(out)), {});
  EXPECT_EQ(rc, 0) << report;
  std::filesystem::remove(path);
  std::filesystem::remove(out_path);
}

}  // namespace
}  // namespace kvtier::server
