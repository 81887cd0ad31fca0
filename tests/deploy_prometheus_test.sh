#!/usr/bin/env bash
# deploy/prometheus with the real promtool: the scrape config and the rules it loads are valid,
# and the rules' unit tests (kvtier-rules.test.yml) pass. Exit 77 (skip) without promtool.
set -euo pipefail
dir="$1/deploy/prometheus"
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found (Debian package prometheus; scripts/setup.sh installs it)"
  exit 77
fi
promtool check config "$dir/prometheus.yml"
cd "$dir" && promtool test rules kvtier-rules.test.yml

# The Grafana dashboard's queries: each must parse as PromQL (promtool checks them as recording
# rules; Grafana's $instance variable becomes a regex that matches everything).
rules="$(mktemp --suffix=.yml)"
trap 'rm -f "$rules"' EXIT
/usr/bin/python3 - "$1/deploy/grafana/kvtier-dashboard.json" "$rules" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert len(exprs) >= 20, f"only {len(exprs)} queries in the dashboard"
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        out.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e.replace('$instance', '.*'))}\n")
print(f"{len(exprs)} dashboard queries")
PY
promtool check rules "$rules"
