#!/usr/bin/env bash
# The blending modes (`generate --blend`, `--harmonize`) on a GPU machine, in one
# command (at most ~6 minutes), from the repository root, after `make gpu-wheels`
# and `make gpu-wheels-kornia` put their wheels in .whl/ and .whl/kornia/:
#
#     bash benchmarks/gpu_blend_session.sh
#
# 1. the blending tests, gpu-marked ones included (CPU vs CUDA post-pass within
#    2 grey levels; CPU vs CUDA stores: labels exact, images within 2 levels);
# 2. benchmarks/bench_blend.py --device cuda: images/s per mode, batches of 2,048 at 224 px,
#    and the CPU figures of the same machine beside them (batches of 64);
# 3. one object vs 1-3 objects per image (layered post-pass), alpha and feather, on the GPU.
# Results in $OUT (default /tmp/out): gpu.txt, pytest-blend.log, bench-blend.log,
# blend-cuda.json, blend.json, blend-objects-cuda.json.
set -uo pipefail
source benchmarks/gpu_setup.sh
timeout 90 python3 -m pytest -q tests/kernels/test_blend.py tests/engine/compose/test_generate_blend.py 2>&1 \
  | tail -25 | tee "$OUT/pytest-blend.log"
timeout 120 python3 benchmarks/bench_blend.py --device cuda --results-dir "$OUT" 2>&1 | tee "$OUT/bench-blend.log"
timeout 60 python3 benchmarks/bench_blend.py --device cpu --modes alpha,feather,motion,alpha+harmonize \
  --results-dir "$OUT" 2>&1 | tee -a "$OUT/bench-blend.log"
timeout 90 python3 benchmarks/bench_blend.py --device cuda --objects "1 1,1 3" --modes alpha,feather \
  --scale-min 0.1 --scale-max 0.3 --results-dir "$OUT" 2>&1 | tee -a "$OUT/bench-blend.log"
