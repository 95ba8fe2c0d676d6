# fgbg — `make demo` and `make test` work on a fresh machine (Python 3.11 or 3.12).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench pictures gpu-wheels clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## demo: a sample store from the built-in assets, its summary, and a preview PNG
demo: $(STAMP)
	$(PY) cli.py generate --out demo.zarr --builtin-backgrounds 20 --builtin-foregrounds 20 --limit 4000 --shard-size 1000 --overwrite
	$(PY) cli.py info demo.zarr
	$(PY) cli.py preview demo.zarr --n 16 --out preview.png

## test: the whole test suite (CUDA kernels run under Numba's simulator without a GPU), on
## TEST_WORKERS processes (pytest-xdist; `make test TEST_WORKERS=0` runs it in this one)
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

## bench: images/s of generate vs the naive per-image loop (see benchmarks/RESULTS.md)
bench: $(STAMP)
	$(PY) benchmarks/bench_generate.py

## pictures: the depth-source pictures of docs/generating.md, in docs/
pictures: $(STAMP)
	cd benchmarks && ../$(PY) make_pictures.py

## gpu-wheels: everything benchmarks/gpu_check.sh (and gpu_train.sh) needs on a GPU machine, as two
# transfers of at most 60 MiB: transfer 1 = the checkout + .whl/transfer1/, transfer 2 = .whl/transfer2/.
# cp312 wheels that machine lacks: numpy < 2.5 (its numba-cuda compiles no kernel with its numpy 2.5.2),
# zarr and codecs, nvCOMP (GPU zstd), nvImageCodec + nvJPEG (GPU JPEG), Kornia (--blend), NVIDIA DALI
# and what it imports, nvidia-ml-py (NVML utilisation). NVIDIA's wheels are trimmed (benchmarks/trim_wheel.py):
# other Pythons' extensions, tools and headers dropped, and the CUDA code of every GPU but sm_90 (H100/H200)
# blanked; DALI (189 MiB as published) is then stored, xz-compressed and split across the two transfers.
GPU_BASE_WHEELS := numpy==2.4.6 zarr==3.1.6 numcodecs==0.16.6 google-crc32c==1.9.0 donfig==0.8.1.post1
GPU_CODEC_WHEELS := nvidia-nvcomp-cu13==6.0.0.12 nvidia-libnvcomp-cu13==6.0.0.12 \
	nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.0.1.86
KORNIA_WHEELS := kornia==0.9.0 kornia-rs==0.2.0
DALI_WHEEL := nvidia-dali-cuda130==2.4.0
DALI_DEPS  := astunparse==1.6.3 gast==0.7.0 six==1.17.0 optree==0.20.0 packaging==26.3 nvidia-ml-py==13.615.71
GPU_SM := 90
gpu-wheels:
	rm -rf .whl /tmp/fgbg-wheels && mkdir -p .whl /tmp/fgbg-wheels
	for w in $(GPU_BASE_WHEELS) $(GPU_CODEC_WHEELS) $(KORNIA_WHEELS) $(DALI_WHEEL) $(DALI_DEPS); do \
	  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d /tmp/fgbg-wheels $$w || exit 1; done
	python3 benchmarks/trim_wheel.py --keep-sm $(GPU_SM) /tmp/fgbg-wheels/nvidia_*nvcomp*.whl \
	  /tmp/fgbg-wheels/nvidia_nvimgcodec*.whl /tmp/fgbg-wheels/nvidia_nvjpeg*.whl
	python3 benchmarks/trim_wheel.py --keep-sm $(GPU_SM) --xz /tmp/fgbg-wheels/nvidia_dali_*.whl
	python3 benchmarks/gpu_transfers.py /tmp/fgbg-wheels
	rm -rf /tmp/fgbg-wheels

clean:
	rm -rf demo.zarr preview.png .pytest_cache
