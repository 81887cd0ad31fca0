// kvtier-bench replay --online: the trace replay of docs/policy.md against a running kvtierd.
//
// Each trace request, at its timestamp / --time-scale after the start (at once when behind, or
// with --time-scale 0), does what an engine with a prefix cache would:
//   1. Lookup(keys of all its blocks): the daemon's longest cached leading run, h blocks;
//   2. Get those h blocks and compare their bytes with what a Put of them wrote (the content is
//      a function of the key, workload.h); a block with other bytes is an error (exit 3);
//   3. Put its blocks h..n-1; the daemon stores the missing ones (AlreadyExists for the rest).
// That is the offline replay's model ("a request hits the longest run of its leading blocks
// that is cached, then all its blocks are offered to the cache"), with the daemon's eviction
// policy and capacity instead of the replay's.
//
// The touches are ordered as the offline replay orders them, so that the same policy sees the
// same sequence: the hit prefix is fetched deepest block first (the daemon touches a Get's keys
// in request order, and the offline replay uses a hit prefix deepest first, leaving its root the
// most recent), and the missing blocks are put root to tip (the daemon commits a put in key
// order). Blocks after the first miss that are cached already get no touch here (a Put of them
// is a no-op) where the offline replay touches them; with LRU the trace has none (a prefix
// whose tip is cached has its whole run cached, since the run is touched together).
//
// With --compress DTYPE the blocks are KV-like tensors of that dtype (kv_trace_content.h)
// instead of random bytes, in a COMPRESSION_KVZ namespace: puts are encoded by the client's CPU
// codec and gets decoded by it, so the daemon holds each block in a DRAM slot of its frame's
// size and the same capacity holds more blocks (docs/policy.md, "Compression and capacity").
// The byte check is then on the decoded bytes.
//
// With --hint-lookahead Q a scheduler's hints are modelled as the offline replay models them:
// before request t runs, request t + Q's keys are sent as a Prefetch (requests 1..Q before the
// first), which makes the daemon count those of them in DRAM as used (DramTier::Touch). A
// Prefetch is not a Lookup, so the hit-rate counters see only the requests.
//
// The run uses a namespace of its own (a fresh tenant_salt), so an earlier run's blocks are
// never hits; they do share the DRAM capacity, though, so figures comparable to the offline
// replay need a daemon that starts empty (daemon_blocks_at_start says).
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "kv_trace_content.h"
#include "kvtier/client/client.h"
#include "modes.h"
#include "nlohmann/json.hpp"
#include "report.h"
#include "workload.h"

namespace kvtier::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvtier-bench replay: %s\n", s.ToString().c_str());
  return 1;
}

// The daemon's counters for one namespace (zero when it has none yet).
absl::StatusOr<proto::Counters> NamespaceCounters(const proto::StatsReply& stats, uint32_t id) {
  for (const proto::NamespaceStats& ns : stats.namespaces()) {
    if (ns.namespace_id() == id) return ns.counters();
  }
  return absl::NotFoundError(
      absl::StrFormat("the daemon's stats list no namespace %u, the one this run opened", id));
}

// What the daemon counted between two snapshots of one namespace.
struct CounterDelta {
  uint64_t lookups, lookup_keys, lookup_hit_keys, hits, misses, puts, evictions;
};
CounterDelta Delta(const proto::Counters& a, const proto::Counters& b) {
  return {b.lookups() - a.lookups(),
          b.lookup_keys() - a.lookup_keys(),
          b.lookup_hit_keys() - a.lookup_hit_keys(),
          b.hits() - a.hits(),
          b.misses() - a.misses(),
          b.puts() - a.puts(),
          b.evictions() - a.evictions()};
}

const proto::TierStats* DramStats(const proto::StatsReply& stats) {
  for (const proto::TierStats& t : stats.tiers()) {
    if (t.tier() == proto::TIER_DRAM) return &t;
  }
  return nullptr;
}

std::string RunSalt() {
  std::random_device rd;
  return absl::StrFormat("replay-%08x%08x", rd(), rd());
}

struct Tally {
  uint64_t requests = 0;
  uint64_t total_blocks = 0;
  // Of the blocks in Lookup prefixes (hit_blocks + byte_errors + get_misses of them):
  uint64_t hit_blocks = 0;          // fetched with the right bytes
  uint64_t nvme_prefix_blocks = 0;  // on the NVMe tier, by the Lookup
  uint64_t byte_errors = 0;         // fetched with other bytes or another length
  uint64_t get_misses = 0;          // looked up, then gone by the Get (another client's doing)
  uint64_t put_stored = 0, put_already = 0, put_rejected = 0;
  double max_lag_ms = 0;  // how far behind the trace's schedule a request was sent
};

}  // namespace

int RunOnlineReplay(const CommonOptions& common, const ReplayModeOptions& options) {
  if (options.block_bytes == 0) {
    std::fprintf(stderr, "kvtier-bench replay: --block-bytes must be >= 1\n");
    return 2;
  }
  absl::StatusOr<replay::Trace> trace = LoadReplayTrace(options);
  if (!trace.ok()) {
    std::fprintf(stderr, "kvtier-bench replay: %s\n", trace.status().ToString().c_str());
    return absl::IsInvalidArgument(trace.status()) ? 2 : 1;
  }

  std::optional<KvTraceContent> content;  // --compress: KV-like blocks
  if (!options.compress.empty()) {
    absl::StatusOr<KvDtype> dtype = ParseKvDtype(options.compress);
    absl::StatusOr<KvTraceContent> made =
        dtype.ok() ? KvTraceContent::Make(*dtype, options.block_bytes) : dtype.status();
    if (!made.ok()) {
      std::fprintf(stderr, "kvtier-bench replay: --compress: %s\n",
                   made.status().ToString().c_str());
      return 2;
    }
    content = std::move(*made);
  }
  const auto fill = [&content](const BlockKey& key, std::span<std::byte> out) {
    if (content) {
      content->Fill(key, out);
    } else {
      FillTraceBlock(key, out);
    }
  };

  client::ClientOptions client_options;
  client_options.client_name = "kvtier-bench-replay";
  client_options.auth_token = common.auth_token;
  client_options.busy_poll = std::chrono::microseconds(common.busy_poll_us);
  auto connected = client::Client::Connect(common.uri, client_options);
  if (!connected.ok()) return Fail(connected.status());
  client::Client& client = **connected;
  NamespaceDescriptor descriptor = TraceReplayNamespace(options.block_bytes, RunSalt());
  proto::NamespaceOptions namespace_options;
  if (content) {
    descriptor.dtype = std::string(KvDtypeName(content->dtype()));  // the codec's dtype
    namespace_options.set_compression(proto::COMPRESSION_KVZ);
  }
  auto opened = client.OpenNamespace(descriptor, namespace_options);
  if (!opened.ok()) return Fail(opened.status());
  const client::NamespaceHandle ns = *opened;

  auto stats_before = client.Stats();
  if (!stats_before.ok()) return Fail(stats_before.status());
  auto before = NamespaceCounters(*stats_before, ns.id);
  if (!before.ok()) return Fail(before.status());
  const proto::TierStats* dram = DramStats(*stats_before);
  const uint64_t capacity_bytes = dram ? dram->capacity_bytes() : 0;
  const uint64_t blocks_at_start = dram ? dram->blocks() : 0;
  const uint64_t page =
      client.server_info().has_arena() && client.server_info().arena().page_bytes()
          ? client.server_info().arena().page_bytes()
          : 4096;  // DramTierOptions::page_bytes' default (TCP has no arena)
  const uint64_t slot_bytes = (options.block_bytes + page - 1) / page * page;
  if (blocks_at_start > 0) {
    std::fprintf(stderr,
                 "kvtier-bench replay: note: the daemon holds %" PRIu64
                 " blocks already; they share its capacity with this run, so the hit rate need "
                 "not match an offline replay (start kvtierd afresh for that)\n",
                 blocks_at_start);
  }

  size_t longest = 0;
  for (const replay::TraceRequest& r : trace->requests) {
    longest = std::max(longest, r.hash_ids.size());
  }
  const size_t b = options.block_bytes;
  std::vector<std::byte> buffer(longest * b), want(b);
  std::vector<BlockKey> keys, get_keys;
  std::vector<std::span<std::byte>> get_out;
  std::vector<std::span<const std::byte>> put_blocks;

  Tally t;
  uint64_t hinted_blocks = 0;  // hinted keys the daemon found in DRAM
  const uint64_t q = options.hint_lookahead;
  const auto hint = [&](size_t k) -> absl::Status {
    keys.clear();
    for (uint64_t id : trace->requests[k].hash_ids) keys.push_back(TraceBlockKey(ns.key_seed, id));
    absl::StatusOr<client::PrefetchResult> r = client.Prefetch(ns, keys);
    if (!r.ok()) return r.status();
    hinted_blocks += r->in_dram;
    return absl::OkStatus();
  };
  for (size_t k = 1; q > 0 && k <= q && k < trace->requests.size(); ++k) {
    if (absl::Status s = hint(k); !s.ok()) return Fail(s);
  }
  const auto start = Clock::now();
  {
    Progress progress("replay", common.progress, "requests");
    for (const replay::TraceRequest& r : trace->requests) {
      if (options.time_scale > 0) {
        const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double, std::milli>(
                                         static_cast<double>(r.timestamp_ms) / options.time_scale));
        const auto now = Clock::now();
        if (now < due) {
          std::this_thread::sleep_until(due);
        } else {
          t.max_lag_ms =
              std::max(t.max_lag_ms, std::chrono::duration<double, std::milli>(now - due).count());
        }
      }
      if (q > 0 && t.requests > 0 && t.requests + q < trace->requests.size()) {
        if (absl::Status s = hint(t.requests + q); !s.ok()) return Fail(s);
      }
      const size_t n = r.hash_ids.size();
      keys.clear();
      for (uint64_t id : r.hash_ids) keys.push_back(TraceBlockKey(ns.key_seed, id));

      auto lookup = client.Lookup(ns, keys);
      if (!lookup.ok()) return Fail(lookup.status());
      const size_t h = std::min<size_t>(lookup->prefix_blocks, n);
      for (proto::Tier tier : lookup->tiers) t.nvme_prefix_blocks += tier == proto::TIER_NVME;

      if (h > 0) {
        // Deepest first: see the top of this file.
        get_keys.assign(keys.rbegin() + static_cast<ptrdiff_t>(n - h), keys.rend());
        get_out.clear();
        for (size_t i = 0; i < h; ++i) get_out.push_back(std::span(buffer).subspan(i * b, b));
        auto got = client.Get(ns, get_keys, get_out);
        if (!got.ok()) return Fail(got.status());
        for (size_t i = 0; i < h; ++i) {
          const client::GetResult& g = (*got)[i];
          if (absl::IsNotFound(g.status) || absl::IsUnavailable(g.status)) {
            ++t.get_misses;
            continue;
          }
          fill(get_keys[i], want);
          if (g.status.ok() && g.length == b &&
              std::memcmp(get_out[i].data(), want.data(), b) == 0) {
            ++t.hit_blocks;
            continue;
          }
          ++t.byte_errors;
          std::fprintf(stderr,
                       "kvtier-bench replay: WRONG BYTES in request %" PRIu64
                       ", block %zu (hash id %" PRIu64 ", key %s): %s, %" PRIu64 " bytes\n",
                       t.requests, h - 1 - i, r.hash_ids[h - 1 - i], get_keys[i].ToHex().c_str(),
                       g.status.ToString().c_str(), g.length);
        }
      }

      if (h < n) {
        put_blocks.clear();
        for (size_t j = h; j < n; ++j) {
          auto block = std::span(buffer).subspan((j - h) * b, b);
          fill(keys[j], block);
          put_blocks.push_back(block);
        }
        auto put = client.Put(ns, std::span(keys).subspan(h), put_blocks,
                              {.cpu_compress = content.has_value()});
        if (!put.ok()) return Fail(put.status());
        for (const absl::Status& s : *put) {
          if (s.ok()) {
            ++t.put_stored;
          } else if (absl::IsAlreadyExists(s)) {
            ++t.put_already;
          } else {
            ++t.put_rejected;
          }
        }
      }
      ++t.requests;
      t.total_blocks += n;
      progress.Add(1, n * b);
    }
  }
  const double seconds = SecondsSince(start);

  auto stats_after = client.Stats();
  if (!stats_after.ok()) return Fail(stats_after.status());
  auto after = NamespaceCounters(*stats_after, ns.id);
  if (!after.ok()) return Fail(after.status());
  const proto::TierStats* dram_after = DramStats(*stats_after);
  const uint64_t blocks_at_end = dram_after ? dram_after->blocks() : 0;
  // raw / stored bytes of what DRAM holds at the end (all of it this run's, from a fresh daemon).
  const double dram_ratio = dram_after && dram_after->stored_bytes()
                                ? static_cast<double>(dram_after->raw_bytes()) /
                                      static_cast<double>(dram_after->stored_bytes())
                                : 1.0;
  const CounterDelta d = Delta(*before, *after);
  // The daemon's hit rate is lookup_hit_keys / lookup_keys of this run's namespace. Each
  // request sends one Lookup of all its keys, and the daemon counts the keys asked
  // (lookup_keys) and the length of the cached leading run it found (lookup_hit_keys): exactly
  // the replay's request length and hit prefix, so the ratio is the replay's hit rate, counted
  // by the daemon. Lookups are no use for eviction, so counting them perturbs nothing. The get
  // counters would not do: only the hit prefix is fetched, so hits / (hits + misses) is ~1.
  // (A request longer than the daemon's max_keys_per_request would be looked up in chunks that
  // stop after the one where the run ends, leaving lookup_keys short; the check below says so.)
  // With kvtierd's NVMe tier on, these are the DRAM tier's counters: lookup_hit_keys is then
  // the leading run in DRAM, while a Lookup's prefix (and client_hit_rate) goes on through
  // NVMe; nvme_prefix_blocks tells how much of the client's figure NVMe served.
  const double hit_rate =
      d.lookup_keys ? static_cast<double>(d.lookup_hit_keys) / d.lookup_keys : 0.0;
  const double client_hit_rate =
      t.total_blocks ? static_cast<double>(t.hit_blocks) / t.total_blocks : 0.0;
  if (d.lookup_keys != t.total_blocks || d.lookups != t.requests) {
    std::fprintf(stderr,
                 "kvtier-bench replay: note: the daemon counted %" PRIu64 " lookups of %" PRIu64
                 " keys for %" PRIu64 " requests of %" PRIu64 " blocks\n",
                 d.lookups, d.lookup_keys, t.requests, t.total_blocks);
  }

  // The slots the DRAM capacity would make if it were a whole number of slabs; the rest of a
  // last partial slab stays unused, and the slab size is not in the daemon's stats. Once the
  // cache has evicted, blocks_at_end is the real figure (a full tier, one size class).
  const uint64_t capacity_blocks_max = slot_bytes ? capacity_bytes / slot_bytes : 0;
  if (common.json) {
    json out{{"mode", "replay-online"},
             {"policy", stats_after->server().eviction_policy().empty()
                            ? std::string("daemon")  // a kvtierd that does not name it
                            : stats_after->server().eviction_policy()},
             {"hit_rate", hit_rate},
             {"client_hit_rate", client_hit_rate},
             {"requests", t.requests},
             {"total_blocks", t.total_blocks},
             {"hit_blocks", t.hit_blocks},
             {"seconds", seconds},
             {"time_scale", options.time_scale},
             {"max_lag_ms", t.max_lag_ms},
             {"block_bytes", options.block_bytes},
             {"slot_bytes", slot_bytes},
             {"compress", options.compress.empty() ? "none" : options.compress},
             {"hint_lookahead", q},
             {"hinted_blocks", hinted_blocks},
             {"dram_compression_ratio", dram_ratio},
             {"daemon_capacity_bytes", capacity_bytes},
             {"capacity_blocks_max", capacity_blocks_max},
             {"daemon_blocks_at_start", blocks_at_start},
             {"daemon_blocks_at_end", blocks_at_end},
             {"byte_errors", t.byte_errors},
             {"get_misses", t.get_misses},
             {"nvme_prefix_blocks", t.nvme_prefix_blocks},
             {"put",
              {{"stored", t.put_stored},
               {"already_cached", t.put_already},
               {"rejected", t.put_rejected}}},
             {"daemon",
              {{"lookups", d.lookups},
               {"lookup_keys", d.lookup_keys},
               {"lookup_hit_keys", d.lookup_hit_keys},
               {"get_hits", d.hits},
               {"get_misses", d.misses},
               {"puts", d.puts},
               {"evictions", d.evictions}}},
             {"transport", client.shared_arena()                ? "shared-arena"
                           : client.uri().starts_with("tcp://") ? "inline-tcp"
                                                                : "inline-unix"}};
    std::cout << out.dump() << "\n";
  } else {
    std::printf(
        "online replay of %" PRIu64 " requests (%" PRIu64 " blocks of %" PRIu64
        " B) in %.1f s, time scale %g:\n"
        "  daemon hit rate %.2f %% (%" PRIu64 " of %" PRIu64
        " looked-up keys), client %.2f %% "
        "(%" PRIu64
        " blocks fetched and checked)\n"
        "  daemon: %" PRIu64 " puts, %" PRIu64 " evictions, %" PRIu64
        " blocks held at the end; DRAM %" PRIu64 " B = at most %" PRIu64 " slots of %" PRIu64
        " B uncompressed; compression %s, DRAM ratio %.3f\n"
        "  wrong bytes %" PRIu64 ", lost between lookup and get %" PRIu64 ", puts refused %" PRIu64
        ", most behind schedule %.0f ms\n",
        t.requests, t.total_blocks, options.block_bytes, seconds, options.time_scale,
        100 * hit_rate, d.lookup_hit_keys, d.lookup_keys, 100 * client_hit_rate, t.hit_blocks,
        d.puts, d.evictions, blocks_at_end, capacity_bytes, capacity_blocks_max, slot_bytes,
        options.compress.empty() ? "off" : options.compress.c_str(), dram_ratio, t.byte_errors,
        t.get_misses, t.put_rejected, t.max_lag_ms);
  }
  return t.byte_errors > 0 ? 3 : 0;
}

}  // namespace kvtier::bench
