"""Images/s of each blending mode (``generate --blend``), side by side.

    python benchmarks/bench_blend.py                      # CPU, 224 px, batches of 64
    python benchmarks/bench_blend.py --device cuda        # the GPU (CudaCompositor, batches of 2048)

Times the compositor alone (placement tables and atlas prepared beforehand,
no store writing): the composite kernel, plus the post-pass of
:mod:`kernels.blend` for every mode but ``alpha``. One warm-up, then the
median of ``--repeats`` batches. Results: stdout and
``benchmarks/results/blend[-cuda].json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import RESULTS, save, timed

MODES = {
    "alpha": {},
    "feather": {"blend": "feather"},
    "motion": {"blend": "motion"},
    "poisson": {"blend": "poisson"},
    "alpha+harmonize": {"harmonize": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--size", type=int, default=224, help="output height and width")
    ap.add_argument("--batch", type=int, default=None, help="samples per batch (default: 64 CPU, 2048 CUDA)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ", ".join(MODES))
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()
    batch = args.batch or (2048 if args.device == "cuda" else 64)

    from engine.compose.compositor import Compositor
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for
    from engine.config import GenerateConfig

    base = dict(builtin_backgrounds=20, builtin_foregrounds=20, height=args.size, width=args.size, shard_size=batch)
    config = GenerateConfig(**base)
    assets = load_assets(config)
    depth = make_depth_source(config, assets, args.device)
    plan = plan_for(config, assets, depth)
    placements = plan.placements(0, batch)
    sync = None
    if args.device == "cuda":
        import torch

        sync = torch.cuda.synchronize
    results = {"device": args.device, "size": args.size, "batch": batch, "modes": {}}
    print(f"{'mode':<18} {'images/s':>10} {'median s':>9}  (batch {batch}, {args.size} px, {args.device})")
    for name in args.modes.split(","):
        mode_config = GenerateConfig(**base, **MODES[name])
        if args.device == "cuda":
            from engine.compose.compositor_cuda import CudaCompositor

            compositor: Compositor = CudaCompositor(assets, depth, mode_config, capacity=batch, slots=1)
        else:
            compositor = Compositor(assets, depth, mode_config)
        prepared = compositor.prepare(placements)

        def run(c: Compositor = compositor) -> None:
            b = c.composite(prepared)
            b.ready()
            b.release()

        t = timed(run, repeats=args.repeats, warmup=1, sync=sync)
        rate = batch / t["median_s"]
        results["modes"][name] = {**t, "images_per_s": rate}
        print(f"{name:<18} {rate:>10.1f} {t['median_s']:>9.3f}")
        compositor.close()
    path = save("blend" + ("-cuda" if args.device == "cuda" else ""), results, args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
