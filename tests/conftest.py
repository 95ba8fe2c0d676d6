"""Shared fixtures: kernel devices, tolerances, small stores.

The built-in asset cache points at a per-session temporary folder (below).
Without a real GPU, Numba's CUDA simulator stands in for ``numba.cuda`` (it
must be switched on before numba is first imported, hence here). Tests that
need real hardware carry ``@pytest.mark.gpu`` and are skipped without it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - any failure means no usable GPU
        return False


HAS_CUDA = _has_cuda()
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "0" if HAS_CUDA else "1")

# The built-in asset cache of this session: a fresh folder, never the user's
# (CLI tests in subprocesses inherit it); deleted when the session ends. Under
# pytest-xdist the main process makes it before starting its workers, which
# inherit it and share it (entries are written by rename, safe to share).
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("FGBG_TEST_SESSION_CACHE"):
    SESSION_CACHE_DIR = os.environ["FGBG_TEST_SESSION_CACHE"]
else:
    SESSION_CACHE = tempfile.TemporaryDirectory(prefix="fgbg-test-cache-")
    SESSION_CACHE_DIR = os.environ["FGBG_TEST_SESSION_CACHE"] = SESSION_CACHE.name
os.environ["FGBG_CACHE_DIR"] = SESSION_CACHE_DIR

#: absolute tolerance per output dtype, for kernels compared with references
TOLERANCE = {"uint8": 0, "uint16": 0, "float16": 1e-3, "float32": 1e-5}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", "cuda"])
def kernel_device(request: pytest.FixtureRequest) -> str:
    """Where a kernel runs: Numba CPU, or Numba CUDA (simulated without a GPU)."""
    return request.param


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
