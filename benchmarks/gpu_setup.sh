# Sourced by the gpu_*session.sh scripts on a GPU machine: installs the wheels of
# `make gpu-wheels` (.whl/) beside the machine's own torch/numba (numpy < 2.5
# first on the path: numba-cuda compiles no kernel with numpy 2.5), puts them
# and the checkout on PYTHONPATH, prepares $OUT and records the GPU.
# With the parts of `make gpu-wheels-dali` in .whl/dali/ (all of them, copied
# across as many transfers as needed), it reassembles NVIDIA DALI, checks its
# SHA-256 and installs it too; without them (or with some missing) DALI is
# left out and says so (the training scripts then use --loader torch).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
DALI_STATUS="not carried (make gpu-wheels-dali puts its parts in .whl/dali/)"
for sum in .whl/dali/*.whl.sha256; do
  [ -f "$sum" ] || break
  wheel=$(basename "$sum" .sha256)
  cat .whl/dali/"$wheel".part-* > /tmp/"$wheel" 2>/dev/null
  if (cd /tmp && sha256sum --quiet -c "$OLDPWD/$sum"); then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      /tmp/"$wheel" .whl/dali/*.whl && DALI_STATUS="installed from $(ls .whl/dali/"$wheel".part-* | wc -l) parts"
  else
    DALI_STATUS="parts incomplete or damaged ($(ls .whl/dali/"$wheel".part-* 2>/dev/null | wc -l) found): not installed"
  fi
  rm -f /tmp/"$wheel"
done
KORNIA_STATUS="not carried (make gpu-wheels-kornia puts it in .whl/kornia/; generate --blend other than alpha needs it)"
if ls .whl/kornia/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/kornia/*.whl && KORNIA_STATUS="installed"
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; df -h "$PWD" /tmp | tail -2; } | tee "$OUT/gpu.txt"
python3 -c "import numpy, numba; print('numpy', numpy.__version__, 'numba', numba.__version__)" | tee -a "$OUT/gpu.txt"
echo "DALI: $DALI_STATUS" | tee -a "$OUT/gpu.txt"
echo "Kornia: $KORNIA_STATUS" | tee -a "$OUT/gpu.txt"
