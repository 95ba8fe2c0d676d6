#!/usr/bin/env bash
# Run on the lent GPU machine (device tool), from the repository root, with the
# wheels of `make gpu-wheels` carried. Two parts, each well inside one call's
# 10-minute limit; chain them (the machine stays warm ~30 s between calls):
#   run(command="bash benchmarks/gpu_session.sh gpu", carry=[".whl"])       # gpu tests + bench_gpu (kernel, stages, 400k vs floor)
#   run(command="bash benchmarks/gpu_session.sh generate", carry=[".whl"])  # bench_generate: cpu and cuda vs the naive loop and pool
# It installs the missing packages beside the machine's own torch/numba and
# leaves logs and JSON in $OUT.
set -uo pipefail
part=${1:-gpu}
source benchmarks/gpu_setup.sh
case "$part" in
  gpu)
    python3 -m pytest -q -m gpu tests 2>&1 | tail -20 | tee "$OUT/pytest-gpu.log"
    python3 benchmarks/bench_gpu.py --results-dir "$OUT" 2>&1 | tee "$OUT/bench-gpu.log" ;;
  generate)
    python3 benchmarks/bench_generate.py --devices cpu,cuda --codecs zstd,jpeg,jpeg-nvjpeg --samples 100000 \
      --repeats 1 --results-dir "$OUT" 2>&1 | tee "$OUT/bench-generate.log" ;;
  *) echo "usage: bash benchmarks/gpu_session.sh gpu|generate" >&2; exit 2 ;;
esac
