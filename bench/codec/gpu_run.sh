#!/bin/bash
# Everything the codec measures on the GPU machine, in one call (the device budget pays for
# each machine start): byte-identity tests, bench_codec_gpu for every bundled variant, Nsight
# Compute on a 64 MiB batch, and the KV cache of a randomly initialised transformer measured by
# kvz, zstd -1 and lz4. Results go to one tarball in $OUT (docs/benchmarks.md quotes them).
#
# Here (build machine):
#   cmake --build build-gpucodec -j2 --target bench_codec_gpu compression_gpu_codec_test \
#     bench_codec_cpu kvtier-codec
#   ../shared/gpu/bundle.sh .gpu build-gpucodec/bin/{bench_codec_gpu,bench_codec_cpu,kvtier-codec} \
#     build-gpucodec/tests/compression_gpu_codec_test [other bench_codec_gpu_* variants]
# There (device tool, carry .gpu):  bench/codec/gpu_run.sh [steps]
# Steps: test bench ncu sanitize model (default: all but sanitize). Variants: every
# .gpu/bin/bench_codec_gpu*; the one named bench_codec_gpu is the current code and the one ncu
# profiles (plus bench_codec_gpu_base, a build of the code before the change being measured,
# with NCU_BASE=1).
set -u
out=${OUT:-/tmp/codec_out}
work=/tmp/codec_work
rm -rf "$work"
mkdir -p "$out" "$work"
steps=${*:-test bench ncu model}
run=.gpu/run
bin=.gpu/bin
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$work/steps.log"; }

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw \
    --format=csv
  nproc
  ls /usr/local/cuda/bin 2>/dev/null | tr '\n' ' '
  echo
  command -v ncu nsys || true
} >"$work/machine.txt" 2>&1

for step in $steps; do
  case $step in
    test)
      log "gpu tests"
      $run $bin/compression_gpu_codec_test >"$work/test.txt" 2>&1
      echo "compression_gpu_codec_test rc=$?" | tee -a "$work/steps.log"
      tail -3 "$work/test.txt"
      ;;
    bench)
      # Two rounds of every variant, interleaved, so that drift shows as a spread.
      for round in 1 2; do
        for b in $bin/bench_codec_gpu*; do
          log "$(basename "$b") round $round"
          $run "$b" --runs 30 >"$work/$(basename "$b").$round.txt" 2>&1
          echo "$(basename "$b") rc=$?" >>"$work/steps.log"
        done
      done
      ;;
    ncu)
      ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
      variants=$bin/bench_codec_gpu
      [ -n "${NCU_BASE:-}" ] && variants="$variants $bin/bench_codec_gpu_base"
      for b in $variants; do
        [ -x "$b" ] || continue
        name=$(basename "$b")
        log "ncu $name 64 MiB"
        "$ncu" --clock-control none --target-processes all \
          -k regex:'DecodeKernel|PlanKernel|WriteKernel|FusedEncodeKernel' --launch-skip 3 --launch-count 3 \
          --set full --import-source yes -f -o "$work/$name" \
          $run "$b" --profile-mib 64 >"$work/$name.ncu.log" 2>&1
        "$ncu" -i "$work/$name.ncu-rep" --page details >"$work/$name.ncu.details.txt" 2>&1
        "$ncu" -i "$work/$name.ncu-rep" --page raw --csv >"$work/$name.ncu.raw.csv" 2>&1
        "$ncu" -i "$work/$name.ncu-rep" --page source --csv --print-source cuda,sass \
          >"$work/$name.ncu.source.csv" 2>&1
        log "ncu $name 1 MiB durations"
        "$ncu" --clock-control none --target-processes all -k regex:'Kernel' \
          --metrics gpu__time_duration.sum,sm__warps_active.avg.pct_of_peak_sustained_active \
          $run "$b" --profile-mib 1 >"$work/$name.ncu.1mib.txt" 2>&1
      done
      ;;
    sanitize)
      log "compute-sanitizer memcheck on the damaged-frame test"
      san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
      timeout 200 "$san" --tool memcheck --target-processes all --error-exitcode 9 \
        $run $bin/compression_gpu_codec_test --gtest_filter='*Damaged*:*LargeKv*' >"$work/sanitize.txt" 2>&1
      echo "memcheck rc=$?" | tee -a "$work/steps.log"
      tail -4 "$work/sanitize.txt"
      ;;
    model)
      log "random-model KV dump"
      PYTHONUNBUFFERED=1 python3 bench/codec/dump_random_model_kv.py --out "$work/kv" \
        >"$work/model.txt" 2>&1
      echo "dump rc=$?" | tee -a "$work/steps.log"
      tail -5 "$work/model.txt"
      kv=$work/kv/llama_random
      log "bench_codec_cpu on the dumps"
      $run $bin/bench_codec_cpu --mib 64 --runs 3 --input "bf16:${kv}_bf16.bin" \
        --input "fp16:${kv}_fp16.bin" --input "fp8e4m3:${kv}_fp8e4m3.bin" \
        >"$work/model_cpu.txt" 2>&1
      for dtype in bf16 fp16 fp8e4m3; do
        $run $bin/kvtier-codec compress --dtype $dtype "${kv}_$dtype.bin" "$work/kv.kvz" &&
          $run $bin/kvtier-codec info --chunks "$work/kv.kvz" >"$work/model_info_$dtype.txt" 2>&1
      done
      log "bench_codec_gpu on the bf16 dump"
      $run $bin/bench_codec_gpu --runs 30 --max-mib 64 --input "bf16:${kv}_bf16.bin" \
        >"$work/model_gpu.txt" 2>&1
      # Small samples to look at on the build machine.
      for dtype in bf16 fp16; do head -c $((4 << 20)) "${kv}_$dtype.bin" >"$work/sample_$dtype.bin"; done
      cp "$kv.json" "$work/" 2>/dev/null
      rm -rf "$work/kv" "$work/kv.kvz"
      ;;
  esac
done
log "done"
tar -C "$work" -czf "$out/results.tgz" .
ls -la "$out"
