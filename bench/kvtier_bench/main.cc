// kvtier-bench: correctness and performance checks against a running kvtierd (and, for
// comparison, Redis and memcached).
//
//   kvtier-bench [--socket PATH | --tcp HOST:PORT] [--json] [--no-progress] MODE ...
//     putget     --blocks N --block-bytes B --seed S [--batch K] [--verify]
//     verify     --blocks N --block-bytes B --seed S [--batch K]
//     lookup     --clients C --keys 64 --seconds T [--block-bytes B]
//     keyops     [--batch 1024] [--batches 4] [--rounds 50] [--block-bytes B] [--resident N]
//     throughput --clients C --block-bytes B --blocks-per-batch K --seconds T
//                [--op put|get|both] [--backend kvtier|redis|memcached] [--working-set SIZE]
//     replay     --trace FILE [--max-requests N] --capacity-blocks N [--policy P | --belady]
//                [--hint-lookahead Q [--hint-pins]]
//     replay     --online --trace FILE [--max-requests N] [--time-scale X] [--block-bytes B]
//                [--compress bf16|fp16] [--hint-lookahead Q]
//
// Sizes accept units (64KiB, 4MiB). Exit codes: 0 ok; 1 target unreachable or a request
// failed; 2 bad command line; 3 verification found wrong bytes. workload.h says how keys and
// bytes derive from the seed.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "kvtier/common/units.h"
#include "modes.h"

namespace {

constexpr char kDefaultSocket[] = "./var/kvtierd.sock";

// Adds a byte-size option that accepts units; the parsed value lands in *out.
CLI::Option* AddSize(CLI::App* app, const std::string& name, uint64_t* out,
                     const std::string& help) {
  return app
      ->add_option_function<std::string>(
          name,
          [out, name](const std::string& text) {
            auto v = kvtier::ParseByteSize(text);
            if (!v.ok() || *v == 0) {
              throw CLI::ValidationError(
                  name, v.ok() ? "must be > 0" : std::string(v.status().message()));
            }
            *out = *v;
          },
          help)
      ->default_str(kvtier::FormatByteSize(*out));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvtier-bench: put/get correctness, lookup latency and throughput of kvtierd"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  kvtier::bench::CommonOptions common;
  std::string socket = kDefaultSocket, tcp;
  bool no_progress = false;
  auto* socket_opt =
      app.add_option("--socket", socket, "kvtierd's Unix socket")->capture_default_str();
  app.add_option("--tcp", tcp, "use TCP HOST:PORT (kvtierd --tcp-listen, or redis/memcached)")
      ->excludes(socket_opt);
  app.add_option("--auth-token", common.auth_token, "kvtierd's --auth-token, if it has one")
      ->envname("KVTIER_AUTH_TOKEN");
  app.add_flag("--json", common.json, "print one JSON object instead of text");
  app.add_option("--busy-poll-us", common.busy_poll_us,
                 "kvtier clients spin this long for a reply before sleeping (0: sleep at once)")
      ->capture_default_str();
  app.add_flag("--no-progress", no_progress, "no progress line on stderr");

  kvtier::bench::PutGetOptions putget;
  auto add_putget = [&](CLI::App* sub) {
    sub->add_option("--blocks", putget.blocks, "number of blocks")->capture_default_str();
    AddSize(sub, "--block-bytes", &putget.block_bytes, "bytes per block (namespace block size)");
    sub->add_option("--seed", putget.seed, "derives keys and contents")->capture_default_str();
    sub->add_option("--batch", putget.batch, "blocks per request")->capture_default_str();
  };
  auto* putget_cmd = app.add_subcommand("putget", "write N deterministic blocks (and verify)");
  add_putget(putget_cmd);
  putget_cmd->add_flag("--verify", putget.verify, "read the blocks back and compare bytes");
  auto* verify_cmd =
      app.add_subcommand("verify", "read the blocks putget wrote; count hits/misses/mismatches");
  add_putget(verify_cmd);

  kvtier::bench::LookupOptions lookup;
  auto* lookup_cmd = app.add_subcommand("lookup", "prefix-lookup latency, C parallel clients");
  lookup_cmd->add_option("--clients", lookup.clients)->capture_default_str();
  lookup_cmd->add_option("--keys", lookup.keys, "keys per lookup")->capture_default_str();
  lookup_cmd->add_option("--seconds", lookup.seconds)->capture_default_str();
  AddSize(lookup_cmd, "--block-bytes", &lookup.block_bytes, "block size of the stored prefix");
  lookup_cmd->add_option("--seed", lookup.seed)->capture_default_str();
  lookup_cmd->add_flag("--no-mailbox", lookup.no_mailbox,
                       "send lookups over the socket even where kvtierd offers a request mailbox");

  kvtier::bench::ThroughputOptions tp;
  auto* tp_cmd = app.add_subcommand("throughput", "put/get bandwidth vs memcpy");
  tp_cmd->add_option("--clients", tp.clients)->capture_default_str();
  AddSize(tp_cmd, "--block-bytes", &tp.block_bytes, "bytes per block");
  tp_cmd->add_option("--blocks-per-batch", tp.blocks_per_batch)->capture_default_str();
  tp_cmd->add_option("--seconds", tp.seconds, "per phase")->capture_default_str();
  tp_cmd->add_option("--op", tp.op)
      ->check(CLI::IsMember({"put", "get", "both"}))
      ->capture_default_str();
  tp_cmd->add_option("--backend", tp.backend)
      ->check(CLI::IsMember({"kvtier", "redis", "memcached"}))
      ->capture_default_str();
  AddSize(tp_cmd, "--working-set", &tp.working_set_bytes,
          "bytes the get phase cycles through (all clients); must fit the store");
  tp_cmd->add_option("--seed", tp.seed)->capture_default_str();

  kvtier::bench::KeyOpsOptions keyops;
  auto* keyops_cmd = app.add_subcommand(
      "keyops", "time per key of in-place puts, gets and removes, without the bytes");
  keyops_cmd->add_option("--batch", keyops.batch, "keys per request")->capture_default_str();
  keyops_cmd->add_option("--batches", keyops.batches, "requests of each call per round")
      ->capture_default_str();
  keyops_cmd->add_option("--rounds", keyops.rounds, "timed rounds")->capture_default_str();
  AddSize(keyops_cmd, "--block-bytes", &keyops.block_bytes, "namespace block size");
  keyops_cmd
      ->add_option("--resident", keyops.resident,
                   "blocks stored first and kept (index and policy size)")
      ->capture_default_str();
  keyops_cmd->add_option("--seed", keyops.seed)->capture_default_str();
  keyops_cmd->add_flag("--encoded", keyops.encoded,
                       "put kvz frames with their codecs, as a GPU client does");
  keyops_cmd
      ->add_option("--frame-percent", keyops.frame_min_percent,
                   "--encoded: smallest frame, % of a block")
      ->capture_default_str();
  keyops_cmd
      ->add_option("--frame-max-percent", keyops.frame_max_percent,
                   "--encoded: largest frame, % of a block")
      ->capture_default_str();

  kvtier::bench::ReplayModeOptions replay;
  auto* replay_cmd = app.add_subcommand(
      "replay",
      "replay a Mooncake-format trace: offline through the eviction policies, or --online "
      "against the running kvtierd");
  replay_cmd->add_option("--trace", replay.trace, "JSONL trace file")->required();
  replay_cmd->add_option("--max-requests", replay.max_requests,
                         "replay only the trace's first N requests (0: all)");
  auto* capacity_opt = replay_cmd->add_option("--capacity-blocks", replay.capacity_blocks,
                                              "cache size in blocks (offline; required there)");
  auto* policy_opt = replay_cmd->add_option(
      "--policy", replay.policy, "eviction policy (offline; default: the daemon's default)");
  auto* belady_opt = replay_cmd->add_flag(
      "--belady", replay.belady,
      "replay the offline optimum (evict the block used furthest ahead; offline)");
  auto* hint_opt = replay_cmd->add_option(
      "--hint-lookahead", replay.hint_lookahead,
      "a scheduler hints each request's keys this many requests before it runs (online: a "
      "Prefetch of them)");
  auto* pins_opt =
      replay_cmd->add_flag("--hint-pins", replay.hint_pins,
                           "offline: hinted blocks stay pinned until their request runs");
  pins_opt->needs(hint_opt);
  auto* online_opt = replay_cmd->add_flag(
      "--online", replay.online,
      "drive the running kvtierd (--socket/--tcp) and report its own hit rate; its "
      "--dram-capacity and --eviction-policy set the cache");
  auto* time_scale_opt =
      replay_cmd
          ->add_option("--time-scale", replay.time_scale,
                       "online: trace time / X = wall time (0: as fast as possible)")
          ->check(CLI::NonNegativeNumber)
          ->capture_default_str();
  auto* block_bytes_opt =
      AddSize(replay_cmd, "--block-bytes", &replay.block_bytes,
              "online: bytes per block (a slot is this rounded up to the daemon's 4 KiB pages)");
  auto* compress_opt = replay_cmd->add_option(
      "--compress", replay.compress,
      "online: KV-like blocks of this dtype (bf16, fp16) in a kvz-compressed namespace");
  capacity_opt->excludes(online_opt);
  policy_opt->excludes(online_opt);
  belady_opt->excludes(online_opt);
  pins_opt->excludes(online_opt);
  hint_opt->excludes(belady_opt);
  time_scale_opt->needs(online_opt);
  block_bytes_opt->needs(online_opt);
  compress_opt->needs(online_opt);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  common.uri = tcp.empty() ? socket : "tcp://" + tcp;
  common.progress = !no_progress;
  if (putget_cmd->parsed()) return kvtier::bench::RunPutGet(common, putget);
  if (verify_cmd->parsed()) return kvtier::bench::RunVerify(common, putget);
  if (lookup_cmd->parsed()) return kvtier::bench::RunLookup(common, lookup);
  if (keyops_cmd->parsed()) return kvtier::bench::RunKeyOps(common, keyops);
  if (replay_cmd->parsed()) {
    if (replay.online) return kvtier::bench::RunOnlineReplay(common, replay);
    if (replay.capacity_blocks == 0) {
      std::fprintf(stderr, "kvtier-bench replay: --capacity-blocks N (>= 1) is required offline\n");
      return 2;
    }
    return kvtier::bench::RunReplay(common, replay);
  }
  if (tp.backend != "kvtier" && tcp.empty()) {
    std::fprintf(stderr, "kvtier-bench: --backend %s needs --tcp HOST:PORT\n", tp.backend.c_str());
    return 2;
  }
  return kvtier::bench::RunThroughput(common, tp);
}
