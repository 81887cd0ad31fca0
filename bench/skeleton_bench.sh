#!/usr/bin/env bash
# skeleton_bench.sh: the walking skeleton's figures, side by side in one run.
#
#   bench/skeleton_bench.sh [BUILD_DIR] [OUT_DIR]      (defaults: build, ./bench-out)
#
# 1. Lookup round trip over the Unix socket, 64 keys, 1 and 8 concurrent clients (p50/p99),
#    with busy polling on (default) and off on both sides.
# 2. Put/get of 256 KiB and 4 MiB blocks through the shared arena, against a plain memcpy of
#    the same bytes measured by the same process in the same run.
# 3. bench/compare_baselines.sh: put/get over TCP loopback against redis-server and memcached.
# Every figure is also written as JSON into OUT_DIR. Knobs: SECONDS_PER_RUN (5), RUNS (3),
# DRAM (4GiB), IO_THREADS (kvtierd's default).
set -euo pipefail

BUILD_DIR=${1:-build}
OUT=${2:-bench-out}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
RUNS=${RUNS:-3}
DRAM=${DRAM:-4GiB}
BENCH="$BUILD_DIR/bin/kvtier-bench"
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/kvtier-skeleton.XXXXXX)
DAEMON_PID=
cleanup() {
  [[ -n $DAEMON_PID ]] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

start_daemon() {  # start_daemon [extra kvtierd flags...]
  rm -rf "$WORK/data"; mkdir -p "$WORK/data"
  local args=(--data-dir "$WORK/data" --dram-capacity "$DRAM" --log-level warn "$@")
  [[ -n ${IO_THREADS:-} ]] && args+=(--io-threads "$IO_THREADS")
  "$BUILD_DIR/bin/kvtierd" "${args[@]}" &
  DAEMON_PID=$!
  for _ in $(seq 200); do [[ -S $WORK/data/kvtierd.sock ]] && break; sleep 0.05; done
}
stop_daemon() {
  kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=
}
SOCK=(--socket "$WORK/data/kvtierd.sock" --no-progress)

echo "== machine: $(nproc) cores, $(uname -r); $("$BUILD_DIR/bin/kvtierd" --version)"
# Lookup latency with busy polling on both sides (the default) and with it off on both sides.
for spin in 50 0; do
  start_daemon --busy-poll-us "$spin"
  for clients in 1 8; do
    for run in $(seq "$RUNS"); do
      "$BENCH" "${SOCK[@]}" --busy-poll-us "$spin" --json lookup --clients "$clients" --keys 64 \
        --seconds "$SECONDS_PER_RUN" --seed "$run" > "$OUT/lookup_spin${spin}_c${clients}_r${run}.json"
    done
    echo "lookup 64 keys, $clients client(s), busy-poll ${spin} us:"
    cat "$OUT"/lookup_spin${spin}_c${clients}_r*.json; echo
  done
  stop_daemon
done
# Shared-arena bandwidth, a fresh daemon per block size.
for bytes in 256KiB 4MiB; do
  batch=16; [[ $bytes == 4MiB ]] && batch=4
  start_daemon
  for run in $(seq "$RUNS"); do
    "$BENCH" "${SOCK[@]}" --json throughput --clients 1 --block-bytes "$bytes" \
      --blocks-per-batch "$batch" --seconds "$SECONDS_PER_RUN" --working-set 1GiB \
      --seed "$run" > "$OUT/arena_${bytes}_r${run}.json"
  done
  stop_daemon
  echo "shared-arena put/get $bytes:"; cat "$OUT"/arena_${bytes}_r*.json; echo
done

RUNS=$RUNS PHASE_SECONDS=$SECONDS_PER_RUN "$(dirname "$0")/compare_baselines.sh" "$BUILD_DIR" \
  | tee "$OUT/baselines.txt"
