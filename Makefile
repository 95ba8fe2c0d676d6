# fgbg — `make demo` and `make test` work on a fresh machine (Python 3.11 or 3.12).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench pictures gpu-wheels gpu-wheels-dali gpu-wheels-kornia gpu-wheels-scenes clean

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

## pictures: the README's depth-source pictures in docs/
pictures: $(STAMP)
	cd benchmarks && ../$(PY) make_pictures.py

## gpu-wheels: cp312 wheels the GPU machine lacks, into .whl/ (ignored), for benchmarks/gpu_session.sh
# numpy < 2.5: that machine's numba-cuda compiles no kernel with its numpy 2.5.2.
# nvCOMP (GPU zstd), nvImageCodec + nvJPEG (batched GPU JPEG). Trimmed of other
# Pythons' extensions, tools and headers to fit one 64 MiB transfer with the checkout.
GPU_BASE_WHEELS := numpy==2.4.6 zarr==3.1.6 numcodecs==0.16.6 google-crc32c==1.9.0 donfig==0.8.1.post1
GPU_WHEELS := $(GPU_BASE_WHEELS) \
	nvidia-nvcomp-cu13==6.0.0.12 nvidia-libnvcomp-cu13==6.0.0.12 \
	nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.0.1.86
gpu-wheels:
	mkdir -p .whl && rm -f .whl/*.whl
	for w in $(GPU_WHEELS); do python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $$w || exit 1; done
	python3 benchmarks/trim_wheel.py .whl/nvidia_*.whl
	du -ch .whl/*.whl | tail -1

## gpu-wheels-dali: NVIDIA DALI (cp312) for benchmarks/gpu_train_session.sh, as parts under 64 MiB in .whl/dali/
# The wheel is 189 MiB (174 MiB trimmed of other Pythons' extensions and headers),
# over what one transfer to the GPU machine may carry: split into 60 MiB parts
# (<wheel>.part-aa, -ab, -ac) with its SHA-256, which benchmarks/gpu_setup.sh checks after
# reassembling them. The small wheels DALI imports (astunparse, gast, six, optree,
# packaging), and nvidia-ml-py for bench_loader.py's NVML utilisation, ride with the first part.
DALI_WHEEL := nvidia-dali-cuda130==2.4.0
DALI_DEPS  := astunparse==1.6.3 gast==0.7.0 six==1.17.0 optree==0.20.0 packaging==26.3 nvidia-ml-py==13.615.71
gpu-wheels-dali:
	rm -rf .whl/dali /tmp/fgbg-dali && mkdir -p .whl/dali /tmp/fgbg-dali
	for w in $(DALI_WHEEL) $(DALI_DEPS); do python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d /tmp/fgbg-dali $$w || exit 1; done
	python3 benchmarks/trim_wheel.py /tmp/fgbg-dali/nvidia_dali_*.whl
	mv /tmp/fgbg-dali/*.whl .whl/dali/
	cd .whl/dali && w=$$(ls nvidia_dali_*.whl) && sha256sum $$w > $$w.sha256 && split -b 60M $$w $$w.part- && rm $$w
	ls -l .whl/dali && rm -rf /tmp/fgbg-dali

## gpu-wheels-kornia: Kornia + kornia-rs (cp312, 7.1 MiB) into .whl/kornia/, for `generate --blend` on the GPU
# machine. Apart from .whl/*.whl, which already fills one 64 MiB transfer.
KORNIA_WHEELS := kornia==0.9.0 kornia-rs==0.2.0
gpu-wheels-kornia:
	rm -rf .whl/kornia && mkdir -p .whl/kornia
	for w in $(KORNIA_WHEELS); do python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl/kornia $$w || exit 1; done
	du -ch .whl/kornia/*.whl | tail -1

## gpu-wheels-scenes: .whl/ for benchmarks/gpu_scenes_session.sh in one transfer (33 MiB): the base wheels
# of gpu-wheels (numpy < 2.5, zarr, numcodecs, crc32c, donfig; no nvCOMP or JPEG codecs) and Kornia
gpu-wheels-scenes:
	mkdir -p .whl && rm -f .whl/*.whl
	for w in $(GPU_BASE_WHEELS); do python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $$w || exit 1; done
	$(MAKE) gpu-wheels-kornia
	du -ch .whl/*.whl .whl/kornia/*.whl | tail -1

clean:
	rm -rf demo.zarr preview.png .pytest_cache
