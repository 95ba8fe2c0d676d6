"""JPEG q95 (4:4:4) of built-in composites: libjpeg (Pillow) vs fgbg's kernels.

    python benchmarks/bench_jpeg.py [--samples 512] [--size 224] [--repeats 3] [--device cuda]

Encodes ``--samples`` composites of the default plan (plan order) side by
side, median of ``--repeats`` after a warm-up: Pillow on one thread and on a
pool of every core (one part per core, as a writer's pool would), fgbg's CPU
twin on one thread and on every core (Numba's threads), and with ``--device
cuda`` fgbg's CUDA kernels (:class:`kernels.jpeg_cuda.CudaJpegEncoder`) on
device images next to torchvision's nvJPEG. Also bytes per image and the
lowest PSNR of each against the composites. Results: stdout and
``benchmarks/results/jpeg[-cuda].json``.
"""

from __future__ import annotations

import argparse
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from common import RESULTS, builtin_composites, save, timed  # first: puts the checkout on sys.path

# isort: split
from engine.store.jpeg import encode_jpeg_pillow
from kernels.jpeg import encode_jpeg_batch


def min_psnr(files: np.ndarray, images: np.ndarray) -> float:
    worst = np.inf
    for data, image in zip(files, images):
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float64)
        mse = max(float(np.mean((decoded - image) ** 2)), 1e-12)
        worst = min(worst, 10 * np.log10(255**2 / mse))
    return float(worst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()

    images = builtin_composites(args.samples, args.size)
    n, cores = len(images), os.cpu_count() or 1
    parts = np.array_split(np.arange(n), cores)

    with ThreadPoolExecutor(cores) as pool:
        variants = {
            "pillow_one_thread": lambda: encode_jpeg_pillow(images, 95),
            "pillow_all_cores": lambda: np.concatenate(list(pool.map(lambda ix: encode_jpeg_pillow(images[ix], 95), parts))),
            "fgbg_cpu_one_thread": lambda: encode_jpeg_batch(images, 95, parallel=False),
            "fgbg_cpu_all_cores": lambda: encode_jpeg_batch(images, 95),
        }
        if args.device == "cuda":
            import torch
            from numba import cuda

            from engine.store.jpeg import encode_jpeg_torchvision
            from kernels.jpeg_cuda import CudaJpegEncoder

            d_images = cuda.to_device(images)
            encoder = CudaJpegEncoder(cuda.stream())
            t_images = torch.from_numpy(images).cuda()
            variants["fgbg_cuda"] = lambda: encoder.encode(d_images, 95)
            variants["torchvision_nvjpeg"] = lambda: encode_jpeg_torchvision(t_images, 95)
        results: dict[str, dict[str, float]] = {}
        for name, fn in variants.items():
            files = fn()
            t = timed(fn, repeats=args.repeats, warmup=0)
            results[name] = {"images_per_s": n / t["median_s"], "min_images_per_s": n / t["max_s"],
                             "bytes_per_image": float(np.mean([len(f) for f in files])), "min_psnr_db": min_psnr(files, images)}
            print(f"{name:>22}  {results[name]['images_per_s']:9,.0f} images/s  "
                  f"{results[name]['bytes_per_image']:8,.0f} B/image  {results[name]['min_psnr_db']:.2f} dB", flush=True)
    if args.device == "cuda":
        results["fgbg_cuda_equals_cpu"] = {"value": float(list(variants["fgbg_cuda"]()) == list(variants["fgbg_cpu_all_cores"]()))}
    save("jpeg" + ("-cuda" if args.device == "cuda" else ""), {"samples": n, "size": args.size, "cores": cores, **results},
         args.results_dir)


if __name__ == "__main__":
    main()
