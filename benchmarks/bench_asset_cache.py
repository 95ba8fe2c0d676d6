"""Start-up saved by the on-disk cache of the built-in assets (engine/assets/cache.py).

    python benchmarks/bench_asset_cache.py [--repeats 3] [--limit 2048] [--skip-cli]

Measured, each the median of ``--repeats``:

- ``load_assets`` of the default config (100 scenes + 100 cars, 224×224)
  in one process: cache off (draw only), cold (an empty cache folder: draw
  and write), warm (every piece read back);
- ``python cli.py generate --out … --limit N --overwrite`` as a fresh process,
  whole call, cold (a new empty cache folder each time) and warm;
- the cache's size on disk for the defaults.

Every run uses its own cache folders under the scratch folder (never the
user's). Results: stdout and ``benchmarks/results/asset_cache.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import RESULTS, ROOT, save, scratch
from engine.compose.generate import load_assets
from engine.config import GenerateConfig

SCRATCH = scratch("asset_cache")  # emptied at the end


def median_seconds(fn: Callable[[int], object], repeats: int) -> dict[str, float]:
    """Median, min and max seconds of ``fn(k)`` for ``k`` in ``range(repeats)`` (each call its own set-up)."""
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        fn(k)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def with_cache(folder: str, fn: Callable[[], object]) -> object:
    before = os.environ.get("FGBG_CACHE_DIR")
    os.environ["FGBG_CACHE_DIR"] = folder
    try:
        return fn()
    finally:
        if before is None:
            del os.environ["FGBG_CACHE_DIR"]
        else:
            os.environ["FGBG_CACHE_DIR"] = before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is reported)")
    ap.add_argument("--limit", type=int, default=2048, help="samples of the timed `cli.py generate` calls")
    ap.add_argument("--backgrounds", type=int, default=None, help="built-in backgrounds (default: generate's)")
    ap.add_argument("--foregrounds", type=int, default=None, help="built-in foregrounds (default: generate's)")
    ap.add_argument("--skip-cli", action="store_true", help="only the in-process load_assets figures")
    ap.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()

    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    sizes = {k: v for k, v in (("builtin_backgrounds", args.backgrounds), ("builtin_foregrounds", args.foregrounds))
             if v is not None}
    config = GenerateConfig(**sizes)
    warm = str(SCRATCH / "warm")
    with_cache(warm, lambda: load_assets(config))  # fills the warm folder; imports torch once for all

    r: dict[str, object] = {"backgrounds": config.builtin_backgrounds, "foregrounds": config.builtin_foregrounds,
                            "height": config.height, "width": config.width}
    r["load_assets_off"] = median_seconds(lambda k: with_cache("off", lambda: load_assets(config)), args.repeats)
    r["load_assets_cold"] = median_seconds(
        lambda k: with_cache(str(SCRATCH / f"cold-{k}"), lambda: load_assets(config)), args.repeats)
    r["load_assets_warm"] = median_seconds(lambda k: with_cache(warm, lambda: load_assets(config)), args.repeats)
    r["cache_bytes"] = sum(p.stat().st_size for p in Path(warm).rglob("*") if p.is_file())
    r["cache_files"] = sum(1 for p in Path(warm).rglob("*") if p.is_file())
    for key in ("off", "cold", "warm"):
        print(f"load_assets, cache {key}: {r[f'load_assets_{key}']['median_s']:.2f} s (median of {args.repeats})")
    print(f"cache for these assets: {r['cache_bytes'] / 1e6:.1f} MB in {r['cache_files']} files")

    if not args.skip_cli:
        flags = [f"--builtin-backgrounds={config.builtin_backgrounds}",
                 f"--builtin-foregrounds={config.builtin_foregrounds}"]

        def cli(folder: str, k: int) -> None:
            out = SCRATCH / f"cli-{k}.zarr"
            cmd = [sys.executable, "cli.py", "generate", "--out", str(out), "--limit", str(args.limit),
                   "--overwrite", *flags]
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "FGBG_CACHE_DIR": folder})
            shutil.rmtree(out, ignore_errors=True)

        r["limit"] = args.limit
        r["cli_generate_cold"] = median_seconds(lambda k: cli(str(SCRATCH / f"cli-cold-{k}"), k), args.repeats)
        r["cli_generate_warm"] = median_seconds(lambda k: cli(warm, k), args.repeats)
        for key in ("cold", "warm"):
            print(f"cli.py generate --limit {args.limit}, cache {key}: "
                  f"{r[f'cli_generate_{key}']['median_s']:.2f} s whole call (median of {args.repeats})")
    path = save("asset_cache", r, args.results_dir)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
