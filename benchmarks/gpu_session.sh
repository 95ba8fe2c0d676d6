#!/usr/bin/env bash
# Run on the lent GPU machine (device tool), from the repository root, with the
# wheels of `make gpu-wheels` carried:  run(command="bash benchmarks/gpu_session.sh", carry=[".whl"])
# It installs the missing packages beside the machine's own torch/numba, runs the
# gpu-marked tests and the GPU benchmarks, and leaves logs and JSON in $OUT.
set -uo pipefail
source benchmarks/gpu_setup.sh
python3 -m pytest -q -m gpu tests 2>&1 | tail -20 | tee "$OUT/pytest-gpu.log"
python3 benchmarks/bench_gpu.py --results-dir "$OUT" 2>&1 | tee "$OUT/bench-gpu.log"
python3 benchmarks/bench_generate.py --devices cpu,cuda --codecs zstd,jpeg,jpeg-nvjpeg --samples 100000 --repeats 1 --results-dir "$OUT" 2>&1 | tee "$OUT/bench-generate.log"
