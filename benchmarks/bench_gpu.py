"""GPU engine: per-stage rates, the kernel's bandwidth, and 400k end to end vs the floor.

    python benchmarks/bench_gpu.py                       # on a machine with a CUDA GPU
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_gpu.py --smoke   # code-path check, tiny sizes

Measured, all in one run on one machine:

- device copy bandwidth (device-to-device, read + write bytes / s) and
  pinned device-to-host bandwidth;
- the composite kernel alone at each ``--batch-sizes`` (warm atlas): images/s,
  output bytes/s, and that as a fraction of the copy bandwidth (the floor: each
  output byte written once, backgrounds and foregrounds read from cache);
- resizing a shard's foregrounds into an empty atlas (host), copying a batch
  back, JPEG-encoding it (Pillow, every core), compressing + writing it;
- ``generate --device cuda`` end to end for each codec, and its floor: the
  slowest of a plain sequential write of the store's bytes to the same disk,
  the device-to-host copy of the raw samples, and their compression on every
  core.

Results: stdout and ``benchmarks/results/gpu.json``. Without a GPU (and
without ``--smoke``) it says so and exits: those figures stay unmeasured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT, save

SCRATCH = ROOT / "benchmarks" / "scratch"


def seconds(fn, repeats: int = 5, sync=None) -> float:
    """Median seconds of ``fn`` (after one warm-up), synchronising inside the timing."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def device_bandwidth(cuda, size: int) -> tuple[float, float]:
    """(device-to-device copy bytes/s counting read + write, pinned device-to-host bytes/s)."""
    src = cuda.device_array(size, np.uint8)
    dst = cuda.device_array(size, np.uint8)
    pinned = cuda.pinned_array(size, np.uint8)
    t_copy = seconds(lambda: dst.copy_to_device(src), sync=cuda.synchronize)
    t_d2h = seconds(lambda: src.copy_to_host(pinned), sync=cuda.synchronize)
    return 2 * size / t_copy, size / t_d2h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=400_000, help="end-to-end samples (default: the full 400k)")
    ap.add_argument("--batch-sizes", default="256,1024,2048,4096")
    ap.add_argument("--codecs", default="zstd,jpeg")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check the code paths (e.g. on the simulator)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()

    from engine.compositor_cuda import CudaCompositor, cuda_status, device_name
    from engine.config import GenerateConfig, RunOptions
    from engine.depth import make_depth_source
    from engine.generate import generate, load_assets
    from engine.plan import SamplePlan
    from engine.store import ZarrWriter, encode_jpeg_batch
    from kernels.composite_cuda import composite_batch_cuda

    available, simulated = cuda_status()
    if not available or (simulated and not args.smoke):
        print("no CUDA GPU here: GPU figures not measured (see benchmarks/RESULTS.md)")
        return
    from numba import cuda

    if args.smoke:
        size, assets_n, sizes, samples, big = 16, 3, [4, 8], 48, 1 << 16
    else:
        size, assets_n, sizes, samples, big = 224, 100, [int(b) for b in args.batch_sizes.split(",")], args.samples, 1 << 30
    SCRATCH.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"device": device_name(), "simulated": simulated, "image_size": size}
    print(f"device: {results['device']}")

    # -- bandwidth floors of the device itself ---------------------------------
    copy_bw, d2h_bw = device_bandwidth(cuda, big)
    results["device_copy_GBps"] = copy_bw / 1e9
    results["d2h_pinned_GBps"] = d2h_bw / 1e9
    print(f"device-to-device copy: {copy_bw / 1e9:8.1f} GB/s (read + write)   pinned D2H: {d2h_bw / 1e9:6.1f} GB/s")

    # -- the kernel alone, per batch size ----------------------------------------
    config = GenerateConfig(builtin_backgrounds=assets_n, builtin_foregrounds=assets_n, height=size, width=size,
                            shard_size=max(sizes))
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = SamplePlan(config, assets.fg_sizes, len(assets.bg_images), depth.first_ground_rows())
    comp = CudaCompositor(assets, depth, config, capacity=max(sizes), slots=1)
    kernel: dict[str, dict[str, float]] = {}
    per_sample_out = size * size * (3 + 1 + 2)
    per_sample_in = size * size * (3 + 2)  # background image + depth, read once per output pixel
    for b in sizes:
        p = plan.placements(0, b)
        table = comp.table(p)
        comp._sync_atlas()
        slot = comp.free.get()
        slot.d_table[:b].copy_to_device(table)
        outs = (slot.d_images[:b], slot.d_masks[:b], slot.d_depth[:b])

        def launch() -> None:
            composite_batch_cuda(comp.d_bg, comp.d_bg_depth, comp.d_atlas[: comp.atlas.used], slot.d_table[:b],
                                 comp.threshold, *outs, None, stream=0, host_table=table)

        t = seconds(launch, sync=cuda.synchronize)
        t_d2h = seconds(lambda: [d.copy_to_host(h) for d, h in zip(outs, (slot.h_images[:b], slot.h_masks[:b], slot.h_depth[:b]))],
                        sync=cuda.synchronize)
        comp.free.put(slot)
        kernel[str(b)] = {
            "images_per_s": b / t, "output_GBps": b * per_sample_out / t / 1e9,
            "fraction_of_copy_bw_output_only": b * per_sample_out / t / copy_bw,
            "fraction_of_copy_bw_output_plus_bg_reads": b * (per_sample_out + per_sample_in) / t / copy_bw,
            "d2h_images_per_s": b / t_d2h,
        }
        k = kernel[str(b)]
        print(f"kernel batch {b:5d}: {k['images_per_s']:10.0f} images/s, {k['output_GBps']:6.1f} GB/s written "
              f"= {100 * k['fraction_of_copy_bw_output_only']:.0f}% of copy bandwidth "
              f"({100 * k['fraction_of_copy_bw_output_plus_bg_reads']:.0f}% counting background reads); "
              f"D2H {k['d2h_images_per_s']:.0f} images/s")
    results["kernel"] = kernel

    # -- host stages for one shard ----------------------------------------------
    n = max(sizes)
    fresh = CudaCompositor(assets, depth, config, capacity=n, slots=2)
    p = plan.placements(0, n)
    t0 = time.perf_counter()
    fresh.table(p)
    stages = {"resample_cold_atlas": n / (time.perf_counter() - t0)}
    batch = fresh.composite(p)
    batch.ready()
    cores = os.cpu_count() or 1
    with ThreadPoolExecutor(cores) as pool:
        parts = np.array_split(np.arange(n), cores)
        t = seconds(lambda: list(pool.map(lambda ix: encode_jpeg_batch(batch.images[ix], 95), parts)), repeats=3)
    stages["jpeg_encode_all_cores"] = n / t
    with ZarrWriter.create(SCRATCH / "stage.zarr", config, plan, assets, depth.background_depth(), depth.describe(),
                           overwrite=True) as writer:
        t = seconds(lambda: writer.write_shard(0, batch), repeats=3)
    stages["write_shard_compress_all_cores"] = n / t
    batch.release()
    results["stages_images_per_s"] = stages
    for key, value in stages.items():
        print(f"{key:34s} {value:10.0f} images/s")

    # -- end to end, and the floor ------------------------------------------------
    end_to_end: dict[str, dict[str, float]] = {}
    for codec in args.codecs.split(","):
        cfg = GenerateConfig(builtin_backgrounds=assets_n, builtin_foregrounds=assets_n, height=size, width=size,
                             image_codec=codec, limit=samples)
        out = SCRATCH / f"e2e-{codec}.zarr"
        marks: list[float] = []
        report = generate(cfg, out, RunOptions(overwrite=True, device="cuda", writer_threads=max(2, cores // 2)),
                          progress=lambda *_: marks.append(time.perf_counter()))
        t_write = time.perf_counter() - marks[0]
        store_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        # floor 1: a plain sequential write of as many bytes to the same disk
        block = np.random.default_rng(0).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
        t0 = time.perf_counter()
        with open(SCRATCH / "floor.bin", "wb") as f:
            for _ in range(max(1, store_bytes // len(block))):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        t_disk = time.perf_counter() - t0
        (SCRATCH / "floor.bin").unlink()
        # floor 2: copying the raw samples back; floor 3: compressing them on every core
        t_d2h = report.n_samples * per_sample_out / d2h_bw
        t_compress = report.n_samples / stages["write_shard_compress_all_cores"] if codec != "jpeg" else \
            report.n_samples / stages["jpeg_encode_all_cores"]
        floor = max(t_disk, t_d2h, t_compress)
        end_to_end[codec] = {
            "samples": report.n_samples, "seconds": t_write, "images_per_s": report.n_samples / t_write,
            "store_bytes": store_bytes, "floor_seconds": floor, "vs_floor": t_write / floor,
            "floor_parts_seconds": {"sequential_disk_write": t_disk, "d2h_raw": t_d2h, "compress_or_encode": t_compress},
        }
        e = end_to_end[codec]
        print(f"generate --device cuda --image-codec {codec}: {e['samples']} samples in {t_write:.1f} s "
              f"({e['images_per_s']:.0f} images/s); floor {floor:.1f} s (disk {t_disk:.1f}, D2H {t_d2h:.1f}, "
              f"compress/encode {t_compress:.1f}) -> {e['vs_floor']:.2f}x the floor")
        shutil.rmtree(out, ignore_errors=True)
    results["end_to_end"] = end_to_end
    path = save("gpu-smoke" if args.smoke else "gpu", results, args.results_dir)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"saved {path}")


if __name__ == "__main__":
    sys.exit(main())
