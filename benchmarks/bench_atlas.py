"""How much foreground resampling a whole store needs, with the atlas.

    python benchmarks/bench_atlas.py                 # the default 400k plan, 100 x 100 built-in assets

Every sample's foreground is its car resized to the sample's size. Resampling
per batch (what a Kornia/torch resize on the GPU would do) costs one resize per
sample; the atlas (engine/compose/compositor.py) resizes each distinct (foreground,
size) once and reuses it. This counts the distinct resizes of the plan and
times building every placement table of it (atlas fill + plane depth: the
whole host-side work of compositing) shard by shard, then a second pass with
the atlas full, its parts (placements, atlas lookup, plane depth) timed per
shard. Results: stdout and
``benchmarks/results/atlas.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import RESULTS, save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=None, help="first N samples of the plan (default: all 400k)")
    ap.add_argument("--backgrounds", type=int, default=100)
    ap.add_argument("--foregrounds", type=int, default=100)
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()

    from engine.compose.compositor import Compositor
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for
    from engine.config import GenerateConfig

    config = GenerateConfig(builtin_backgrounds=args.backgrounds, builtin_foregrounds=args.foregrounds, limit=args.samples)
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    compositor = Compositor(assets, depth, config)
    t0 = time.perf_counter()
    for start in range(0, plan.n_samples, config.shard_size):
        compositor.table(plan.placements(start, min(start + config.shard_size, plan.n_samples)))
    seconds = time.perf_counter() - t0
    # A second pass with the atlas full (the steady state of a long run), its parts
    # timed apart: what the prepare thread holds the interpreter for, per shard.
    import numpy as np

    from kernels import placement as P

    parts = {"placements": 0.0, "atlas_lookup": 0.0, "plane_depth": 0.0}
    shards = range(0, plan.n_samples, config.shard_size)
    for start in shards:
        t1 = time.perf_counter()
        p = plan.placements(start, min(start + config.shard_size, plan.n_samples))
        t2 = time.perf_counter()
        offsets = compositor.atlas.lookup(p.fg, p.h, p.w)
        t3 = time.perf_counter()
        t = np.zeros((len(p), P.N_COLUMNS), np.int64)
        t[:, P.BG], t[:, P.OFFSET], t[:, P.X], t[:, P.Y] = p.bg, offsets, p.x, p.y
        t[:, P.H], t[:, P.W], t[:, P.FLIP] = p.h, p.w, p.flip
        compositor.depth.plane_depth(p, t, compositor.atlas.view(), compositor.threshold)
        parts["placements"] += t2 - t1
        parts["atlas_lookup"] += t3 - t2
        parts["plane_depth"] += time.perf_counter() - t3
    warm_ms = {k: 1000 * v / len(shards) for k, v in parts.items()}
    results = {
        "samples": plan.n_samples, "distinct_resizes": compositor.atlas.resizes,
        "samples_per_resize": plan.n_samples / compositor.atlas.resizes, "atlas_bytes": compositor.atlas.used,
        "all_tables_seconds": seconds, "warm_ms_per_shard": warm_ms, "shard_size": config.shard_size,
    }
    print(f"{plan.n_samples} samples need {compositor.atlas.resizes} distinct resizes "
          f"({plan.n_samples / compositor.atlas.resizes:.0f} samples per resize; atlas {compositor.atlas.used / 1e6:.0f} MB); "
          f"every placement table (atlas fill + plane depth) in {seconds:.1f} s")
    print(f"warm atlas, per {config.shard_size}-sample shard: "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in warm_ms.items()) + f" (total {sum(warm_ms.values()):.2f} ms)")
    print(f"saved {save('atlas', results, args.results_dir)}")


if __name__ == "__main__":
    main()
