# fgbg — `make demo` and `make test` work on a fresh machine (Python 3.11 or 3.12).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

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

clean:
	rm -rf demo.zarr preview.png .pytest_cache
