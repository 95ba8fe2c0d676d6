"""The naive per-image baseline (kept importable here for the scripts): see ``suite/naive.py``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: benchmarks.suite

from benchmarks.suite.naive import naive_generate, naive_generate_pool  # noqa: E402

__all__ = ["naive_generate", "naive_generate_pool"]
