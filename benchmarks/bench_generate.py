"""Images/s of ``generate`` end to end vs the naive per-image loop, same machine, same run.

    python benchmarks/bench_generate.py                      # defaults below
    python benchmarks/bench_generate.py --samples 40000 --codecs zstd,jpeg

For each device and codec the engine writes ``--samples`` samples of the
built-in assets to a scratch store ``--repeats`` times; the naive loop
(benchmarks/naive.py) does ``--naive-samples`` of the same placements in one
process, and ``--naive-samples`` per core on a pool of every core. Reported: median images/s of
the store-writing phase (compositing, compression, writes, fsync; asset
building and imports excluded, as they are for the naive loop) and of the whole
call, plus a per-stage breakdown for one shard. Results: table on stdout and
``benchmarks/results/generate.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from common import RESULTS, codec_options, save, scratch, timed  # first: puts the checkout on sys.path

# isort: split
from benchmarks.suite.runner import naive_baselines
from benchmarks.suite.stages import generate_runs
from engine.compose.compositor import Compositor
from engine.compose.compositor_cuda import resolve_device
from engine.compose.depth import make_depth_source
from engine.compose.generate import bottleneck, load_assets
from engine.compose.plan import plan_for
from engine.config import ON_DEVICE_JPEG, GenerateConfig
from engine.store.zarr_store import ZarrWriter

SCRATCH = scratch("generate")  # emptied at the end


def engine_run(config: GenerateConfig, out: Path, device: str) -> tuple[int, float, float, dict, str]:
    """One generate call (the suite's :func:`generate_runs`): (samples, seconds writing the store,
    seconds for the whole call, seconds per stage, which stage limits)."""
    run = generate_runs(config, out, device, 1)[0]
    return run.report.n_samples, run.writing_s, run.whole_s, run.report.stage_seconds, bottleneck(run.report)


def stage_breakdown(config: GenerateConfig, out: Path) -> dict[str, float]:
    """Images/s of each stage on one shard (fresh atlas for the resample stage)."""
    import numcodecs

    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    n = min(config.shard_size, plan.n_samples)
    stages: dict[str, float] = {}
    t = timed(lambda: plan.placements(0, n), repeats=5)
    stages["plan"] = n / t["median_s"]
    p = plan.placements(0, n)
    compositor = Compositor(assets, depth, config)
    t0 = time.perf_counter()
    compositor.table(p)  # cold atlas: every (foreground, size) of this shard resized once
    stages["resample_cold_atlas"] = n / (time.perf_counter() - t0)
    stages["resizes_in_shard"] = compositor.atlas.resizes
    t = timed(lambda: compositor.composite(p), repeats=5)
    stages["composite_warm_atlas"] = n / t["median_s"]
    batch = compositor.composite(p)
    zstd = numcodecs.Zstd(level=config.compression_level)
    chunk = config.samples_per_chunk

    def compress() -> None:
        for arr in (batch.images, batch.masks, batch.depth):
            for i in range(0, n, chunk):
                zstd.encode(np.ascontiguousarray(arr[i : i + chunk]))

    t = timed(compress, repeats=3)
    stages["compress_1_thread"] = n / t["median_s"]
    with ZarrWriter.create(out, config, plan, assets, depth.background_depth(), depth.describe(), overwrite=True) as writer:
        t = timed(lambda: writer.write_shard(0, batch), repeats=3)
    stages["write_shard_incl_compress_fsync"] = n / t["median_s"]
    return stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100_000, help="engine samples per run (the atlas of resized foregrounds fills in the first ~30k with 100 x 100 assets)")
    ap.add_argument("--naive-samples", type=int, default=2_000, help="naive-loop samples per run")
    ap.add_argument("--backgrounds", type=int, default=100)
    ap.add_argument("--foregrounds", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--codecs", default="zstd", help="comma-separated: zstd, jpeg, none, jpeg-nvjpeg (GPU encoder, cuda only)")
    ap.add_argument("--shard-size", type=int, default=2048)
    ap.add_argument("--devices", default="auto", help="comma-separated: cpu, cuda; auto = cpu, plus cuda where a GPU exists")
    ap.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()
    devices = args.devices.split(",")
    if devices == ["auto"]:
        devices = ["cpu"] + (["cuda"] if resolve_device("auto") == "cuda" else [])

    SCRATCH.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"samples": args.samples, "naive_samples": args.naive_samples,
                                  "assets": [args.backgrounds, args.foregrounds]}
    base = dict(builtin_backgrounds=args.backgrounds, builtin_foregrounds=args.foregrounds,
                limit=args.samples, shard_size=args.shard_size)

    # Naive loop first, on the same assets and placements.
    config = GenerateConfig(**base)
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    cores = os.cpu_count() or 1
    naive = naive_baselines(assets, plan, args.naive_samples, cores, SCRATCH, args.repeats)
    naive_rate = naive["naive_single"].items / naive["naive_single"].timing.median_s
    results["naive_images_per_s"] = naive_rate
    print(f"naive per-image loop (Pillow resize, NumPy paste, 2 JPEGs, zip): {naive_rate:8.0f} images/s")
    if cores > 1:
        pool_rate = naive["naive_pool"].items / naive["naive_pool"].timing.median_s
        results["naive_pool_images_per_s"] = pool_rate
        results["naive_pool_processes"] = cores
        print(f"naive loop on {cores} processes:                                  {pool_rate:8.0f} images/s")
    else:
        pool_rate = naive_rate

    for device, codec in [(d, c) for d in devices for c in args.codecs.split(",")]:
        options = codec_options(codec)
        if options["jpeg_encoder"] in ON_DEVICE_JPEG and device != "cuda":
            continue
        config = GenerateConfig(**base, **options)
        out = SCRATCH / f"bench-{codec}.zarr"
        runs = [engine_run(config, out, device) for _ in range(args.repeats)]
        n = runs[0][0]
        writing = statistics.median(r[1] for r in runs)
        whole = statistics.median(r[2] for r in runs)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        # the host stages; the GPU's own are in bench_gpu.py
        stages = stage_breakdown(config, SCRATCH / f"stages-{codec}.zarr") if device == "cpu" else {}
        rate = n / writing
        results[f"{device}/{codec}"] = {
            "samples": n, "images_per_s_writing": rate, "images_per_s_whole_call": n / whole,
            "seconds_writing_median": writing, "seconds_whole_median": whole,
            "speedup_vs_naive": rate / naive_rate, "speedup_vs_naive_pool": rate / pool_rate,
            "store_bytes": size, "stages_images_per_s": stages,
            "stage_seconds_last_run": runs[-1][3], "bottleneck_last_run": runs[-1][4],
        }
        flags = f"--image-codec {options['image_codec']}" + (
            f" --jpeg-encoder {options['jpeg_encoder']}" if options["jpeg_encoder"] != "auto" else "")
        print(f"engine --device {device} {flags}: {rate:8.0f} images/s writing "
              f"({rate / naive_rate:.1f}x naive, {rate / pool_rate:.1f}x naive pool), "
              f"{n / whole:.0f} images/s whole call incl. assets+imports, store {size / 1e6:.0f} MB")
        print(f"    {runs[-1][4]}")
        for stage, value in stages.items():
            unit = "" if stage == "resizes_in_shard" else " images/s"
            print(f"    {stage:34s} {value:10.0f}{unit}")
    path = save("generate", results, args.results_dir)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
