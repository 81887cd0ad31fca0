#!/usr/bin/env bash
# compare_fio.sh: the NVMe tier against fio on the same file, with the same block size and queue
# depth, in the same run. Prints the median of --runs runs of each measurement and the ratio
# kvtier / fio.
#
#   write    tier: WriteAsync calls of QD blocks, 16 calls in flight, through the tier's
#            pipeline (checksums, record writes at QD, fdatasync + synced index write per
#            group) — every block durable and indexed before it is acknowledged.
#            fio:  --rw=write --iodepth=QD, plain (nothing durable), and with --fdatasync=QD.
#            Also "full": the same writes after the tier was filled to its capacity (untimed),
#            so that every region they open is reclaimed first (a full cache's steady state),
#            against the same plain fio writes.
#   read     tier: 4 threads, each with QD/4 reads in flight (QD in all, as fio) through
#            ReadBatch calls of QD random blocks, each block's checksum verified as it
#            arrives; fio: --rw=randread --iodepth=QD.
#   latency  one block at a time (QD 1): tier Read (index lookup + read + checksum) against
#            fio --rw=randread --iodepth=1 (total latency percentiles).
#
# usage: bench/nvme/compare_fio.sh [--dir DIR] [--size BYTES] [--qd N] [--runs N]
#                                  [--seconds S] [--blocks "262144 2097152"] [--bench PATH]
# The directory must be on the filesystem to measure; the file is deleted afterwards.
set -euo pipefail

DIR=/tmp/kvtier-nvme-bench
SIZE=$((4 << 30))
QD=32
RUNS=3
SECONDS_PER_READ=8
BLOCKS="262144 2097152"
BENCH=build/bin/kvtier-nvme-bench
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --qd) QD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECONDS_PER_READ=$2; shift 2 ;;
    --blocks) BLOCKS=$2; shift 2 ;;
    --bench) BENCH=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v fio >/dev/null || { echo "fio is not installed (Debian package fio)" >&2; exit 1; }
[ -x "$BENCH" ] || { echo "$BENCH not found: build target kvtier_nvme_bench" >&2; exit 1; }

mkdir -p "$DIR"
FILE=$DIR/nvme-bench.dat
RESULTS=$DIR/results.jsonl
: > "$RESULTS"
trap 'rm -rf "$FILE" "$FILE.index"' EXIT

# One JSON line per measurement: {"block":..,"run":..,"what":..,"value":..}
record() { echo "{\"block\": $1, \"run\": $2, \"what\": \"$3\", \"value\": $4}" >> "$RESULTS"; }

fio_json() {  # fio_json BLOCK EXTRA_ARGS...
  local bs=$1; shift
  fio --name=kvtier-cmp --filename="$FILE" --size="$SIZE" --bs="$bs" --direct=1 \
      --ioengine=io_uring --output-format=json "$@" 2>/dev/null
}
jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

fresh_tier() {  # a zeroed superblock and no index: the tier formats the file afresh
  dd if=/dev/zero of="$FILE" bs=4096 count=1 conv=notrunc status=none
  rm -rf "$FILE.index"
}

echo "kvtier NVMe tier vs fio: file $FILE ($SIZE bytes), queue depth $QD, $RUNS runs" >&2
for bs in $BLOCKS; do
  rm -rf "$FILE" "$FILE.index"
  # Precondition: write the whole file once so that neither side pays for allocating extents.
  fio_json "$bs" --rw=write --iodepth="$QD" > /dev/null
  # Tier writes stay below capacity (headers, region tails), so nothing is evicted mid-run.
  wbytes=$((SIZE * 8 / 10 / bs * bs))
  for run in $(seq 1 "$RUNS"); do
    echo "  block $bs run $run" >&2
    v=$(fio_json "$bs" --rw=write --iodepth="$QD" --io_size="$wbytes" | jq_py "d['jobs'][0]['write']['bw_bytes']/1e6")
    record "$bs" "$run" fio_write "$v"
    v=$(fio_json "$bs" --rw=write --iodepth="$QD" --io_size="$wbytes" --fdatasync="$QD" | jq_py "d['jobs'][0]['write']['bw_bytes']/1e6")
    record "$bs" "$run" fio_write_fdatasync "$v"
    fresh_tier
    v=$("$BENCH" --mode write --file "$FILE" --capacity "$SIZE" --block "$bs" --qd "$QD" \
          --batch "$QD" --window 16 --bytes "$wbytes" | jq_py "d['mb_s']")
    record "$bs" "$run" tier_write "$v"
    v=$("$BENCH" --mode read --file "$FILE" --block "$bs" --qd "$QD" --readers 4 --batch "$QD" \
          --seconds "$SECONDS_PER_READ" | jq_py "d['mb_s']")
    record "$bs" "$run" tier_read "$v"
    v=$(fio_json "$bs" --rw=randread --iodepth="$QD" --runtime="$SECONDS_PER_READ" --time_based | jq_py "d['jobs'][0]['read']['bw_bytes']/1e6")
    record "$bs" "$run" fio_read "$v"
    lat=$("$BENCH" --mode latency --file "$FILE" --block "$bs" --seconds "$SECONDS_PER_READ")
    record "$bs" "$run" tier_p50_us "$(echo "$lat" | jq_py "d['p50_us']")"
    record "$bs" "$run" tier_p99_us "$(echo "$lat" | jq_py "d['p99_us']")"
    lat=$(fio_json "$bs" --rw=randread --iodepth=1 --runtime="$SECONDS_PER_READ" --time_based --lat_percentiles=1)
    record "$bs" "$run" fio_p50_us "$(echo "$lat" | jq_py "d['jobs'][0]['read']['lat_ns']['percentile']['50.000000']/1e3")"
    record "$bs" "$run" fio_p99_us "$(echo "$lat" | jq_py "d['jobs'][0]['read']['lat_ns']['percentile']['99.000000']/1e3")"
    fresh_tier
    v=$("$BENCH" --mode write --file "$FILE" --capacity "$SIZE" --block "$bs" --qd "$QD" \
          --batch "$QD" --window 16 --fill "$SIZE" --bytes "$wbytes" | jq_py "d['mb_s']")
    record "$bs" "$run" tier_write_full "$v"
  done
done

python3 - "$RESULTS" "$QD" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
qd = sys.argv[2]
by = {}
for r in rows:
    by.setdefault((r["block"], r["what"]), []).append(r["value"])
def med(block, what):
    return statistics.median(by[(block, what)])
print(f"{'block':>8} {'measure':<34} {'kvtier':>10} {'fio':>10} {'kvtier/fio':>10}")
for block in sorted({r["block"] for r in rows}):
    label = f"{block // 1024} KiB" if block < 1 << 20 else f"{block >> 20} MiB"
    lines = [
        (f"write MB/s (QD {qd})", "tier_write", "fio_write"),
        (f"write MB/s vs fio --fdatasync={qd}", "tier_write", "fio_write_fdatasync"),
        (f"write MB/s, tier full (QD {qd})", "tier_write_full", "fio_write"),
        (f"random read MB/s (QD {qd})", "tier_read", "fio_read"),
        ("get latency p50 us (QD 1)", "tier_p50_us", "fio_p50_us"),
        ("get latency p99 us (QD 1)", "tier_p99_us", "fio_p99_us"),
    ]
    for name, ours, theirs in lines:
        a, b = med(block, ours), med(block, theirs)
        print(f"{label:>8} {name:<34} {a:>10.1f} {b:>10.1f} {a / b:>10.2f}")
PY
