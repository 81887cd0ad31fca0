// kvtierd's /metrics endpoint, end to end: the real daemon serves it, a raw HTTP client checks
// the page against the daemon's own StatsReply and the refusals of bad requests, and a real
// Prometheus server scrapes it and answers queries with the same figures.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "kvtier/client/client.h"
#include "nlohmann/json.hpp"
#include "tests/testing/daemon_process.h"
#include "tests/testing/daemon_test.h"
#include "tests/testing/seeded_blocks.h"
#include "tests/testing/stats_lookup.h"

namespace kvtier {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using client::NamespaceHandle;

constexpr uint64_t kBlockBytes = 16 << 10;

struct Reply {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

// One HTTP connection to 127.0.0.1:port that sends whatever it is given and reads responses.
class HttpConnection {
 public:
  explicit HttpConnection(uint16_t port) : socket_(ctx_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  void Send(const std::string& raw) { asio::write(socket_, asio::buffer(raw)); }
  Reply Read() {
    http::response<http::string_body> res;
    boost::system::error_code ec;
    http::read(socket_, buffer_, res, ec);
    if (ec) return Reply{0, "", ec.message()};
    return Reply{res.result_int(), std::string(res[http::field::content_type]), res.body()};
  }
  Reply Get(const std::string& target) {
    Send(absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    return Read();
  }
  // True when the server has closed the connection.
  bool Closed() {
    char c;
    boost::system::error_code ec;
    socket_.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

 private:
  asio::io_context ctx_;
  tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

// series (name{labels}) -> value, from a text-format page.
std::map<std::string, std::string> Series(const std::string& page) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(page, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    const size_t space = line.rfind(' ');
    out[std::string(line.substr(0, space))] = std::string(line.substr(space + 1));
  }
  return out;
}

// A series' value, or a text naming it as absent (so that a failed expectation says which).
std::string ValueOf(const std::map<std::string, std::string>& series, const std::string& name) {
  auto it = series.find(name);
  return it == series.end() ? "(absent: " + name + ")" : it->second;
}

class MetricsTest : public testing::DaemonTest {
 protected:
  void SetUp() override {
    auto port = testing::PickFreePort();
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
    options_.extra_args = {"--metrics-listen", absl::StrCat("127.0.0.1:", port_)};
    StartDaemon();
  }

  NamespaceHandle Open(const std::string& model) {
    auto ns = client_->OpenNamespace(testing::TestDescriptor(model, kBlockBytes));
    EXPECT_TRUE(ns.ok()) << ns.status();
    return ns.ok() ? *ns : NamespaceHandle{};
  }

  // Puts blocks [0, n), then gets [0, n + misses): n hits and `misses` misses.
  void Traffic(const NamespaceHandle& ns, uint64_t n, uint64_t misses) {
    for (uint64_t i = 0; i < n; ++i) {
      const std::vector<std::byte> bytes = testing::SeededBytes(i, kBlockBytes);
      const BlockKey key = testing::SeededKey(i);
      std::span<const std::byte> block(bytes);
      auto r = client_->Put(ns, {&key, 1}, {&block, 1});
      ASSERT_TRUE(r.ok() && client::IsStored((*r)[0])) << i;
    }
    for (uint64_t i = 0; i < n + misses; ++i) {
      std::vector<std::byte> out(kBlockBytes);
      const BlockKey key = testing::SeededKey(i);
      std::span<std::byte> dst(out);
      auto r = client_->Get(ns, {&key, 1}, {&dst, 1});
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ((*r)[0].status.ok(), i < n) << i;
    }
  }

  uint16_t port_ = 0;
};

TEST_F(MetricsTest, PageShowsTheDaemonsOwnFigures) {
  if (IsSkipped()) return;
  const NamespaceHandle ns = Open("metrics-model");
  ASSERT_NO_FATAL_FAILURE(Traffic(ns, 12, 5));
  // A lookup, through the request mailbox where the client has one.
  const std::vector<BlockKey> keys = {testing::SeededKey(0), testing::SeededKey(1)};
  auto found = client_->Lookup(ns, keys);
  ASSERT_TRUE(found.ok()) << found.status();

  // The daemon records a request's duration just after writing its reply, so the client can be
  // a request ahead of the histogram for a moment: scrape until every request is in it.
  HttpConnection http(port_);
  Reply page;
  uint64_t scrapes = 0;
  for (const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);;) {
    page = http.Get("/metrics");
    ++scrapes;
    ASSERT_EQ(page.status, 200u) << page.body;
    uint64_t timed = 0;
    std::string requests;
    for (const auto& [name, value] : Series(page.body)) {
      if (absl::StartsWith(name, "kvtier_request_duration_seconds_count{")) {
        timed += std::stoull(value);
      }
      if (name == "kvtier_requests_total") requests = value;
    }
    if (absl::StrCat(timed) == requests || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(absl::StartsWith(page.content_type, "text/plain; version=0.0.4"))
      << page.content_type;
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const proto::TierStats* dram = testing::FindTierStats(*stats, proto::TIER_DRAM);
  ASSERT_NE(dram, nullptr);
  const auto series = Series(page.body);
  auto at = [&](const std::string& name) { return ValueOf(series, name); };
  // The invariant kvtierctl states: hits + misses == blocks asked for by gets.
  EXPECT_EQ(at("kvtier_tier_hits_total{tier=\"dram\"}"), "12");
  EXPECT_EQ(at("kvtier_tier_misses_total{tier=\"dram\"}"), "5");
  EXPECT_EQ(at("kvtier_tier_puts_total{tier=\"dram\"}"), "12");
  EXPECT_EQ(at("kvtier_tier_blocks{tier=\"dram\"}"), absl::StrCat(dram->blocks()));
  EXPECT_EQ(at("kvtier_tier_used_bytes{tier=\"dram\"}"), absl::StrCat(dram->used_bytes()));
  EXPECT_EQ(at("kvtier_tier_get_bytes_total{tier=\"dram\"}"), absl::StrCat(12 * kBlockBytes));
  const std::string ns_labels = absl::StrCat(
      "namespace=\"", ns.id, "\",model=\"metrics-model\",dtype=\"bf16\",tp_rank=\"0\"");
  EXPECT_EQ(at(absl::StrCat("kvtier_namespace_hits_total{", ns_labels, ",tier=\"dram\"}")), "12");
  EXPECT_EQ(at(absl::StrCat("kvtier_namespace_blocks{", ns_labels, ",tier=\"dram\"}")), "12");
  EXPECT_EQ(at("kvtier_connections_active"), "1");
  EXPECT_EQ(at("kvtier_metrics_scrapes_total"), absl::StrCat(scrapes));  // this one included
  EXPECT_FALSE(absl::StrContains(page.body, "kvtier_nvme_")) << "no NVMe tier in this daemon";
  // Every request the daemon served is in the duration histogram of its kind, once (the client
  // is idle, and the page above waited for the last one), and the +Inf bucket holds them all.
  uint64_t timed = 0;
  for (const auto& [name, value] : series) {
    if (absl::StartsWith(name, "kvtier_request_duration_seconds_count{")) {
      timed += std::stoull(value);
      const std::string op = name.substr(name.find('{'));
      EXPECT_EQ(at(absl::StrCat("kvtier_request_duration_seconds_bucket{",
                                op.substr(1, op.size() - 2), ",le=\"+Inf\"}")),
                value)
          << name;
    }
  }
  EXPECT_EQ(absl::StrCat(timed), at("kvtier_requests_total"));
  EXPECT_GE(std::stoull(at("kvtier_request_duration_seconds_count{op=\"get\"}")), 17u);
  EXPECT_EQ(at("kvtier_request_duration_seconds_count{op=\"open_namespace\"}"), "1");
  EXPECT_EQ(at("kvtier_request_duration_seconds_count{op=\"lookup\"}"), "1");
  EXPECT_EQ(at("kvtier_mailbox_requests_total"), client_->request_mailbox() ? "1" : "0");

  // Keep-alive: the same connection serves the next scrape, which counts the first.
  const Reply again = http.Get("/metrics?x=1");
  ASSERT_EQ(again.status, 200u);
  EXPECT_EQ(Series(again.body)["kvtier_metrics_scrapes_total"], absl::StrCat(scrapes + 1));
  EXPECT_EQ(http.Get("/healthz").body, "ok\n");
  auto after = client_->Stats();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->server().metrics_scrapes(), scrapes + 1);
}

TEST_F(MetricsTest, BadRequestsAreRefusedCountedAndHarmless) {
  if (IsSkipped()) return;
  const NamespaceHandle ns = Open("metrics-model");
  {
    HttpConnection http(port_);
    const Reply missing = http.Get("/metric");
    EXPECT_EQ(missing.status, 404u);
    EXPECT_TRUE(absl::StrContains(missing.body, "GET /metrics")) << missing.body;
    http.Send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    const Reply post = http.Read();
    EXPECT_EQ(post.status, 405u);
    EXPECT_EQ(http.Get("/metrics").status, 200u) << "refusals keep the connection";
  }
  {
    HttpConnection http(port_);
    http.Send("HELLO THERE\r\n\r\n");
    const Reply garbage = http.Read();
    EXPECT_EQ(garbage.status, 400u);
    EXPECT_TRUE(absl::StrContains(garbage.body, "bad request")) << garbage.body;
    EXPECT_TRUE(http.Closed());
  }
  {
    HttpConnection http(port_);
    http.Send(
        absl::StrCat("GET /metrics HTTP/1.1\r\nX-Big: ", std::string(16 << 10, 'a'), "\r\n\r\n"));
    EXPECT_EQ(http.Read().status, 400u) << "a header over 8 KiB";
    EXPECT_TRUE(http.Closed());
  }
  {
    HttpConnection http(port_);
    http.Send("GET /metr");  // and hang up half-way
  }
  // The daemon serves its clients and its scraper as before.
  ASSERT_NO_FATAL_FAILURE(Traffic(ns, 3, 1));
  HttpConnection http(port_);
  const auto series = Series(http.Get("/metrics").body);
  EXPECT_EQ(series.at("kvtier_metrics_bad_requests_total"), "4");
  EXPECT_EQ(series.at("kvtier_tier_hits_total{tier=\"dram\"}"), "3");
}

// With the NVMe tier on, the page grows its kvtier_nvme_* families and tier="nvme" series, and
// the live page passes the real promtool's lint.
class MetricsNvmeTest : public MetricsTest {
 protected:
  void SetUp() override {
    auto port = testing::PickFreePort();
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
    options_.extra_args = {"--metrics-listen", absl::StrCat("127.0.0.1:", port_),
                           "--nvme-path",      "{data_dir}/nvme.img",
                           "--nvme-capacity",  "64MiB"};
    StartDaemon();
  }
};

TEST_F(MetricsNvmeTest, PageCarriesTheNvmeTierAndPassesPromtool) {
  if (IsSkipped()) return;
  const NamespaceHandle ns = Open("metrics-model");
  ASSERT_NO_FATAL_FAILURE(Traffic(ns, 4, 1));
  HttpConnection http(port_);
  const Reply page = http.Get("/metrics");
  ASSERT_EQ(page.status, 200u);
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  const proto::TierStats* nvme = testing::FindTierStats(*stats, proto::TIER_NVME);
  ASSERT_NE(nvme, nullptr);
  const auto series = Series(page.body);
  auto at = [&](const std::string& name) { return ValueOf(series, name); };
  EXPECT_EQ(at("kvtier_tier_capacity_bytes{tier=\"nvme\"}"), absl::StrCat(nvme->capacity_bytes()));
  EXPECT_EQ(at("kvtier_nvme_regions"), absl::StrCat(nvme->nvme().regions()));
  EXPECT_EQ(at(absl::StrCat("kvtier_nvme_info{engine=\"", nvme->nvme().engine(),
                            "\",admission_policy=\"hits:1\",demotion_encoder=\"",
                            nvme->nvme().demotion_encoder(), "\"}")),
            "1");
  EXPECT_EQ(
      at(absl::StrCat("kvtier_namespace_blocks{namespace=\"", ns.id,
                      "\",model=\"metrics-model\",dtype=\"bf16\",tp_rank=\"0\",tier=\"nvme\"}")),
      "0");
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not found (Debian package prometheus; scripts/setup.sh installs it)";
  }
  const std::filesystem::path file = std::filesystem::path(daemon_->data_dir()) / "page.txt";
  std::ofstream(file) << page.body;
  const std::string command =
      absl::StrCat("promtool check metrics < ", file.string(), " > ", file.string(), ".out 2>&1");
  const int rc = std::system(command.c_str());
  std::ifstream out(file.string() + ".out");
  EXPECT_EQ(rc, 0) << std::string((std::istreambuf_iterator<char>(out)), {});
}

// A child process (Prometheus) stopped with the test.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Child() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }

 private:
  pid_t pid_ = -1;
};

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += absl::StrFormat("%%%02X", c);
    }
  }
  return out;
}

// Prometheus itself scrapes kvtierd with the scrape settings of deploy/prometheus and answers
// queries with the daemon's figures.
TEST_F(MetricsTest, PrometheusScrapesTheDaemon) {
  if (IsSkipped()) return;
  if (std::system("command -v prometheus >/dev/null 2>&1") != 0) {
    GTEST_SKIP()
        << "prometheus not found (Debian package prometheus; scripts/setup.sh installs it)";
  }
  const NamespaceHandle ns = Open("metrics-model");
  ASSERT_NO_FATAL_FAILURE(Traffic(ns, 7, 2));

  const std::filesystem::path dir = std::filesystem::path(daemon_->data_dir()) / "prometheus";
  std::filesystem::create_directories(dir);
  auto prom_port = testing::PickFreePort();
  ASSERT_TRUE(prom_port.ok());
  std::ofstream(dir / "prometheus.yml") << absl::StrCat(
      "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      "scrape_configs:\n  - job_name: kvtierd\n    static_configs:\n"
      "      - targets: ['127.0.0.1:",
      port_, "']\n");
  Child prometheus({"prometheus", absl::StrCat("--config.file=", (dir / "prometheus.yml").string()),
                    absl::StrCat("--storage.tsdb.path=", (dir / "data").string()),
                    absl::StrCat("--web.listen-address=127.0.0.1:", *prom_port),
                    "--log.level=warn"});

  auto query = [&](const std::string& promql) -> std::string {
    try {
      HttpConnection http(*prom_port);
      const Reply r = http.Get(absl::StrCat("/api/v1/query?query=", UrlEncode(promql)));
      if (r.status != 200) return "";
      const auto j = nlohmann::json::parse(r.body);
      const auto& result = j["data"]["result"];
      if (result.empty()) return "";
      return result[0]["value"][1].get<std::string>();
    } catch (const std::exception&) {
      return "";  // not up yet
    }
  };
  std::string up, hits, misses;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    up = query("up{job=\"kvtierd\"}");
    hits = query("kvtier_tier_hits_total{job=\"kvtierd\",tier=\"dram\"}");
    misses = query("sum(kvtier_namespace_misses_total{job=\"kvtierd\",tier=\"dram\"})");
    if (up == "1" && !hits.empty() && !misses.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(up, "1") << "Prometheus did not scrape kvtierd within 60 s";
  EXPECT_EQ(hits, "7");
  EXPECT_EQ(misses, "2");
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_GE(stats->server().metrics_scrapes(), 1u);
  EXPECT_EQ(stats->server().metrics_bad_requests(), 0u) << "Prometheus' requests are all good";
}

}  // namespace
}  // namespace kvtier
