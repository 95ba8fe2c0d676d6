#!/usr/bin/env bash
# On a GPU machine: the training loaders and the small-model overhead options,
# in one command of about 5 minutes (at most 8 by its timeouts), from the
# repository root, wheels of `make gpu-wheels` in .whl/ and the DALI parts of
# `make gpu-wheels-dali` in .whl/dali/ (every part: copy them across first):
#
#     bash benchmarks/gpu_loader_session.sh
#
# 1. the gpu-marked training tests (the CUDA-graphed step against eager steps,
#    batch assembly on the GPU);
# 2. bench_loader.py, 40k samples at 224: (a) device-resident, (b) DALI
#    lossless, (c) DALI JPEG, (d) torch loader, (e) online compositing, (f) each
#    loader alone, NVML utilisation during each, and (g) what each overhead
#    option buys (default vs fused SGD, CUDA graphs, torch.compile, batch
#    128/256 with linearly scaled rates);
# 3. bench_data.py: batch assembly on the GPU.
# Results in $OUT (default /tmp/out), 6 files: gpu.txt, pytest-gpu.log,
# bench-loader.log, loader.json, bench-data.log, data.json.
set -uo pipefail
source benchmarks/gpu_setup.sh
timeout 120 python3 -m pytest -q -s -m gpu tests/engine/learn 2>&1 | tail -25 | tee "$OUT/pytest-gpu.log"
if python3 -c "import nvidia.dali" 2>/dev/null; then
  timeout 270 python3 benchmarks/bench_loader.py --samples 40000 --input-size 224 --steps 200 --overhead-steps 100 \
    --results-dir "$OUT" 2>&1 | tee "$OUT/bench-loader.log"
else  # (b), (c) and the DALI loader alone need DALI: measure (g) alone
  echo "DALI does not import here: measuring (g) only" | tee "$OUT/bench-loader.log"
  timeout 270 python3 benchmarks/bench_loader.py --samples 40000 --input-size 224 --steps 200 --overhead-steps 100 \
    --sections overheads --results-dir "$OUT" 2>&1 | tee -a "$OUT/bench-loader.log"
fi
timeout 50 python3 benchmarks/bench_data.py --results-dir "$OUT" 2>&1 | tee "$OUT/bench-data.log"
