#!/usr/bin/env bash
# kvtier-bench replay --online --compress bf16 end to end: a real kvtierd (LRU, 192 MiB of
# DRAM = 3,072 slots of 64 KiB), the first 2,000 requests of the Mooncake trace with KV-like
# bf16 blocks in a kvz namespace (CPU-encoded puts, decoded gets), as fast as they go.
#   replay_compressed_test.sh KVTIER_BENCH KVTIERD TRACE
#
# What it checks (docs/policy.md, "Compression and capacity"):
#   - every hit came back with its own bytes, decoded (byte_errors 0);
#   - the blocks compressed as KV caches do (DRAM ratio 1.3-1.6) and the same DRAM held that
#     many more of them (at least 1.3 x 3,072 blocks once full: frames of ~46 KiB in 48 KiB
#     slots hold 4,092);
#   - the daemon's hit rate is the offline LRU's at the capacity it really held, to 0.2 points
#     (LRU across the compressed namespace's size classes is one recency order: the tier takes
#     a slab from the class whose oldest block is older, so it matched to the block when this
#     was written, 7.18 % at 4,092), and well above the offline LRU's at 3,072 blocks (5.31 %),
#     what the same DRAM holds uncompressed.
set -euo pipefail
bench=$1 kvtierd=$2 trace=$3
requests=2000 plain_blocks=3072 dram=192MiB
[[ -f $trace ]] || { echo "skipped: no trace at $trace"; exit 77; }

source "$(dirname "$0")/test_daemon.sh"
start_kvtierd "$kvtierd" --dram-capacity "$dram" --eviction-policy lru

status=0
online=$("$bench" --socket "$dir/kvtierd.sock" --json --no-progress replay --online \
  --trace "$trace" --max-requests $requests --time-scale 0 --block-bytes 64KiB \
  --compress bf16) || status=$?
echo "online: $online"
[[ $status -eq 0 ]] || { echo "FAIL: online replay exited $status"; exit 1; }
held=$(/usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1])['daemon_blocks_at_end'])" "$online")
offline_held=$("$bench" --json replay --trace "$trace" --max-requests $requests \
  --capacity-blocks "$held" --policy lru)
offline_plain=$("$bench" --json replay --trace "$trace" --max-requests $requests \
  --capacity-blocks $plain_blocks --policy lru)
echo "offline at $held blocks: $offline_held"
echo "offline at $plain_blocks blocks: $offline_plain"

/usr/bin/python3 - "$online" "$offline_held" "$offline_plain" "$plain_blocks" <<'PY'
import json, sys
on, held, plain = (json.loads(a) for a in sys.argv[1:4])
plain_blocks = int(sys.argv[4])
fail = []
if on["compress"] != "bf16":
    fail.append(f"compress is {on['compress']}")
if on["byte_errors"] != 0 or on["get_misses"] != 0:
    fail.append(f"byte_errors {on['byte_errors']}, get_misses {on['get_misses']}")
r = on["dram_compression_ratio"]
if not 1.3 <= r <= 1.6:
    fail.append(f"DRAM compression ratio {r:.3f}, not in [1.3, 1.6]")
if on["daemon"]["evictions"] == 0 or on["daemon_blocks_at_end"] < 1.3 * plain_blocks:
    fail.append(f"held {on['daemon_blocks_at_end']} blocks, not 1.3 x {plain_blocks}")
if on["daemon"]["lookup_hit_keys"] != on["hit_blocks"]:
    fail.append("the daemon's hits differ from the client's")
gap = 100 * (on["hit_rate"] - held["hit_rate"])
gain = 100 * (on["hit_rate"] - plain["hit_rate"])
print(f"daemon {100*on['hit_rate']:.2f} % holding {on['daemon_blocks_at_end']} blocks; offline "
      f"{100*held['hit_rate']:.2f} % there (gap {gap:+.2f}), {100*plain['hit_rate']:.2f} % at "
      f"{plain_blocks} (gain {gain:+.2f} points)")
if abs(gap) > 0.2:
    fail.append(f"gap {gap:+.2f} points to the offline LRU at the capacity held")
if gain < 1.0:
    fail.append(f"compression gained {gain:+.2f} points")
for f in fail:
    print("FAIL:", f)
sys.exit(1 if fail else 0)
PY

# Again from a fresh daemon, with scheduler hints 64 requests ahead (a Prefetch of each
# request's keys before the request 64 earlier runs): the daemon's LRU must match the offline
# replay's with the same hints at the capacity it held, blocks hinted included (9.86 % and 3,582
# hinted blocks at 4,092 when this was written).
kill "$pid" && wait "$pid" 2>/dev/null || true
rm -rf "$dir"
start_kvtierd "$kvtierd" --dram-capacity "$dram" --eviction-policy lru
hinted=$("$bench" --socket "$dir/kvtierd.sock" --json --no-progress replay --online \
  --trace "$trace" --max-requests $requests --time-scale 0 --block-bytes 64KiB \
  --compress bf16 --hint-lookahead 64) || { echo "FAIL: hinted online replay exited $?"; exit 1; }
echo "online, hints: $hinted"
held=$(/usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1])['daemon_blocks_at_end'])" "$hinted")
offline_hinted=$("$bench" --json replay --trace "$trace" --max-requests $requests \
  --capacity-blocks "$held" --policy lru --hint-lookahead 64)
echo "offline, hints, at $held blocks: $offline_hinted"
/usr/bin/python3 - "$hinted" "$offline_hinted" "$online" <<'PY'
import json, sys
on, off, plain = (json.loads(a) for a in sys.argv[1:4])
fail = []
if on["byte_errors"] != 0 or on["get_misses"] != 0:
    fail.append(f"byte_errors {on['byte_errors']}, get_misses {on['get_misses']}")
if on["hinted_blocks"] != off["hinted_blocks"] or on["hinted_blocks"] == 0:
    fail.append(f"hinted {on['hinted_blocks']} blocks online, {off['hinted_blocks']} offline")
gap = 100 * (on["hit_rate"] - off["hit_rate"])
print(f"with hints: daemon {100*on['hit_rate']:.2f} %, offline {100*off['hit_rate']:.2f} % "
      f"(gap {gap:+.2f}); without: {100*plain['hit_rate']:.2f} %")
if abs(gap) > 0.2:
    fail.append(f"gap {gap:+.2f} points to the offline LRU with the same hints")
if on["hit_rate"] <= plain["hit_rate"]:
    fail.append("hints did not raise the hit rate")
for f in fail:
    print("FAIL:", f)
sys.exit(1 if fail else 0)
PY
echo "ok"
