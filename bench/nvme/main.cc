// kvtier-nvme-bench: see bench.h and compare_fio.sh. Prints one JSON object per run on stdout.
#include <iostream>

#include "CLI/CLI.hpp"
#include "bench.h"
#include "kvtier/common/units.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  using kvtier::bench::nvme::Config;
  Config c;
  std::string mode = "write", capacity = "0", region = "64MiB", block = "256KiB", bytes = "4GiB",
              fill = "0", quota = "0";
  CLI::App app{"kvtier-nvme-bench: NVMe tier throughput, latency and startup on a file"};
  app.add_option("--mode", mode, "write | read | latency | startup")->required();
  app.add_option("--file", c.file, "tier file (index beside it: FILE.index)")->required();
  app.add_option("--capacity", capacity, "size of a new file (0: the existing file's)")
      ->capture_default_str();
  app.add_option("--region", region, "log region size")->capture_default_str();
  app.add_option("--reclaim-batch", c.reclaim_batch,
                 "regions reclaimed per wait for the commits in flight (0: the tier's default)")
      ->capture_default_str();
  app.add_option("--block", block, "block size")->capture_default_str();
  app.add_option("--qd", c.queue_depth, "queue depth (blocks in flight)")->capture_default_str();
  app.add_option("--bytes", bytes, "write mode: bytes to write")->capture_default_str();
  app.add_option("--fill", fill,
                 "write mode: bytes written first, untimed (the capacity or more: the timed "
                 "writes then reclaim regions, as a full tier does)")
      ->capture_default_str();
  app.add_option("--quota", quota,
                 "write mode: the namespace's NVMe quota (0: none); a write past it drops the "
                 "namespace's oldest blocks in its commit, which is what this measures")
      ->capture_default_str();
  app.add_option("--batch", c.batch_blocks, "blocks per WriteAsync / ReadBatch call")
      ->capture_default_str();
  app.add_option("--window", c.window, "write mode: WriteAsync calls in flight")
      ->capture_default_str();
  app.add_option("--seconds", c.seconds, "read and latency modes: duration")->capture_default_str();
  app.add_option("--readers", c.readers, "read mode: threads calling ReadBatch")
      ->capture_default_str();
  app.add_option("--blocks", c.blocks, "startup mode: blocks to index")->capture_default_str();
  app.add_option("--engine", c.engine, "auto | io_uring | thread_pool")->capture_default_str();
  app.add_flag("!--no-verify", c.verify, "skip checking the bytes of each read");
  CLI11_PARSE(app, argc, argv);
  // stdout carries the JSON result; the tier's log lines go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("kvtier-nvme-bench"));

  for (auto [text, out] : {std::pair{&capacity, &c.capacity_bytes},
                           {&region, &c.region_bytes},
                           {&block, &c.block_bytes},
                           {&bytes, &c.write_bytes},
                           {&fill, &c.fill_bytes},
                           {&quota, &c.quota_bytes}}) {
    absl::StatusOr<uint64_t> v = kvtier::ParseByteSize(*text);
    if (!v.ok()) {
      std::cerr << v.status() << "\n";
      return 2;
    }
    *out = *v;
  }
  absl::StatusOr<nlohmann::json> result =
      mode == "write"     ? kvtier::bench::nvme::RunWrite(c)
      : mode == "read"    ? kvtier::bench::nvme::RunRead(c)
      : mode == "latency" ? kvtier::bench::nvme::RunLatency(c)
      : mode == "startup" ? kvtier::bench::nvme::RunStartup(c)
                          : absl::InvalidArgumentError("unknown --mode " + mode);
  if (!result.ok()) {
    std::cerr << "kvtier-nvme-bench: " << result.status() << "\n";
    return 1;
  }
  std::cout << result->dump() << std::endl;
  return 0;
}
