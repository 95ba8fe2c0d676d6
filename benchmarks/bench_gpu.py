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
  back, JPEG-encoding it (Pillow on every core, and nvJPEG on the GPU through
  torchvision), compressing + writing it;
- nvCOMP's Zstandard on the GPU (when ``nvidia-nvcomp-cu13`` is importable):
  a shard's chunks compressed on the device as raw zstd frames, the rate, the
  ratio next to CPU zstd-3's, and whether the CPU decoder reads them back
  (which is what a zarr zstd codec would need) — measured only, not used;
- ``generate --device cuda`` end to end for each codec (``jpeg-nvjpeg``: JPEG
  encoded on the GPU), and its floor: the slowest of a plain sequential write
  of the store's bytes to the same disk, the device-to-host copy of what must
  cross, and the compression/encoding at its measured rate.

A stage that fails records its error in the JSON and the run goes on.

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

from common import RESULTS, codec_options, save, scratch

SCRATCH = scratch("gpu")  # emptied at the end


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


def nvcomp_zstd(d_arrays: list, chunk_samples: int, n: int, cuda) -> dict[str, object]:
    """nvCOMP Zstandard on one shard's device arrays, chunk by chunk (as the store chunks them).

    Returns rate (samples/s, compression only and with the compressed bytes'
    copy back), ratio, the CPU zstd-3 ratio of the same chunks, and whether
    numcodecs' Zstd decodes nvCOMP's frames to the original bytes.
    """
    try:
        from nvidia import nvcomp
    except ImportError:
        return {"skipped": "nvidia-nvcomp-cu13 is not installed (make gpu-wheels carries it)"}
    import numcodecs

    flat = [d.reshape(d.size) for d in d_arrays]
    batches, raw_bytes = [], 0
    for d in flat:
        step = d.nbytes // n * chunk_samples
        offsets = list(range(0, d.nbytes, step))
        batches.append((d, offsets, [min(step, d.nbytes - o) for o in offsets]))
        raw_bytes += d.nbytes
    codec = nvcomp.Codec(algorithm="Zstd", bitstream_kind=nvcomp.BitstreamKind.RAW,
                         uncomp_chunk_size=max(max(b[2]) for b in batches))
    wrapped = [nvcomp.as_arrays(d, offsets, sizes) for d, offsets, sizes in batches]

    def compress() -> list:
        out = [codec.encode(w) for w in wrapped]
        for o in out:
            _ = o.buffer_sizes  # reading the sizes waits for the compression
        return out

    t = seconds(compress, repeats=3)
    encoded = compress()
    t_back = seconds(lambda: [o.cpu() for o in compress()], repeats=3)
    packed = sum(sum(o.buffer_sizes) for o in encoded)
    zstd = numcodecs.Zstd(level=3)
    cpu_packed, decodes = 0, True
    for (d, offsets, sizes), o in zip(batches, encoded):
        host = d.copy_to_host().view(np.uint8)
        frames = o.cpu()
        for i, (start, size) in enumerate(zip(offsets, sizes)):
            original = host[start : start + size].tobytes()
            cpu_packed += len(zstd.encode(original))
            if i < 4:
                decodes &= bytes(numcodecs.Zstd().decode(np.asarray(frames[i]).tobytes())) == original
    return {"samples_per_s": n / t, "samples_per_s_with_copy_back": n / t_back, "GBps_in": raw_bytes / t / 1e9,
            "ratio": raw_bytes / packed, "cpu_zstd3_ratio": raw_bytes / cpu_packed,
            "cpu_zstd_decodes_nvcomp_frames": bool(decodes)}


def stage(results: dict, name: str, fn) -> object:
    """Run one benchmark stage; a failure is recorded (and printed), not fatal."""
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 - a benchmark records what broke and goes on
        value = {"error": f"{type(e).__name__}: {e}"}
    results[name] = value
    print(f"{name}: {value}")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=400_000, help="end-to-end samples (default: the full 400k)")
    ap.add_argument("--batch-sizes", default="256,1024,2048,4096")
    ap.add_argument("--codecs", default="zstd,jpeg,jpeg-nvjpeg", help="end-to-end codecs (jpeg-nvjpeg: JPEG on the GPU)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check the code paths (e.g. on the simulator)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()

    from engine.compose.compositor_cuda import CudaCompositor, cuda_status, device_name
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import bottleneck, generate, load_assets
    from engine.compose.plan import SamplePlan
    from engine.config import GenerateConfig, RunOptions
    from engine.store.jpeg import encode_jpeg_pillow, encode_jpeg_torchvision
    from engine.store.zarr_store import ZarrWriter
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
        t = seconds(lambda: list(pool.map(lambda ix: encode_jpeg_pillow(batch.images[ix], 95), parts)), repeats=3)
    stages["jpeg_encode_all_cores"] = n / t
    slot = comp.free.get()  # the kernel loop's only slot: its last (largest) batch is still on the device

    def nvjpeg_rate() -> float:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA GPU")
        images = torch.as_tensor(slot.d_images[:n], device="cuda")
        return n / seconds(lambda: encode_jpeg_torchvision(images, 95), repeats=3)

    nvjpeg = stage(results, "jpeg_encode_nvjpeg_images_per_s", nvjpeg_rate)
    if isinstance(nvjpeg, float):
        stages["jpeg_encode_nvjpeg"] = nvjpeg
    stage(results, "nvcomp_zstd", lambda: nvcomp_zstd([slot.d_images[:n], slot.d_masks[:n], slot.d_depth[:n]],
                                                       config.samples_per_chunk, n, cuda))
    comp.free.put(slot)
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
        options = codec_options(codec)
        on_gpu = options["jpeg_encoder"] == "nvjpeg"
        if on_gpu and "jpeg_encode_nvjpeg" not in stages:
            print(f"{codec}: skipped (the nvJPEG stage failed)")
            continue
        cfg = GenerateConfig(builtin_backgrounds=assets_n, builtin_foregrounds=assets_n, height=size, width=size,
                             limit=samples, **options)
        out = SCRATCH / f"e2e-{codec}.zarr"
        marks: list[float] = []
        run = RunOptions(overwrite=True, device="cuda", writer_threads=max(2, cores // 2))
        report = generate(cfg, out, run, progress=lambda *_: marks.append(time.perf_counter()))
        t_write = time.perf_counter() - marks[0]
        store_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        jpeg_bytes = sum(f.stat().st_size for f in (out / "images_jpeg").rglob("*") if f.is_file()) if on_gpu else 0
        # floor 1: a plain sequential write of as many bytes to the same disk
        block = np.random.default_rng(0).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
        t0 = time.perf_counter()
        with open(SCRATCH / "floor.bin", "wb") as f:
            f.writelines(block for _ in range(max(1, store_bytes // len(block))))
            f.flush()
            os.fsync(f.fileno())
        t_disk = time.perf_counter() - t0
        (SCRATCH / "floor.bin").unlink()
        # floor 2: copying back what must cross (raw samples; with nvJPEG, JPEG bytes
        # instead of raw images); floor 3: compressing/encoding at the measured rate
        if on_gpu:
            t_d2h = (report.n_samples * size * size * 3 + jpeg_bytes) / d2h_bw
            t_compress = report.n_samples / stages["jpeg_encode_nvjpeg"]
        else:
            t_d2h = report.n_samples * per_sample_out / d2h_bw
            t_compress = report.n_samples / stages[
                "jpeg_encode_all_cores" if options["image_codec"] == "jpeg" else "write_shard_compress_all_cores"]
        floor = max(t_disk, t_d2h, t_compress)
        end_to_end[codec] = {
            "samples": report.n_samples, "seconds": t_write, "images_per_s": report.n_samples / t_write,
            "store_bytes": store_bytes, "floor_seconds": floor, "vs_floor": t_write / floor,
            "floor_parts_seconds": {"sequential_disk_write": t_disk, "d2h_raw": t_d2h, "compress_or_encode": t_compress},
            "stage_seconds": report.stage_seconds, "bottleneck": bottleneck(report, run.writer_threads),
        }
        e = end_to_end[codec]
        flags = f"--image-codec {cfg.image_codec}" + (" --jpeg-encoder nvjpeg" if on_gpu else "")
        print(f"generate --device cuda {flags}: {e['samples']} samples in {t_write:.1f} s "
              f"({e['images_per_s']:.0f} images/s); floor {floor:.1f} s (disk {t_disk:.1f}, D2H {t_d2h:.1f}, "
              f"compress/encode {t_compress:.1f}) -> {e['vs_floor']:.2f}x the floor")
        print(f"    {e['bottleneck']}")
        shutil.rmtree(out, ignore_errors=True)
    results["end_to_end"] = end_to_end
    path = save("gpu-smoke" if args.smoke else "gpu", results, args.results_dir)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"saved {path}")


if __name__ == "__main__":
    sys.exit(main())
