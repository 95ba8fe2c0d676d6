#!/usr/bin/env bash
# `python cli.py bench --device cuda` (full sizes: every CUDA stage, the ceilings,
# the naive baselines on every core) on a machine with an NVIDIA GPU, from the
# repository root, after `make gpu-wheels` put the wheels that machine lacks in
# .whl/ (at most 7 minutes; the CPU stages at full size are left to a plain
# `python cli.py bench` where time allows):
#
#     bash benchmarks/gpu_bench_session.sh
#
# Results in $OUT (default /tmp/out): gpu.txt, bench.log and the run's record
# bench-<time>-<commit>-cpu-cuda.json (without it, bench.log says
# which stage the time ran out in). Copy the record into benchmarks/results/,
# then `python cli.py bench --report` adds it to benchmarks/RESULTS.md and the chart.
set -uo pipefail
source benchmarks/gpu_setup.sh
timeout 400 python3 cli.py bench --device cuda --out "$OUT" --scratch /tmp/fgbg-bench 2>&1 | tee "$OUT/bench.log"
