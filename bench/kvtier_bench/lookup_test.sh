#!/usr/bin/env bash
# kvtier-bench lookup end to end against a real kvtierd: the daemon's own count of the run's
# lookups matches the client's (one client, so nothing races the final snapshot), and the
# daemon's mean time per lookup fits inside the round trip the client measured; through the
# request mailbox and over the socket.
#   lookup_test.sh KVTIER_BENCH KVTIERD
set -euo pipefail
bench=$1 kvtierd=$2
source "$(dirname "$0")/test_daemon.sh"
start_kvtierd "$kvtierd" --dram-capacity 64MiB

for path in "" --no-mailbox; do
  out=$("$bench" --socket "$dir/kvtierd.sock" --no-progress --json lookup --clients 1 --keys 16 \
    --seconds 0.3 $path)
  /usr/bin/python3 - "$out" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
assert d["lookups"] > 0, d
assert d["daemon_lookups"] == d["lookups"], (d["daemon_lookups"], d["lookups"])
assert 0 < d["daemon_mean_us"] <= d["latency_us"]["mean"], d
print(d["transport"], d["lookups"], "lookups; daemon mean", round(d["daemon_mean_us"], 1),
      "us of", round(d["latency_us"]["mean"], 1))
PY
done
echo "lookup OK"
