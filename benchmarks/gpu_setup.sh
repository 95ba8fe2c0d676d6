# Sourced by the gpu_*session.sh scripts on a GPU machine: installs the wheels of
# `make gpu-wheels` (.whl/) beside the machine's own torch/numba (numpy < 2.5
# first on the path: numba-cuda compiles no kernel with numpy 2.5), puts them
# and the checkout on PYTHONPATH, prepares $OUT and records the GPU.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; df -h "$PWD" /tmp | tail -2; } | tee "$OUT/gpu.txt"
python3 -c "import numpy, numba; print('numpy', numpy.__version__, 'numba', numba.__version__)" | tee -a "$OUT/gpu.txt"
