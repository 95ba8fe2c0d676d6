"""Shared benchmark plumbing: timing with warm-up and repeats, machine facts, JSON.

Every benchmark prints a table and writes ``benchmarks/results/<name>.json``
holding the figures, the command line, and the hardware/software it ran on.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from benchmarks.suite.machine import cpu_model  # noqa: E402 - needs the checkout on sys.path

RESULTS = ROOT / "benchmarks" / "results"
#: scratch space (ignored by git); tests point it elsewhere with FGBG_BENCH_SCRATCH
SCRATCH = Path(os.environ.get("FGBG_BENCH_SCRATCH", ROOT / "benchmarks" / "scratch"))


def scratch(name: str) -> Path:
    """A benchmark's own scratch folder, which it may empty: ``SCRATCH/<name>``."""
    return SCRATCH / name


def machine() -> dict[str, Any]:
    """Hardware and software versions of this run."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
    }
    for name in ("numpy", "numba", "torch", "zarr", "PIL"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing package is just not reported
            pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return info


def timed(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Median, min and max seconds of ``fn`` over ``repeats`` after ``warmup`` calls
    (the suite's :func:`benchmarks.suite.timer.measure`, as a dict).

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs inside the timed region so
    asynchronous GPU work is counted.
    """
    from benchmarks.suite.timer import measure

    t = measure(fn, repeats=repeats, warmup=warmup, sync=sync)
    return {"median_s": t.median_s, "min_s": min(t.times_s), "max_s": max(t.times_s), "repeats": repeats}


def builtin_composites(samples: int, size: int) -> Any:
    """``(samples, size, size, 3) uint8``: the first composites of the default
    plan of built-in assets (plan order), composited on the CPU."""
    from engine.compose.compositor import Compositor
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for
    from engine.config import GenerateConfig

    config = GenerateConfig(height=size, width=size, limit=samples)
    assets = load_assets(config)
    depth = make_depth_source(config, assets, "cpu")
    return Compositor(assets, depth, config).composite(plan_for(config, assets, depth).placements(0, samples)).images


def codec_options(spec: str) -> dict[str, str]:
    """A benchmark codec name → ``GenerateConfig`` fields: ``zstd``, ``none``,
    ``jpeg`` (the default encoder: on the GPU where one runs, else libjpeg),
    ``jpeg-libjpeg``, ``jpeg-nvjpeg``, ``jpeg-nvimgcodec`` or ``jpeg-nvimgcodec-streams``."""
    codec, _, encoder = spec.partition("-")
    return {"image_codec": codec, "jpeg_encoder": encoder or "auto"}


def save(name: str, results: dict[str, Any], folder: Path = RESULTS) -> Path:
    """Write ``results`` with machine facts and the command line to ``folder/<name>.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    doc = {"benchmark": name, "command": " ".join(sys.argv), "machine": machine(), "results": results}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
