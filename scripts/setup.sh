#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing kvtier need.
# Idempotent and quiet when everything is present; uses sudo when not root.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config clang libclang-rt-14-dev clang-format
  # libraries (see docs/dependencies.md for why each one)
  libabsl-dev libboost-dev protobuf-compiler libprotobuf-dev libssl-dev
  libspdlog-dev libfmt-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev
  librocksdb-dev liburing-dev libxxhash-dev libzstd-dev liblz4-dev libibverbs-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # baselines the benchmarks run side by side, and their client libraries
  redis-server memcached fio libhiredis-dev libmemcached-dev
  # the metrics endpoint is checked by the real promtool and scraped by a real Prometheus
  prometheus
  # scripts and plots
  python3 python3-numpy python3-matplotlib
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
