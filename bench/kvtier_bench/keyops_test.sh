#!/usr/bin/env bash
# kvtier-bench keyops end to end against a real kvtierd: every call is timed, every fresh block
# reads back (keyops fails otherwise), and bad arguments are refused.
#   keyops_test.sh KVTIER_BENCH KVTIERD
set -euo pipefail
bench=$1 kvtierd=$2
source "$(dirname "$0")/test_daemon.sh"
start_kvtierd "$kvtierd" --dram-capacity 64MiB

out=$("$bench" --socket "$dir/kvtierd.sock" --no-progress --json keyops --batch 256 --batches 2 \
  --rounds 3 --resident 1000)
echo "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
ns = d["ns_per_key"]
calls = ["reserve_put", "commit_put", "start_get", "finish_get", "remove"]
assert all(ns[c] > 0 for c in calls), ns
assert abs(sum(ns[c] for c in calls) - ns["total"]) < 1e-6 * ns["total"] + 1e-9, ns
assert d["resident"] == 1000 and d["batch"] == 256, d
PY

# The same with kvz frames, as a GPU client puts them (codecs and raw lengths per key).
out=$("$bench" --socket "$dir/kvtierd.sock" --no-progress --json keyops --batch 128 --batches 2 \
  --rounds 2 --block-bytes 16KiB --encoded)
/usr/bin/python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert d['encoded'] and d['ns_per_key']['total'] > 0, d" "$out"

# Bad arguments are refused before anything runs.
if "$bench" --socket "$dir/kvtierd.sock" --no-progress keyops --batch 0 2> "$dir/err.txt"; then
  echo "FAIL: keyops accepted --batch 0"; exit 1
fi
grep -q "must be positive" "$dir/err.txt" || { cat "$dir/err.txt"; exit 1; }
echo "keyops OK"
