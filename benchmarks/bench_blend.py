"""Images/s of each blending mode (``generate --blend``), side by side.

    python benchmarks/bench_blend.py                      # CPU, 224 px, batches of 64
    python benchmarks/bench_blend.py --device cuda        # the GPU (CudaCompositor, batches of 2048)
    python benchmarks/bench_blend.py --objects "1 1,1 3" --modes alpha,feather --scale-min 0.1 --scale-max 0.3

Times the compositor alone (placement tables and atlas prepared beforehand,
no store writing): the composite kernel, plus the post-pass of
:mod:`kernels.blend` for every mode but ``alpha``. One warm-up, then the
median of ``--repeats`` batches. ``--objects`` adds ``--objects-per-image``
variants (the post-pass then runs layer by layer, far to near); rows of a
variant other than ``1 1`` are named ``MODE objects MIN-MAX``. Results: stdout
and ``benchmarks/results/blend[-objects][-cuda].json`` (``-objects``: with ``--objects``).
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
    ap.add_argument("--objects", default="1 1", help="comma-separated 'MIN MAX' --objects-per-image variants")
    ap.add_argument("--scale-min", type=float, default=None, help="car size range (default: generate's)")
    ap.add_argument("--scale-max", type=float, default=None)
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()
    batch = args.batch or (2048 if args.device == "cuda" else 64)
    variants = [tuple(int(v) for v in pair.split()) for pair in args.objects.split(",")]

    from engine.compose.compositor import Compositor
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for
    from engine.config import GenerateConfig

    scale = {k: v for k, v in (("scale_min", args.scale_min), ("scale_max", args.scale_max)) if v is not None}
    sync = None
    if args.device == "cuda":
        import torch

        sync = torch.cuda.synchronize
    results = {"device": args.device, "size": args.size, "batch": batch, "scale": scale, "modes": {}}
    print(f"{'mode':<28} {'images/s':>10} {'median s':>9}  (batch {batch}, {args.size} px, {args.device})")
    for lo, hi in variants:
        base = dict(builtin_backgrounds=20, builtin_foregrounds=20, height=args.size, width=args.size,
                    shard_size=batch, objects_min=lo, objects_max=hi, **scale)
        config = GenerateConfig(**base)
        assets = load_assets(config)
        depth = make_depth_source(config, assets, args.device)
        plan = plan_for(config, assets, depth)
        placements = plan.objects(0, batch) if config.multi_object else plan.placements(0, batch)
        per_image = len(placements.objects) / batch if config.multi_object else 1.0
        for mode in args.modes.split(","):
            name = mode if (lo, hi) == (1, 1) else f"{mode} objects {lo}-{hi}"
            mode_config = GenerateConfig(**base, **MODES[mode])
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
            results["modes"][name] = {**t, "images_per_s": rate, "objects_per_image": per_image}
            print(f"{name:<28} {rate:>10.1f} {t['median_s']:>9.3f}")
            compositor.close()
    name = "blend" + ("-objects" if variants != [(1, 1)] else "") + ("-cuda" if args.device == "cuda" else "")
    path = save(name, results, args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
