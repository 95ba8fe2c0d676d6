#!/usr/bin/env bash
# Every GPU default run once, then every GPU figure, in one command of at most
# 9 minutes (setup included) on a machine with an NVIDIA GPU, from the
# repository root, after the two transfers of `make gpu-wheels` (.whl/transfer1/
# with the checkout, then .whl/transfer2/; each at most 60 MiB) are on that machine:
#
#     bash benchmarks/gpu_check.sh            # everything, in order of value
#     bash benchmarks/gpu_check.sh --plan     # the stages and their time caps (no GPU needed)
#     bash benchmarks/gpu_check.sh --stages smoke,headline   # some stages only
#
# Stages (benchmarks/gpu_check.py holds the table): setup (the carried wheels
# installed beside the machine's torch/numba, the GPU recorded), smoke (every
# GPU default once, pass/fail per path), headline (400k lossless and JPEG with
# generate's defaults, naive loop, disk floor), training (images/s and NVML
# utilisation per loader), user_loader (when benchmarks/bench_user_loader.py
# exists), sweeps (codecs, JPEG encoders, overhead options, blend modes,
# scenes). Each step has its own timeout and appends a JSON line to
# $OUT/gpu_check.jsonl as it ends (OUT defaults to /tmp/out), so a run cut
# short keeps what it measured. Then, in the checkout:
#
#     python benchmarks/gpu_report.py gpu_check.jsonl    # RESULTS.md's GPU section, regenerated
#
# The paper's training schedule is its own command: bash benchmarks/gpu_train.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
  if [ "$arg" = "--plan" ]; then exec python3 benchmarks/gpu_check.py "$@"; fi
done
STARTED=$(date +%s)
export OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
timeout "$(python3 benchmarks/gpu_check.py --cap setup)" bash benchmarks/gpu_setup.sh \
  || echo "setup did not finish in its cap: going on with what it installed" | tee -a "$OUT/gpu.txt"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 benchmarks/gpu_check.py --started "$STARTED" --results "$OUT/gpu_check.jsonl" "$@" 2>&1 | tee "$OUT/gpu_check.log"
tar -czf "$OUT/gpu_check-logs.tar.gz" -C "${GPU_CHECK_WORK:-/tmp/fgbg-check}" steps 2>/dev/null || true
