"""Counting a store's channel statistics: NumPy's bincount vs the Numba kernel (and the CUDA one).

    python benchmarks/bench_stats.py [--samples 256] [--size 224] [--repeats 5] [--device cuda]

``generate`` counts every lossless shard's images into per-channel histograms
(:mod:`engine.store.stats`). It used ``np.bincount`` per channel, which holds
the GIL; :func:`kernels.histogram.channel_histogram` releases it. Measured on
``--samples`` built-in composites (plan order): GB/s of image bytes counted by
``bincount`` and by the kernel on one thread, and by the kernel on every core
at once (one batch per thread: how generate's writer threads use it; near the
core count × one thread means the GIL is not in the way). With ``--device cuda``
also :func:`kernels.histogram_cuda.channel_histogram_cuda` on device images,
against the device copy bandwidth. Results: stdout and
``benchmarks/results/stats[-cuda].json``.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import RESULTS, builtin_composites, save, timed  # first: puts the checkout on sys.path

# isort: split
from kernels.histogram import channel_histogram


def bincount_histogram(images: np.ndarray) -> np.ndarray:
    """The previous way: one ``np.bincount`` per channel of a strided view."""
    flat = images.reshape(-1, 3)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(3)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()

    images = builtin_composites(args.samples, args.size)
    gb = images.nbytes / 1e9
    cores = os.cpu_count() or 1
    assert (channel_histogram(images) == bincount_histogram(images)).all()

    def rate(fn) -> float:
        return gb / timed(fn, repeats=args.repeats)["median_s"]

    results = {"image_gb": gb, "cores": cores,
               "bincount_gb_s": rate(lambda: bincount_histogram(images)),
               "kernel_gb_s": rate(lambda: channel_histogram(images))}
    with ThreadPoolExecutor(cores) as pool:
        for name, fn in (("bincount", bincount_histogram), ("kernel", channel_histogram)):
            results[f"{name}_all_cores_gb_s"] = cores * gb / timed(
                lambda fn=fn: list(pool.map(fn, [images] * cores)), repeats=args.repeats)["median_s"]
    if args.device == "cuda":
        from numba import cuda

        from kernels.histogram_cuda import channel_histogram_cuda

        d_images, d_counts = cuda.to_device(images), cuda.device_array((3, 256), np.int64)
        d_copy = cuda.device_array_like(d_images)
        results["cuda_gb_s"] = rate(lambda: (channel_histogram_cuda(d_images, d_counts), cuda.synchronize()))
        results["device_copy_gb_s"] = rate(lambda: (d_copy.copy_to_device(d_images), cuda.synchronize()))
    for key, value in results.items():
        print(f"{key:>26}  {value:,.3f}")
    save("stats" + ("-cuda" if args.device == "cuda" else ""), {"samples": args.samples, "size": args.size, **results},
         args.results_dir)


if __name__ == "__main__":
    main()
