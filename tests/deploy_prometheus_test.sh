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
