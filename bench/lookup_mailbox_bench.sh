#!/bin/bash
# Lookup latency, mailbox vs socket, 1 and 8 clients, side by side in one daemon.
set -u
OUT=${OUT:-/tmp}
for T in 2 4; do
  D=$(mktemp -d)
  .gpu/run .gpu/bin/kvtierd --data-dir $D --dram-capacity 1GiB --io-threads $T --log-level warn &
  P=$!
  sleep 2
  for run in 1 2 3; do
    for C in 1 8; do
      for M in mailbox socket; do
        flag=""; [ $M = socket ] && flag=--no-mailbox
        r=$(.gpu/run .gpu/bin/kvtier-bench --socket $D/kvtierd.sock --json --no-progress lookup --clients $C --keys 64 --seconds 3 $flag)
        echo "$r" | /usr/bin/env python3 -c "import json,sys; j=json.load(sys.stdin); print('T=$T run=$run C=$C', j['transport'], 'p50', round(j['latency_us']['p50'],1), 'p99', round(j['latency_us']['p99'],1), 'p999', round(j['latency_us']['p999'],1), 'rate', int(j['lookups_per_s']))"
      done
    done
  done
  .gpu/run .gpu/bin/kvtierctl --socket $D/kvtierd.sock stats | head -3
  kill $P; wait $P
done
