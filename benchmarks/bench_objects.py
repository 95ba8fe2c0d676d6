"""Images/s of ``generate`` with several objects per image, side by side.

    python benchmarks/bench_objects.py                        # defaults below
    python benchmarks/bench_objects.py --variants "1 1,1 3,3 3" --samples 4000
    python benchmarks/bench_objects.py --online               # train --source online's reads instead
    python benchmarks/bench_objects.py --variants "1 1,1 3" --truncations 0,0.5   # --truncation too

Each variant (``--objects-per-image MIN MAX``) writes ``--samples`` samples of
the built-in assets to a scratch store; the variants alternate, ``--repeats``
rounds, so a machine's drift hits them alike. Reported: median images/s of the
store-writing phase (the same figure ``generate`` prints) and mean objects per
image (cars of 0.1-0.3 of the height by default: at generate's default
0.25-0.6 they span most of the width, and few extra ones fit). With
``--truncations``, every variant also runs at each ``--truncation`` given.
Results: table on stdout and ``benchmarks/results/objects.json``
(``objects-truncation.json`` with ``--truncations``).

``--online`` times ``OnlineSamples.read`` instead (what ``train --source
online`` composites per batch): ``--reads`` batches of ``--batch`` random
indices of the first ``--samples`` samples per round, the atlas filled first
(the steady state); images/s of those reads, median over rounds. Results in
``benchmarks/results/objects_online.json``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

from common import RESULTS, save, scratch  # first: puts the checkout on sys.path

# isort: split
from engine.compose.generate import generate
from engine.config import GenerateConfig, RunOptions

SCRATCH = scratch("objects")  # emptied at the end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="1 1,1 3,3 3", help="comma-separated 'MIN MAX' pairs")
    parser.add_argument("--samples", type=int, default=1920)
    parser.add_argument("--size", type=int, default=128, help="square output size")
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--scale-min", type=float, default=0.1,
                        help="smaller cars than generate's default, so several fit side by side")
    parser.add_argument("--scale-max", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--truncations", default="0", help="comma-separated --truncation values, each run per variant")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--online", action="store_true", help="time OnlineSamples.read (train --source online)")
    parser.add_argument("--batch", type=int, default=64, help="--online: samples per read")
    parser.add_argument("--reads", type=int, default=4, help="--online: reads timed per round")
    args = parser.parse_args()
    pairs = [tuple(int(v) for v in pair.split()) for pair in args.variants.split(",")]
    if args.online:
        online(args, pairs)
        return
    truncations = [float(v) for v in args.truncations.split(",")]
    variants = [(lo, hi, t) for lo, hi in pairs for t in truncations]
    label = lambda lo, hi, t: f"{lo} {hi}" + (f" trunc {t:g}" if t else "")  # noqa: E731
    rates: dict[str, list[float]] = {label(*v): [] for v in variants}
    objects: dict[str, float] = {}
    for _ in range(args.repeats):
        for lo, hi, t in variants:
            name = label(lo, hi, t)
            config = variant_config(args, lo, hi, t)
            out = SCRATCH / "s.zarr"
            report = generate(config, out, RunOptions(device=args.device, overwrite=True))
            rates[name].append(report.writing_images_per_second)
            if hi > 1:
                import zarr

                offset = zarr.open_group(out, mode="r")["meta/object_offset"][:]
                objects[name] = float(offset[-1]) / (len(offset) - 1)
            else:
                objects[name] = 1.0
    shutil.rmtree(SCRATCH, ignore_errors=True)
    results = table(rates, objects, "images_per_s_writing_median", "images/s (median)")
    save("objects" if truncations == [0.0] else "objects-truncation", {"device": args.device, "samples": args.samples, "size": args.size,
                     "scale": [args.scale_min, args.scale_max], **results}, args.results_dir)


def table(rates: dict[str, list[float]], objects: dict[str, float], key: str, title: str) -> dict[str, dict]:
    """Each variant's median rate (as ``key``), runs and objects per image; printed as a table."""
    results = {name: {key: statistics.median(r), "runs": r, "objects_per_image": objects[name]}
               for name, r in rates.items()}
    print(f"{'--objects-per-image':>22} {'objects/image':>14} {title:>25}  runs")
    for name, r in results.items():
        runs = ", ".join(f"{v:,.0f}" for v in r["runs"])
        print(f"{name:>22} {r['objects_per_image']:>14.2f} {r[key]:>25,.0f}  {runs}")
    return results


def variant_config(args: argparse.Namespace, lo: int, hi: int, truncation: float = 0.0) -> GenerateConfig:
    """The config of variant ``--objects-per-image lo hi`` (``--truncation``)."""
    return GenerateConfig(builtin_backgrounds=10, builtin_foregrounds=10, height=args.size, width=args.size,
                          limit=args.samples, shard_size=args.shard_size, objects_min=lo, objects_max=hi,
                          scale_min=args.scale_min, scale_max=args.scale_max, truncation=truncation)


def online(args: argparse.Namespace, variants: list[tuple[int, ...]]) -> None:
    """``--online``: images/s of ``OnlineSamples.read`` per variant (atlas filled, compiled)."""
    import time

    import numpy as np

    from engine.compose.online import OnlineSamples

    sources, objects = {}, {}
    for lo, hi in variants:
        name = f"{lo} {hi}"
        sources[name] = OnlineSamples(variant_config(args, lo, hi), device=args.device, capacity=args.batch)
        sources[name].fill_atlas()
        sources[name].read(np.arange(min(args.batch, sources[name].n_samples)))  # compiles the kernel
        o = sources[name].plan.objects(0, sources[name].n_samples)
        objects[name] = float(o.offset[-1]) / (len(o.offset) - 1)
    rng = np.random.default_rng(0)
    rates: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(args.repeats):
        for name, source in sources.items():
            draws = [rng.integers(0, source.n_samples, args.batch) for _ in range(args.reads)]
            t0 = time.perf_counter()
            for indices in draws:
                source.read(indices)
            rates[name].append(args.batch * args.reads / (time.perf_counter() - t0))
    results = table(rates, objects, "images_per_s_median", "online images/s (median)")
    save("objects_online", {"device": args.device, "samples": args.samples, "size": args.size, "batch": args.batch,
                            "scale": [args.scale_min, args.scale_max], **results}, args.results_dir)


if __name__ == "__main__":
    main()
