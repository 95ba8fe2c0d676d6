"""Training input: loading a split from a store, and assembling batches.

    python benchmarks/bench_data.py              # 8,192-sample built-in store at 224x224

Times ``load_split`` (store → resized in-memory arrays) at the paper-like
224×224 input and the CPU-sized 112×112, streaming one batch's images from
the store (``train --stream``: 32 random samples, decoding only their
chunks), and ``make_batch`` (32 samples: gather, flips, colour jitter,
normalisation) on the CPU and, where CUDA exists, on the GPU. Results: stdout and ``benchmarks/results/data.json``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from common import RESULTS, save, scratch, timed

SCRATCH = scratch("data")  # emptied at the end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--load", type=int, default=5000, help="samples per load_split (a sorted random subset)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()

    import torch

    from engine.compose.generate import generate
    from engine.config import GenerateConfig, RunOptions
    from engine.learn.data import StoreImages, load_split, make_batch

    store = SCRATCH / "data.zarr"
    generate(GenerateConfig(builtin_backgrounds=20, builtin_foregrounds=20, limit=args.samples), store,
             RunOptions(overwrite=True))
    index = np.sort(np.random.default_rng(0).choice(args.samples, min(args.load, args.samples), replace=False))
    results: dict[str, object] = {"store_samples": args.samples, "loaded_samples": len(index)}
    for size, out in ((224, 54), (112, 26)):
        t0 = time.perf_counter()
        data = load_split(store, index, (size, size), (out, out))
        seconds = time.perf_counter() - t0
        results[f"load_split_{size}"] = {"seconds": seconds, "samples_per_s": len(index) / seconds}
        print(f"load_split {len(index)} samples at {size}x{size}: {seconds:6.2f} s ({len(index) / seconds:7.0f} samples/s)")
        if size == 224:
            batch_data = data
    rng = np.random.default_rng(1)
    for size in (224, 112):
        streamed = StoreImages(store, index, (size, size))
        t = timed(lambda: streamed[rng.integers(0, len(index), 32)], repeats=30, warmup=3)
        results[f"stream_batch_{size}_ms"] = t["median_s"] * 1e3
        print(f"stream 32 random images at {size}x{size}: {t['median_s'] * 1e3:6.2f} ms "
              f"({32 / t['median_s']:7.0f} samples/s, median of 30)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else None
        step = iter(range(10**9))
        t = timed(lambda: make_batch(batch_data, rng.integers(0, len(batch_data), 32), next(step), device),
                  repeats=30, warmup=3, sync=sync)
        results[f"make_batch_224_{device}_ms"] = t["median_s"] * 1e3
        print(f"make_batch 32 x 224x224 on {device}: {t['median_s'] * 1e3:6.2f} ms (median of 30)")
    path = save("data", results, args.results_dir)
    shutil.rmtree(store, ignore_errors=True)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
