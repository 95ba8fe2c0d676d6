"""Time of each depth source on the built-in assets (40k samples by default).

    python benchmarks/bench_depth.py [--samples 40000] [--teacher PATH] [--devices cpu,cuda]

Sources: ``ground-plane`` (built-in geometry); ``bg-maps`` (the built-in
backgrounds exported as JPEG photos with their ray-cast depth as 16-bit PNG
millimetre maps, read back as a user would give them, ``--occlusion
background``); ``teacher-bg`` and ``teacher-composite`` with a teacher network
(default: the tiny one ``make_teacher.py`` trains, made first if missing).
Each is one ``generate`` call (lossless store), timed whole (asset loading and
the teacher's background pass included). Results: stdout and
``benchmarks/results/depth.json``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import RESULTS, ROOT, SCRATCH, save
from engine.compose.compositor_cuda import resolve_device
from engine.compose.generate import generate, load_assets
from engine.config import GenerateConfig, RunOptions


def export_photos(config: GenerateConfig, folder: Path) -> None:
    """Built-in backgrounds as JPEG 'photos' + 16-bit PNG depth (mm); cars as RGBA PNGs."""
    assets = load_assets(config)
    for sub in ("bg", "fg", "depth"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, (image, depth) in enumerate(zip(assets.bg_images, assets.bg_depth)):
        Image.fromarray(image).save(folder / "bg" / f"street{i:03d}.jpg", quality=95)
        mm = np.clip(np.nan_to_num(depth, posinf=0) * 1000, 0, 65535).astype(np.uint16)  # sky: 0 = unknown
        Image.fromarray(mm).save(folder / "depth" / f"street{i:03d}.png")
    for i, car in enumerate(assets.fg_images):
        Image.fromarray(car).save(folder / "fg" / f"car{i:03d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=40_000)
    ap.add_argument("--teacher", type=Path, default=SCRATCH / "teacher.pt")
    ap.add_argument("--teacher-size", default="112x112")
    ap.add_argument("--devices", default="auto")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()
    devices = args.devices.split(",")
    if devices == ["auto"]:
        devices = ["cpu"] + (["cuda"] if resolve_device("auto") == "cuda" else [])
    SCRATCH.mkdir(parents=True, exist_ok=True)
    if not args.teacher.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_teacher.py"), "--out", str(args.teacher)],
                       check=True)
    base = dict(limit=args.samples)
    photos = SCRATCH / "photos"
    export_photos(GenerateConfig(), photos)
    size = tuple(int(v) for v in args.teacher_size.split("x"))
    sources = {
        "ground-plane": GenerateConfig(**base),
        "bg-maps": GenerateConfig(**base, bg_dir=str(photos / "bg"), fg_dir=str(photos / "fg"),
                                  depth_source="bg-maps", depth_maps_dir=str(photos / "depth"),
                                  occlusion="background"),
        "teacher-bg": GenerateConfig(**base, depth_source="teacher-bg", teacher=str(args.teacher), teacher_size=size),
        "teacher-composite": GenerateConfig(**base, depth_source="teacher-composite", teacher=str(args.teacher),
                                            teacher_size=size),
    }
    results: dict[str, dict[str, float]] = {}
    for device in devices:
        for name, config in sources.items():
            out = SCRATCH / f"depth-{name}.zarr"
            t0 = time.perf_counter()
            report = generate(config, out, RunOptions(overwrite=True, device=device))
            seconds = time.perf_counter() - t0
            results[f"{device}/{name}"] = {"samples": report.n_samples, "seconds": seconds,
                                           "images_per_s": report.n_samples / seconds}
            print(f"{device:4s} {name:18s} {report.n_samples} samples in {seconds:7.1f} s "
                  f"({report.n_samples / seconds:6.0f} images/s)")
            shutil.rmtree(out, ignore_errors=True)
    save("depth", results, args.results_dir)


if __name__ == "__main__":
    main()
