# Installs the wheels of `make gpu-wheels` (.whl/transfer1/, .whl/transfer2/)
# beside a GPU machine's own torch/numba, into /tmp/site (numpy < 2.5 first on
# the path: numba-cuda compiles no kernel with numpy 2.5), and records the GPU
# in $OUT/gpu.txt. Run by benchmarks/gpu_check.sh (under its setup cap) and
# sourced by benchmarks/gpu_train.sh; the checkout itself is run in place
# (PYTHONPATH), not installed.
# NVIDIA DALI travels as parts of one xz-compressed wheel (split across the two
# transfers) with its SHA-256: reassembled, checked and installed when every
# part is here; else left out, and said so (DALI steps are then skipped).
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site
wheels=$(find .whl -name '*.whl' 2>/dev/null | sort)
if [ -n "$wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels \
    || echo "some carried wheels did not install" | tee -a "$OUT/gpu.txt"
fi
DALI_STATUS="not carried (make gpu-wheels puts its parts in .whl/transfer1/ and .whl/transfer2/)"
for sum in $(find .whl -name '*.sha256' 2>/dev/null); do
  file=$(basename "$sum" .sha256)
  parts=$(find .whl -name "$file.part-*" -printf '%f %p\n' | sort | cut -d' ' -f2)
  cat $parts > "/tmp/$file" 2>/dev/null
  if (cd /tmp && sha256sum --quiet -c "$OLDPWD/$sum"); then
    wheel=/tmp/${file%.xz}
    [ "$file" != "${file%.xz}" ] && python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'), 1 << 24)" "/tmp/$file" "$wheel"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheel" \
      && DALI_STATUS="installed from $(echo $parts | wc -w) parts"
    rm -f "$wheel"
  else
    DALI_STATUS="parts incomplete or damaged ($(echo $parts | wc -w) found): not installed"
  fi
  rm -f "/tmp/$file"
done
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; df -h "$PWD" /tmp | tail -2; } | tee "$OUT/gpu.txt"
python3 -c "import numpy, numba; print('numpy', numpy.__version__, 'numba', numba.__version__)" | tee -a "$OUT/gpu.txt"
echo "DALI: $DALI_STATUS" | tee -a "$OUT/gpu.txt"
