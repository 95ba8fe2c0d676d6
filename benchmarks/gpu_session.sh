#!/usr/bin/env bash
# Every GPU figure of the GPU-native pipeline in one command (at most 7 minutes),
# on a machine with an NVIDIA GPU, from the repository root, after
# `make gpu-wheels` put the wheels that machine lacks in .whl/:
#
#     bash benchmarks/gpu_session.sh
#
# 1. the gpu-marked tests (real kernels, fgbg's JPEG kernels = the CPU's bytes, nvCOMP and nvJPEG/nvImageCodec stores
#    read back by zarr and tensorstore, bit-identical CPU/GPU stores);
# 2. benchmarks/bench_gpu.py: ceilings (HBM copy, pinned D2H, disk write), the
#    kernel, each stage of a shard, the JPEG encoder variants (fgbg's kernels among them; one call and
#    generate's writer count; whether `--jpeg-encoder auto` picks the fastest),
#    nvCOMP and its piece-size sweep, the naive loop and pool, and `generate`
#    with its defaults end to end, 400k lossless (`--compressor auto`: hybrid,
#    nvCOMP and the CPU's zstd shard by shard, with each one's share of the
#    shards) and JPEG, the lossless run with the CPU compressing alone (100k,
#    projected to 400k) next to it, with the targets met or not.
# Results in $OUT (default /tmp/out): gpu.txt, pytest-gpu.log, bench-gpu.log, gpu.json.
#
# Time budget (one H200 + 16 cores; the worst case is 20 + 110 + 290 s = 7 min):
#   setup: wheels installed with --target, the GPU recorded          ~20 s
#   pytest -m gpu                                                    <= 110 s (timeout)
#   bench_gpu.py                                                     <= 290 s (timeout); no stage
#     starts after 240 s (--budget-s). Expected: ceilings ~10, assets (drawn, then from the cache) + kernel ~15, host tables +
#     D2H ~3, JPEG variants ~40 (fgbg's kernels added; compiled once by the tests, then cached), nvCOMP ~8 + sweep ~15, CPU compress + write ~5, naive loop + pool
#     ~10, start-up ~10, generate 400k lossless hybrid ~45 (unmeasured: ~36 s expected, at worst the
#     CPU-alone 65), the same with the CPU compressing alone at 100k ~20, JPEG <= 45 (samples cut to
#     fit, the full run projected; was 60, cut to make room for the hybrid run), CPU 50k ~10: ~240 s.
set -uo pipefail
source benchmarks/gpu_setup.sh
timeout 110 python3 -m pytest -q -m gpu tests 2>&1 | tail -25 | tee "$OUT/pytest-gpu.log"
timeout 290 python3 benchmarks/bench_gpu.py --budget-s 240 --results-dir "$OUT" 2>&1 | tee "$OUT/bench-gpu.log"
