"""Whole-process ``cli.py generate`` on user files vs the naive per-image loop on the same files.

What a user compares: folders of photos (JPEG backgrounds) and RGBA PNG
cut-outs, and two programs run on them from the shell. Both are timed as whole
processes (interpreter start, imports, reading and resizing the files
included), alternating A B A B so drift hits both alike:

- A: ``python cli.py generate --bg BG --fg FG --limit N --out STORE --overwrite -q``
  (lossless defaults: zstd image, mask, depth).
- B: the original Colab loop in one process: read every background with
  Pillow and resize it to the output size, read every foreground as RGBA,
  then :func:`benchmarks.suite.naive.naive_generate` (Pillow resize and flip,
  straight-alpha paste, JPEG of composite and mask, appended to a zip) on the
  same placements as ``generate``'s plan (computed once beforehand and passed
  in a ``.npz``, as a plan would be). The cut-outs are cropped and shrunk
  once at load to the output's scale (``--naive-fg fit``, as generate's are, so
  each sample's work is the suite's established baseline), or resized from
  the file's full size every sample (``--naive-fg original``). ``--pool`` adds B on every core
  (:func:`~benchmarks.suite.naive.naive_generate_pool`, one zip per process).

Without ``--bg/--fg`` the files are made: the built-in streets drawn at
``--photo-size`` (default 640x480) saved as JPEG q95, the built-in cars as RGBA
PNGs. Only ``--unique-streets`` scenes are drawn (each takes ~1 s at 640x480);
the rest of the backgrounds are those scenes rolled sideways, so every file
differs and costs the same to decode.

    python benchmarks/bench_user_files.py --backgrounds 100 --foregrounds 10 --samples 40000 --json out.json
    python benchmarks/bench_user_files.py --quick --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLACEMENT_FIELDS = ("bg", "fg", "flip", "x", "y", "h", "w", "scale")


@dataclass(frozen=True)
class SavedPlacements:
    """``engine.compose.plan.Placements``' arrays, read back without importing the engine
    (the naive process imports only NumPy and Pillow, as the original loop did)."""

    bg: np.ndarray
    fg: np.ndarray
    flip: np.ndarray
    x: np.ndarray
    y: np.ndarray
    h: np.ndarray
    w: np.ndarray
    scale: np.ndarray

    def __len__(self) -> int:
        return len(self.bg)


def make_user_files(folder: Path, n_backgrounds: int, n_foregrounds: int, photo_size: tuple[int, int],
                    car_height: int, unique_streets: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``backgrounds/*.jpg`` (``photo_size`` = (W, H)) and ``foregrounds/car/*.png`` (RGBA) under ``folder``."""
    from PIL import Image

    from engine.assets.cars import car_sprite
    from engine.assets.streets import street_scene

    bg_dir, fg_dir = folder / "backgrounds", folder / "foregrounds" / "car"
    bg_dir.mkdir(parents=True, exist_ok=True)
    fg_dir.mkdir(parents=True, exist_ok=True)
    width, height = photo_size
    scenes = [street_scene(seed, i, height, width).image for i in range(min(unique_streets, n_backgrounds))]
    for i in range(n_backgrounds):
        k = i // len(scenes)
        image = np.roll(scenes[i % len(scenes)], shift=37 * k, axis=1)  # (H, W, 3) uint8
        Image.fromarray(image).save(bg_dir / f"street{i:03d}.jpg", quality=95)
    for i in range(n_foregrounds):
        Image.fromarray(car_sprite(seed, i, car_height)).save(fg_dir / f"car{i:03d}.png")
    return bg_dir, fg_dir.parent


def save_plan(bg_dir: Path, fg_dir: Path, samples: int, path: Path) -> int:
    """Save the first ``samples`` placements of ``generate``'s plan on these folders, with the files in plan order."""
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for
    from engine.config import GenerateConfig

    config = GenerateConfig(bg_dir=str(bg_dir), fg_dir=str(fg_dir), limit=samples)
    assets = load_assets(config)
    plan = plan_for(config, assets, make_depth_source(config, assets))
    n = min(samples, plan.n_samples)
    p = plan.placements(0, n)
    np.savez(path, **{f: getattr(p, f) for f in PLACEMENT_FIELDS},
             bg_files=np.array([str(Path(bg_dir) / f.name) for f in assets.bg_files]),
             fg_files=np.array([str(Path(fg_dir) / f.name) for f in assets.fg_files]),
             size=np.array([config.height, config.width]))
    return n


def fit_foreground(image: Any, height: int, width: int) -> np.ndarray:
    """Pillow's version of ``engine.assets.images.canonical_foreground``: crop an RGBA image
    tight to alpha > 0 and shrink it once into ``height x 3*width`` (``(h', w', 4) uint8``),
    so each sample resizes from about the output's scale, as the engine's cut-outs do."""
    from PIL import Image

    crop = image.crop(image.getchannel("A").getbbox())
    shrink = min(1.0, height / crop.height, 3 * width / crop.width)
    if shrink < 1.0:
        size = (max(1, round(crop.width * shrink)), max(1, round(crop.height * shrink)))
        crop = crop.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(crop)


def naive_main(plan_path: Path, out: Path, processes: int, fg_mode: str) -> None:
    """The naive whole process (B): read and resize the files with Pillow, then the per-image loop."""
    from PIL import Image

    from benchmarks.suite.naive import naive_generate, naive_generate_pool

    saved = np.load(plan_path)
    height, width = (int(v) for v in saved["size"])
    backgrounds = np.stack([np.asarray(Image.open(f).convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
                            for f in saved["bg_files"]])  # (NB, H, W, 3) uint8
    foregrounds = [Image.open(f).convert("RGBA") for f in saved["fg_files"]]
    foregrounds = [fit_foreground(f, height, width) if fg_mode == "fit" else np.asarray(f)
                   for f in foregrounds]  # (h, w, 4) uint8 each
    placements = SavedPlacements(**{f: saved[f] for f in PLACEMENT_FIELDS})
    if processes > 1:
        out.mkdir(parents=True, exist_ok=True)
        naive_generate_pool(backgrounds, foregrounds, placements, out, processes)
    else:
        naive_generate(backgrounds, foregrounds, placements, out)


def timed_process(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``command`` to completion: wall seconds and the child's user/system CPU seconds."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{stderr[-2000:]}")
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bg", type=Path, help="folder of backgrounds (default: make built-in streets as JPEGs)")
    ap.add_argument("--fg", type=Path, help="folder of RGBA foregrounds (default: make built-in cars as PNGs)")
    ap.add_argument("--backgrounds", type=int, default=100, help="backgrounds to make without --bg")
    ap.add_argument("--foregrounds", type=int, default=10, help="foregrounds to make without --fg")
    ap.add_argument("--photo-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"),
                    help="size of the made backgrounds, pixels")
    ap.add_argument("--car-height", type=int, default=360, help="height of the made cars, pixels")
    ap.add_argument("--unique-streets", type=int, default=10, help="distinct scenes drawn for the made backgrounds")
    ap.add_argument("--samples", type=int, default=40_000, help="samples per run (generate --limit)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, alternating")
    ap.add_argument("--pool", action="store_true", help="also time the naive loop on every core")
    ap.add_argument("--naive-fg", choices=("fit", "original"), default="fit",
                    help="naive loop's cut-outs: shrunk once at load to the output's scale like generate's "
                         "(fit), or resized from the file's full size every sample (original)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one run each (a smoke test)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--naive-plan", type=Path, help=argparse.SUPPRESS)  # the naive process (B) itself
    ap.add_argument("--naive-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--naive-processes", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.backgrounds, args.foregrounds, args.photo_size = 3, 2, (160, 120)
        args.car_height, args.unique_streets, args.samples, args.repeats = 60, 2, 40, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.naive_plan is not None:
        naive_main(args.naive_plan, args.naive_out, args.naive_processes, args.naive_fg)
        return
    from benchmarks.common import machine

    scratch = Path(tempfile.mkdtemp(prefix="fgbg-user-files-", dir=os.environ.get("FGBG_BENCH_SCRATCH")))
    try:
        if args.bg is None or args.fg is None:
            t = time.perf_counter()
            bg_dir, fg_dir = make_user_files(scratch / "user", args.backgrounds, args.foregrounds,
                                             tuple(args.photo_size), args.car_height, args.unique_streets)
            print(f"made {args.backgrounds} backgrounds {args.photo_size[0]}x{args.photo_size[1]} (JPEG) and "
                  f"{args.foregrounds} RGBA cars in {time.perf_counter() - t:.1f} s")
        bg_dir = args.bg or bg_dir
        fg_dir = args.fg or fg_dir
        plan_path = scratch / "plan.npz"
        n = save_plan(bg_dir, fg_dir, args.samples, plan_path)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        commands = {
            "generate": [sys.executable, str(ROOT / "cli.py"), "generate", "--bg", str(bg_dir), "--fg", str(fg_dir),
                         "--limit", str(n), "--out", str(scratch / "store.zarr"), "--overwrite", "-q"],
            "naive": [sys.executable, __file__, "--naive-plan", str(plan_path), "--naive-out",
                      str(scratch / "naive.zip"), "--naive-fg", args.naive_fg],
        }
        cores = os.cpu_count() or 1
        if args.pool and cores > 1:
            commands["naive_pool"] = [sys.executable, __file__, "--naive-plan", str(plan_path), "--naive-out",
                                      str(scratch / "naive-pool"), "--naive-processes", str(cores),
                                      "--naive-fg", args.naive_fg]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
        for r in range(args.repeats):
            for name, command in commands.items():  # A B A B: drift hits both alike
                run = timed_process(command, env)
                runs[name].append(run)
                print(f"run {r + 1} {name:10s} {run['wall_s']:7.2f} s wall ({n / run['wall_s']:6.0f} images/s), "
                      f"{run['user_s']:6.1f} s user, {run['sys_s']:5.1f} s system", flush=True)
        median = {name: statistics.median(x["wall_s"] for x in rs) for name, rs in runs.items()}
        rate = {name: n / s for name, s in median.items()}
        result = {
            "samples": n, "bg_dir": str(bg_dir), "fg_dir": str(fg_dir),
            "backgrounds": len(np.load(plan_path)["bg_files"]), "foregrounds": len(np.load(plan_path)["fg_files"]),
            "photo_size": list(args.photo_size) if args.bg is None else None, "naive_fg": args.naive_fg,
            "commands": {name: " ".join(c) for name, c in commands.items()},
            "runs": runs, "median_s": median, "images_per_s": rate,
            "ratio_generate_vs_naive": rate["generate"] / rate["naive"],
            "machine": machine(),
        }
        if "naive_pool" in rate:
            result["naive_pool_processes"] = cores
            result["ratio_generate_vs_naive_pool"] = rate["generate"] / rate["naive_pool"]
        for name in commands:
            print(f"median {name:10s} {median[name]:7.2f} s  {rate[name]:7.0f} images/s")
        print(f"generate / naive loop, whole process: {result['ratio_generate_vs_naive']:.2f}x"
              + (f"; / naive on {cores} processes: {result['ratio_generate_vs_naive_pool']:.2f}x"
                 if "naive_pool" in rate else ""))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
