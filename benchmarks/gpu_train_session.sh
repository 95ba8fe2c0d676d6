#!/usr/bin/env bash
# On a GPU machine: the paper's schedule (coarse, then fine) on
# the full 400k built-in store at 224x224, in one command, wheels of
# `make gpu-wheels` in .whl/:  bash benchmarks/gpu_train_session.sh
# The store is generated on the GPU first (timed by bench_train.py); logs and
# JSON land in $OUT (default /tmp/out). Validation runs every 5,000 steps on the 40k held-out samples.
set -uo pipefail
source benchmarks/gpu_setup.sh
# --loader torch: DALI's wheel (over 64 MiB) is not among the carried ones yet
python3 benchmarks/bench_train.py --loader torch --samples 400000 --input-size 224 --coarse-steps 20000 --fine-steps 10000 \
  --eval-every 5000 --store /tmp/train400k.zarr --out /tmp/run400k --results-dir "$OUT" 2>&1 | tee "$OUT/bench-train.log"
python3 benchmarks/bench_data.py --results-dir "$OUT" 2>&1 | tee "$OUT/bench-data.log"  # make_batch on the GPU
# at most 8 files come back from $OUT
cp /tmp/run400k/coarse_log.csv /tmp/run400k/fine_log.csv /tmp/run400k/fine_predictions.png "$OUT"/ 2>/dev/null || true
