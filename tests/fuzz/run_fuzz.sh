#!/bin/sh
# Runs a libFuzzer binary for a short, bounded time on a scratch copy of its seed corpus, so
# the checked-in corpus never changes under a test run. Exit 77 (ctest: skipped) when the
# binary has not been built: fuzz binaries come from the clang build in build/fuzz.
#   run_fuzz.sh <fuzzer> <seed-corpus-dir> <artifact-dir> <seconds>
set -eu
fuzzer=$1
seeds=$2
artifacts=$3
seconds=$4

if [ ! -x "$fuzzer" ]; then
  echo "$fuzzer not found; run \`make fuzz\` first" >&2
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kvtier-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -R "$seeds"/. "$work"/
mkdir -p "$artifacts"
# -timeout: one input taking a second is already a bug for code that parses at most a few MiB.
# Not exec: the trap must still remove the scratch corpus. A crash makes libFuzzer exit
# non-zero, which fails the test; the reproducer lands in <artifact-dir>.
"$fuzzer" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$artifacts"/ "$work"
