#!/usr/bin/env bash
# compare_baselines.sh: kvtierd against Redis and memcached, put/get bandwidth over TCP loopback,
# all three measured by the same binary (kvtier-bench throughput) in the same way.
#
#   bench/compare_baselines.sh [BUILD_DIR]          (default: build)
#
# Starts, for each value size afresh, on 127.0.0.1 and random free ports, with no persistence
# and MEMORY_MB of room each:
#   redis-server  --save '' --appendonly no --maxmemory MEMORY_MB --maxmemory-policy allkeys-lru
#   memcached     -m MEMORY_MB -I 8m (items up to 8 MiB; the default 1 MiB would refuse 4 MiB values)
#   kvtierd       --dram-capacity MEMORY_MB --tcp-listen 127.0.0.1:PORT (and its Unix socket)
# then, for 256 KiB and 4 MiB values, runs RUNS times per store `kvtier-bench throughput` with
# CLIENTS clients, batches of BATCH_BYTES, PHASE_SECONDS per phase, and prints the median GB/s of each
# store with the ratios kvtier/redis and kvtier/memcached. One extra row per size shows kvtier
# over its Unix socket with the shared arena (no TCP), for scale. The three stores are up
# together; one is measured at a time while the others idle.
#
# Environment knobs (defaults): RUNS=3 PHASE_SECONDS=3 CLIENTS=2 BATCH_BYTES=4MiB (in bytes: 4194304)
# MEMORY_MB=1024 WORKING_SET=256MiB. Every process it starts is stopped on exit, also on ^C.
set -euo pipefail

BUILD_DIR=${1:-build}
RUNS=${RUNS:-3}
SECONDS_PER_PHASE=${PHASE_SECONDS:-3}  # not SECONDS: bash owns that name
CLIENTS=${CLIENTS:-2}
BATCH_BYTES=${BATCH_BYTES:-4194304}
MEMORY_MB=${MEMORY_MB:-1024}
WORKING_SET=${WORKING_SET:-256MiB}
BENCH="$BUILD_DIR/bin/kvtier-bench"
KVTIERD="$BUILD_DIR/bin/kvtierd"
KVTIERCTL="$BUILD_DIR/bin/kvtierctl"

die() { echo "compare_baselines: $*" >&2; exit 1; }
for tool in "$BENCH" "$KVTIERD" "$KVTIERCTL"; do
  [[ -x $tool ]] || die "$tool is not built (run: make build, or pass the build dir)"
done
for tool in redis-server memcached python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/setup.sh installs it)"
done

WORK=$(mktemp -d /tmp/kvtier-baselines.XXXXXX)
PIDS=()
cleanup() {
  stop_stores
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until something accepts TCP connections on 127.0.0.1:$1 (10 s), or fails naming $2.
wait_port() {
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  die "$2 did not start listening on port $1; its log: $(tail -5 "$WORK/$2.log" 2>/dev/null)"
}

# Fresh stores for each value size: a cache full of one size must not handicap the next
# (kvtierd's DRAM tier keeps slabs per slot size, so it would starve the second size).
start_stores() {
  PIDS=()
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --maxmemory "${MEMORY_MB}mb" --maxmemory-policy allkeys-lru --protected-mode no \
    --daemonize no >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  wait_port "$REDIS_PORT" redis

  MEMCACHED_PORT=$(free_port)
  # memcached refuses to run as root unless told which user to be.
  memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m "$MEMORY_MB" -I 8m -t 4 \
    -u "$(id -un)" >"$WORK/memcached.log" 2>&1 &
  PIDS+=($!)
  wait_port "$MEMCACHED_PORT" memcached

  KVTIER_PORT=$(free_port)
  rm -rf "$WORK/kvtierd"
  "$KVTIERD" --data-dir "$WORK/kvtierd" --socket "$WORK/kvtierd.sock" \
    --dram-capacity "${MEMORY_MB}MiB" --tcp-listen "127.0.0.1:$KVTIER_PORT" \
    --log-level warn >"$WORK/kvtierd.log" 2>&1 &
  PIDS+=($!)
  wait_port "$KVTIER_PORT" kvtierd
  "$KVTIERCTL" --tcp "127.0.0.1:$KVTIER_PORT" health >/dev/null || die "kvtierd is not healthy"
  echo "redis :$REDIS_PORT, memcached :$MEMCACHED_PORT, kvtierd :$KVTIER_PORT" >&2
}

stop_stores() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

echo "$RUNS runs of ${SECONDS_PER_PHASE}s per phase, $CLIENTS clients, ${BATCH_BYTES}-byte" \
  "batches, working set $WORKING_SET" >&2

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
for value in 262144 4194304; do
  start_stores
  batch=$((BATCH_BYTES / value))
  ((batch >= 1)) || batch=1
  for run in $(seq "$RUNS"); do
    for target in kvtier-tcp redis memcached kvtier-shm; do
      case $target in
        kvtier-tcp) args=(--tcp "127.0.0.1:$KVTIER_PORT" throughput --backend kvtier) ;;
        kvtier-shm) args=(--socket "$WORK/kvtierd.sock" throughput --backend kvtier) ;;
        redis) args=(--tcp "127.0.0.1:$REDIS_PORT" throughput --backend redis) ;;
        memcached) args=(--tcp "127.0.0.1:$MEMCACHED_PORT" throughput --backend memcached) ;;
      esac
      echo "  value $value B, run $run/$RUNS: $target" >&2
      "$BENCH" --json --no-progress "${args[@]}" --op both --clients "$CLIENTS" \
        --block-bytes "$value" --blocks-per-batch "$batch" --seconds "$SECONDS_PER_PHASE" \
        --working-set "$WORKING_SET" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); r["target"]=sys.argv[1]; print(json.dumps(r))' \
          "$target" >>"$RESULTS"
    done
  done
  stop_stores
done

python3 - "$RESULTS" "$RUNS" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
targets = ["kvtier-tcp", "redis", "memcached", "kvtier-shm"]
def med(value, target, op, field="gbps"):
    xs = [r[op][field] for r in rows if r["block_bytes"] == value and r["target"] == target]
    return statistics.median(xs) if xs else float("nan")
def size(v):
    return f"{v >> 20} MiB" if v >= 1 << 20 else f"{v >> 10} KiB"
print(f"\nmedian of {sys.argv[2]} runs, GB/s (1e9 B/s); ratios: kvtier over TCP / the baseline")
print(f"{'value':>7}  {'op':3}  " + "  ".join(f"{t:>10}" for t in targets) +
      f"  {'vs redis':>9}  {'vs memcd':>9}  {'memcpy':>7}")
for value in sorted({r["block_bytes"] for r in rows}):
    mc = statistics.median(r["memcpy_gbps"] for r in rows if r["block_bytes"] == value)
    for op in ("put", "get"):
        g = {t: med(value, t, op) for t in targets}
        ratio = lambda b: f"{g['kvtier-tcp'] / g[b]:8.2f}x" if g[b] > 0 else "      n/a"
        print(f"{size(value):>7}  {op:3}  " + "  ".join(f"{g[t]:10.3f}" for t in targets) +
              f"  {ratio('redis'):>9}  {ratio('memcached'):>9}  {mc:7.2f}")
for r in rows:
    if r["get"]["misses"] or r["get"].get("prefill_rejected") or r["put"]["accepted"] < r["put"]["blocks"]:
        print(f"note: {r['target']} at {size(r['block_bytes'])}: {r['get']['misses']} get misses, "
              f"{r['get'].get('prefill_rejected', 0)} working-set blocks refused, "
              f"{r['put']['blocks'] - r['put']['accepted']} puts refused")
EOF
