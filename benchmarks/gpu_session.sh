#!/usr/bin/env bash
# Every GPU figure of the GPU-native pipeline in one command (about 6 minutes),
# on a machine with an NVIDIA GPU, from the repository root, after
# `make gpu-wheels` put the wheels that machine lacks in .whl/:
#
#     bash benchmarks/gpu_session.sh
#
# 1. the gpu-marked tests (real kernels, nvCOMP and nvJPEG/nvImageCodec stores
#    read back by zarr and tensorstore, bit-identical CPU/GPU stores);
# 2. benchmarks/bench_gpu.py: ceilings (HBM copy, pinned D2H, disk write), the
#    kernel, each stage of a shard, nvCOMP, the JPEG encoders, the naive loop
#    and pool, and `generate` with its defaults end to end, 400k lossless and
#    JPEG, with the targets met or not.
# Results in $OUT (default /tmp/out): gpu.txt, pytest-gpu.log, bench-gpu.log, gpu.json.
set -uo pipefail
source benchmarks/gpu_setup.sh
timeout 120 python3 -m pytest -q -m gpu tests 2>&1 | tail -25 | tee "$OUT/pytest-gpu.log"
timeout 280 python3 benchmarks/bench_gpu.py --budget-s 220 --results-dir "$OUT" 2>&1 | tee "$OUT/bench-gpu.log"
