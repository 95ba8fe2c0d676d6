#!/usr/bin/env bash
# Every GPU figure of the richer scenes (several objects, --truncation, --blend,
# --harmonize, online compositing) in one command of at most 7 minutes, on a
# machine with an NVIDIA GPU, from the repository root, after
# `make gpu-wheels-scenes` put the wheels that machine lacks in .whl/ (numpy
# 2.4.6, zarr, numcodecs, crc32c, donfig; Kornia in .whl/kornia/: 33 MiB, one
# transfer with the checkout):
#
#     bash benchmarks/gpu_scenes_session.sh
#
# 1. the scene tests on the real GPU, gpu-marked ones included (CPU vs CUDA
#    post-pass within 2 grey levels, one and several objects; CPU and CUDA
#    stores with several objects, truncation and blending; online reads and
#    device launches equal the stores);
# 2. bench_blend.py: images/s per mode on the GPU (batches of 2,048 at 224 px)
#    and on this machine's CPU cores (batches of 64), then one object vs 1-3
#    objects per image (layered post-pass) with alpha and feather on the GPU;
# 3. bench_objects.py on the GPU: generate's writing phase with 1 1 / 1 3 / 3 3
#    objects per image, each at --truncation 0 and 0.5; then online reads
#    (train --source online) of the same variants.
# Results in $OUT (default /tmp/out), 8 files: gpu.txt, pytest-scenes.log,
# bench-scenes.log, blend-cuda.json, blend.json, blend-objects-cuda.json,
# objects-truncation.json, objects_online.json.
#
# Time budget (worst case, every timeout reached: 20 + 120 + 100 + 45 + 70 + 60 + 45 = 460 s):
#   setup ~20 s; tests <= 120 s; blend on the GPU <= 100 s, on the CPU <= 45 s; objects
#   on the GPU <= 70 s; generate variants <= 60 s; online reads <= 45 s.
set -uo pipefail
source benchmarks/gpu_setup.sh
timeout 120 python3 -m pytest -q tests/kernels/test_blend.py tests/engine/compose/test_generate_blend.py \
  tests/kernels/test_composite_objects.py tests/engine/compose/test_online.py tests/kernels/test_histogram.py \
  tests/kernels/test_composite.py 2>&1 | tail -25 | tee "$OUT/pytest-scenes.log"
timeout 100 python3 benchmarks/bench_blend.py --device cuda --results-dir "$OUT" 2>&1 | tee "$OUT/bench-scenes.log"
timeout 45 python3 benchmarks/bench_blend.py --device cpu --modes alpha,feather,motion,alpha+harmonize \
  --results-dir "$OUT" 2>&1 | tee -a "$OUT/bench-scenes.log"
timeout 70 python3 benchmarks/bench_blend.py --device cuda --objects "1 1,1 3" --modes alpha,feather \
  --scale-min 0.1 --scale-max 0.3 --results-dir "$OUT" 2>&1 | tee -a "$OUT/bench-scenes.log"
timeout 60 python3 benchmarks/bench_objects.py --device cuda --variants "1 1,1 3,3 3" --truncations 0,0.5 \
  --samples 8192 --shard-size 2048 --repeats 3 --results-dir "$OUT" 2>&1 | tee -a "$OUT/bench-scenes.log"
timeout 45 python3 benchmarks/bench_objects.py --online --device cuda --variants "1 1,1 3,3 3" --batch 256 \
  --reads 8 --samples 8192 --repeats 3 --results-dir "$OUT" 2>&1 | tee -a "$OUT/bench-scenes.log"
