#include "kvtier/replay/trace.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace kvtier::replay {
namespace {

TEST(ParseMooncakeTraceTest, ReadsRequestsInOrder) {
  absl::StatusOr<Trace> t = ParseMooncakeTrace(
      R"({"timestamp": 0, "input_length": 1000, "output_length": 6, "hash_ids": [0, 1]})"
      "\n\n"
      R"({"timestamp": 40, "input_length": 600, "output_length": 4, "hash_ids": [0, 1, 2]})"
      "\r\n"
      R"({"hash_ids": []})");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->requests.size(), 3u);
  EXPECT_EQ(t->requests[1].timestamp_ms, 40);
  EXPECT_EQ(t->requests[1].input_length, 600u);
  EXPECT_EQ(t->requests[1].output_length, 4u);
  EXPECT_EQ(t->requests[1].hash_ids, (std::vector<uint64_t>{0, 1, 2}));
  EXPECT_TRUE(t->requests[2].hash_ids.empty());
  EXPECT_EQ(t->TotalBlocks(), 5u);
}

TEST(ParseMooncakeTraceTest, ErrorsNameTheLine) {
  const struct {
    const char* text;
    const char* message;
  } cases[] = {
      {"{\"hash_ids\": [1]}\nnot json", "trace line 2: not a JSON object"},
      {"[1, 2]", "trace line 1: not a JSON object"},
      {"{\"timestamp\": 3}", "\"hash_ids\" missing"},
      {"{\"hash_ids\": 7}", "\"hash_ids\" missing or not an array"},
      {"{\"hash_ids\": [1, -2]}", "a hash id is not a non-negative integer"},
      {"{\"hash_ids\": [1, \"x\"]}", "a hash id is not a non-negative integer"},
      {"{\"hash_ids\": [1], \"timestamp\": -5}", "\"timestamp\" is not a non-negative integer"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<Trace> t = ParseMooncakeTrace(c.text);
    ASSERT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(t.status().message().find(c.message), absl::string_view::npos)
        << t.status() << " for " << c.text;
  }
}

TEST(LoadMooncakeTraceTest, ReadsAFileAndReportsAMissingOne) {
  EXPECT_EQ(LoadMooncakeTrace("/nonexistent/trace.jsonl").status().code(),
            absl::StatusCode::kNotFound);
  const std::string path = ::testing::TempDir() + "/kvtier_trace_test.jsonl";
  {
    std::ofstream out(path);
    out << R"({"timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": [4, 5]})"
        << "\n";
  }
  absl::StatusOr<Trace> t = LoadMooncakeTrace(path);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->requests.size(), 1u);
  EXPECT_EQ(t->requests[0].hash_ids, (std::vector<uint64_t>{4, 5}));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kvtier::replay
