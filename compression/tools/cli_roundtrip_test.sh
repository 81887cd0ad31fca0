#!/bin/sh
# kvtier-codec end to end: compress a golden input, decompress it, compare; info runs; a
# damaged file fails with a message and a non-zero exit.
#   cli_roundtrip_test.sh <kvtier-codec> <testdata-dir>
set -eu
codec=$1
data=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/kvtier-codec.XXXXXX")
trap 'rm -rf "$work"' EXIT

for case in bf16_keys:bf16 fp16_keys:fp16 fp8e4m3_keys:fp8e4m3 fp8e5m2_values:fp8e5m2 \
    raw_int8:raw; do
  name=${case%%:*}
  dtype=${case##*:}
  "$codec" compress --dtype "$dtype" --chunk-log2 12 "$data/$name.bin" "$work/$name.kvz"
  cmp "$work/$name.kvz" "$data/$name.kvz"   # same bytes as the golden frame
  "$codec" decompress "$work/$name.kvz" "$work/$name.out"
  cmp "$work/$name.out" "$data/$name.bin"
  "$codec" info --chunks "$work/$name.kvz" > "$work/info.txt"
  grep -q "huffman" "$work/info.txt"
done

# Two frames in one file decode to the concatenation.
cat "$data/bf16_keys.kvz" "$data/bf16_values.kvz" > "$work/two.kvz"
"$codec" decompress "$work/two.kvz" "$work/two.out"
cat "$data/bf16_keys.bin" "$data/bf16_values.bin" | cmp - "$work/two.out"
"$codec" info "$work/two.kvz" | grep -q "total: 2 frame"

# An empty input is one empty frame.
: > "$work/empty"
"$codec" compress --dtype bf16 "$work/empty" "$work/empty.kvz"
"$codec" decompress "$work/empty.kvz" "$work/empty.out"
cmp "$work/empty" "$work/empty.out"

# Damage: flip a byte in the middle; decompress must fail and say why.
cp "$data/bf16_keys.kvz" "$work/bad.kvz"
printf '\377' | dd of="$work/bad.kvz" bs=1 seek=300 conv=notrunc 2>/dev/null
if "$codec" decompress "$work/bad.kvz" "$work/bad.out" 2> "$work/err.txt"; then
  echo "damaged file decoded without an error" >&2
  exit 1
fi
grep -q "damaged" "$work/err.txt"

# An odd-sized file is not bf16.
printf 'abc' > "$work/odd"
if "$codec" compress --dtype bf16 "$work/odd" "$work/odd.kvz" 2> "$work/err.txt"; then
  exit 1
fi
grep -q "raw" "$work/err.txt"
echo "kvtier-codec round trips OK"
