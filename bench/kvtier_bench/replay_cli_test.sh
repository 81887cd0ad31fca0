#!/usr/bin/env bash
# kvtier-bench replay end to end: the README's LRU figure at 5,859 blocks (30.9 %) and
# Belady's (54.6 %, within half a point), through the user-facing command.
#   replay_cli_test.sh KVTIER_BENCH TRACE
set -euo pipefail
bench=$1 trace=$2
[[ -f $trace ]] || { echo "skipped: no trace at $trace"; exit 77; }
check() {  # check POLICY_FLAGS... -- WANT TOLERANCE
  local want=${@: -2:1} tol=${@: -1}
  local out rate
  out=$("$bench" --json replay --trace "$trace" --capacity-blocks 5859 "${@:1:$#-3}")
  rate=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["hit_rate"])' <<<"$out")
  /usr/bin/python3 -c "import sys; r=float('$rate')*100; sys.exit(0 if abs(r-$want)<=$tol else 1)" ||
    { echo "FAIL: ${*:1:$#-3}: hit_rate $rate, want $want % +- $tol"; exit 1; }
  echo "ok: ${*:1:$#-3}: hit_rate $rate"
}
check --policy lru -- 30.9 0.05
check --belady -- 54.6 0.5
# A scheduler hinting 384 requests ahead, blocks pinned until their request (docs/policy.md).
check --policy prefix-slru --hint-lookahead 384 --hint-pins -- 41.44 0.05
"$bench" replay --trace "$trace" --capacity-blocks 5859 --policy no-such-policy >/dev/null 2>&1 &&
  { echo "FAIL: an unknown policy was accepted"; exit 1; }
echo "ok: unknown policy rejected"
