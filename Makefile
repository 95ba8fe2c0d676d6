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

## test: the whole test suite (CUDA kernels run under Numba's simulator without a GPU)
test: $(STAMP)
	$(PY) -m pytest

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
GPU_WHEELS := numpy==2.4.6 zarr==3.1.6 numcodecs==0.16.6 google-crc32c==1.9.0 donfig==0.8.1.post1 \
	nvidia-nvcomp-cu13==6.0.0.12 nvidia-libnvcomp-cu13==6.0.0.12 \
	nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.0.1.86
gpu-wheels:
	rm -rf .whl && mkdir -p .whl
	for w in $(GPU_WHEELS); do python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $$w || exit 1; done
	python3 benchmarks/trim_wheel.py .whl/nvidia_*.whl
	du -ch .whl/*.whl | tail -1

clean:
	rm -rf demo.zarr preview.png .pytest_cache
