#!/usr/bin/env bash
# `python cli.py bench` (full sizes, CPU and CUDA stages, ceilings, naive baselines)
# on a machine with an NVIDIA GPU, from the repository root, after `make gpu-wheels`
# put the wheels that machine lacks in .whl/ (about 5 minutes):
#
#     bash benchmarks/gpu_bench_session.sh
#
# Results in $OUT (default /tmp/out): gpu.txt, bench.log and the run's record
# bench-<time>-<commit>-cpu-cuda.json. Copy the record into benchmarks/results/,
# then `python cli.py bench --report` adds it to benchmarks/RESULTS.md and the chart.
set -uo pipefail
source benchmarks/gpu_setup.sh
timeout 400 python3 cli.py bench --out "$OUT" --scratch /tmp/fgbg-bench --quiet 2>&1 | tee "$OUT/bench.log"
