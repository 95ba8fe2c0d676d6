"""Online compositing next to reading a lossless store: samples/s for random batches.

    python benchmarks/bench_online.py                       # CPU, 224x224, 100 x 100 built-in assets
    python benchmarks/bench_online.py --device cuda         # also read_device (torch tensors on the GPU)

Generates (once) a lossless store of the first ``--samples`` samples of the
default plan, then times batches of ``--batch`` random indices, each batch
new, in turns (one batch of each, ``--repeats`` rounds after a warm-up round),
median:

- ``store``: images, depth and masks with ``ShardReader`` (only the needed
  chunks decoded, on every core), page cache warm;
- ``online cold``: ``OnlineSamples.read`` on a fresh compositor over the whole
  400k plan: most samples need a foreground resize not yet in the atlas (the
  first batches of a training run);
- ``online warm``: the same once ``OnlineSamples.fill_atlas`` has resized
  every foreground size of the plan (about 5,400, once each): the steady
  state, over the whole plan and over the store's samples.

Results in ``benchmarks/results/online_<device>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import RESULTS, save, scratch
from engine.compose.generate import generate
from engine.compose.online import OnlineSamples
from engine.config import GenerateConfig, RunOptions
from engine.store.shard_codec import ShardReader, shard_spec
from engine.store.zarr_store import inspect_store


def store_readers(path: Path) -> list[ShardReader]:
    """One reader per array (images, depth, masks) of a lossless fgbg store."""
    import zarr

    group = zarr.open_group(path, mode="r")
    readers = []
    for name in ("images", "depth", "masks"):
        array = group[name]
        spec = shard_spec(json.loads((path / name / "zarr.json").read_text()))
        key = array.metadata.encode_chunk_key
        zeros = (0,) * (array.ndim - 1)
        readers.append(ShardReader(lambda k, name=name, key=key, zeros=zeros: path / name / key((k, *zeros)),
                                   spec, tuple(array.shape[1:]), array.dtype, array.shape[0], name=name, store=path))
    return readers


def measure(contenders: dict[str, Callable[[], object]], repeats: int, batch: int, results: dict[str, object]) -> None:
    """Time one batch of each contender in turn, ``repeats`` rounds after a warm-up
    round (turns, so that a shared machine's changing load falls on all alike);
    record and print each one's median."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(repeats + 1):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        median = statistics.median(t)
        results[name] = {"median_s": median, "min_s": min(t), "max_s": max(t), "repeats": repeats,
                         "samples_per_s": batch / median}
        print(f"{name:30s} {batch / median:9.1f} samples/s  (median {1e3 * median:.1f} ms per batch)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2048, help="samples in the store (a prefix of the plan)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backgrounds", type=int, default=100)
    ap.add_argument("--foregrounds", type=int, default=100)
    ap.add_argument("--size", type=int, default=224, help="height and width of the samples")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()
    plan = GenerateConfig(builtin_backgrounds=args.backgrounds, builtin_foregrounds=args.foregrounds,
                          height=args.size, width=args.size)

    path = scratch("online") / f"store{args.samples}_{args.backgrounds}x{args.foregrounds}_{args.size}.zarr"
    if not (path.exists() and inspect_store(path).complete):
        t0 = time.perf_counter()
        generate(dataclasses.replace(plan, limit=args.samples), path, RunOptions(overwrite=True, device="cpu"))
        print(f"store: {args.samples} samples in {time.perf_counter() - t0:.0f} s")
    rng = np.random.default_rng(0)
    results: dict[str, object] = {"batch": args.batch, "samples_in_store": args.samples, "size": [args.size, args.size],
                                  "assets": [args.backgrounds, args.foregrounds]}
    readers = store_readers(path)
    pool = ThreadPoolExecutor(os.cpu_count() or 1)
    t0 = time.perf_counter()
    cold = OnlineSamples(plan, device=args.device, capacity=args.batch)
    results["online_setup_s"] = time.perf_counter() - t0
    print(f"online setup (assets, depth, plan): {results['online_setup_s']:.1f} s")
    draw = lambda n: rng.integers(0, n, args.batch)

    def from_store() -> None:
        rows = draw(args.samples)
        for reader in readers:
            reader.read(rows, pool.map)

    contenders = {"store (ShardReader)": from_store,
                  "online cold, whole plan": lambda: cold.read(draw(cold.n_samples))}
    measure(contenders, args.repeats, args.batch, results)

    t0 = time.perf_counter()
    cold.fill_atlas()
    results["fill_atlas_plan_s"] = time.perf_counter() - t0
    print(f"fill_atlas, whole plan: {results['fill_atlas_plan_s']:.1f} s")
    contenders = {"store (ShardReader)": contenders["store (ShardReader)"],
                  "online warm, whole plan": lambda: cold.read(draw(cold.n_samples)),
                  "online warm, store's samples": lambda: cold.read(draw(args.samples))}
    if cold.device == "cuda":
        import torch

        def device_batch() -> None:
            cold.read_device(draw(cold.n_samples))
            torch.cuda.synchronize()

        contenders["online warm, read_device"] = device_batch
    measure(contenders, args.repeats, args.batch, results)
    results["plan_samples"] = cold.n_samples
    save(f"online_{cold.device}", results, args.results_dir)


if __name__ == "__main__":
    main()
