# Sourced by the gpu_*session.sh scripts on the lent GPU machine: installs the
# carried wheels (.whl/, from `make gpu-wheels`) beside the machine's own
# torch/numba, puts them and the checkout on PYTHONPATH, prepares $OUT and
# records the GPU's name.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
