"""The GPU engine against its physical floor: every figure of the GPU-native issue, one run.

    python benchmarks/bench_gpu.py                                  # on a machine with a CUDA GPU
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_gpu.py --smoke   # code-path check, tiny sizes

Measured, all in one run on one machine (``bash benchmarks/gpu_check.sh``
runs it in two parts, ``--part headline`` and ``--part sweeps``):

- the ceilings: device-to-device copy bandwidth (read + write bytes / s),
  pinned device-to-host bandwidth, and a plain sequential write (fsync'd) to
  the disk the stores go to;
- the built-in assets drawn into an empty cache folder and read back from it
  (:mod:`engine.assets.cache`; the rest of the run reads that warm cache);
- the composite kernel alone per ``--batch-sizes`` (warm atlas), as a
  fraction of the copy bandwidth;
- one shard's stages, each as a fraction of its ceiling where it has one: host
  tables (cold atlas), the raw copy back, JPEG (Pillow and fgbg's CPU twin
  on every core, and every GPU variant: fgbg's kernels (``--jpeg-encoder
  fgbg``), torchvision's nvJPEG, one nvImageCodec encoder, and
  nvImageCodec on 2/4/8 encoders and CUDA streams per writer, each as one
  call on the shard and as ``generate``'s writer threads at once, with
  whether ``--jpeg-encoder auto`` picks the fastest), nvCOMP Zstandard (rate,
  ratio next to CPU zstd-3, frames read by the CPU's zstd, content size in
  the frame header), CPU compression + write;
- issue 24's sweep, first among the shard's stages (a run cut short keeps
  it): nvCOMP alone on the shard in pieces of 64 KiB, 256 KiB, one sample's
  image (``H*W*3``, ``--chunk-size 1``'s image chunk) and the store's default
  image chunk (about 1.2 MB): one call per array vs one per shard, GB/s and
  ratio next to CPU zstd-3 on the same pieces, and ``projected_400k_s``: 400k
  samples' raw bytes at the per-shard-call rate vs their compressed bytes at
  the measured disk rate, the larger (projected from the compressor alone,
  not a ``generate`` run); then ``generate`` end to end on the GPU per
  ``--chunk-settings`` (``generate_sweep_*``; default ``--compressor nvcomp``
  with the default chunks, ``--chunk-size 1`` and ``2``, ``hybrid`` at
  ``--compression-level 3`` and ``2``, ``cpu``), each on
  ``--compared-samples`` with its writing phase projected to ``--samples``,
  its store bytes and ratio, × floor, the GPU's share of the shards and the
  writers' CPU cost per step (``writer_cost``: compression's share of it);
  ``chunk_verdict`` (benchmarks/chunk_sweep.py): the fastest setting end to
  end, whether it is today's default, and if not what to change (the chunk
  rule is one for every device: stores resume across devices);
- the naive per-image loop, alone and on a pool of every core;
- ``generate`` with its defaults (what ``cli.py generate`` does) end to end,
  lossless and JPEG, on the GPU (``--samples``, default the full 400k;
  lossless compression ``auto``, which is ``hybrid`` where nvCOMP runs, with
  the share of shards each compressor took), lossless with the other
  ``--compressors`` side by side (``--compared-samples``, the full run
  projected), and on the CPU (``--cpu-samples``): the writing phase, the whole call (imports
  and start-up included; start-up, the difference, also split into imports
  and set-up), the store's bytes, and the floor: the slowest of
  writing those bytes at the measured disk rate, copying what must cross
  PCIe at the measured D2H rate, and the kernel at its measured rate —
  never the program's own compressor.

The last lines are a table of the issue's targets, each met or not, then the
sweep and its chunk verdict (when the sweep ran). A stage
that fails records its error and the run goes on; a stage that would start
after ``--budget-s`` seconds is skipped (and says so), so the run ends in time.
Results: stdout and ``<results-dir>/gpu.json``; with ``--jsonl FILE`` also one
JSON line per stage as it ends (a run cut short keeps what it measured).
``--part headline`` (the ceilings, the naive loop, ``generate`` 400k lossless
and JPEG) and ``--part sweeps`` (the rest, issue 24's sweep first) split the
run in two for ``bash benchmarks/gpu_check.sh``. With ``--smoke`` and no
nvCOMP, the sweep's nvCOMP and hybrid runs use the host stand-in (CPU zstd
through the device path): a code-path check, no nvCOMP figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from chunk_sweep import (DEFAULT_SETTINGS, FULL_SAMPLES, chunk_verdict, parse_settings, project_400k, samples_full,
                         seconds_full, setting_key, setting_label, sweep_runs)
from common import RESULTS, ROOT, save, scratch
from engine.store.jpeg import JPEG_STREAMS

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


class Run:
    """Records each stage's result (or its error), and skips stages past the time budget."""

    def __init__(self, budget_s: float, jsonl: Path | None = None) -> None:
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.jsonl = jsonl
        self.results: dict[str, Any] = {}

    def stage(self, name: str, fn) -> Any:
        if time.perf_counter() - self.t0 > self.budget_s:
            value: Any = {"skipped": f"time budget of {self.budget_s:.0f} s spent"}
        else:
            try:
                value = fn()
            except Exception as e:  # noqa: BLE001 - a benchmark records what broke and goes on
                value = {"error": f"{type(e).__name__}: {e}"}
        self.results[name] = value
        print(f"{name}: {value}", flush=True)
        self.record(name, value)
        return value

    def record(self, name: str, value: Any) -> None:
        """Append ``name``'s result to ``--jsonl`` (one line, written at once)."""
        if self.jsonl is not None:
            line = json.dumps({"bench": "bench_gpu", "stage": name, "value": value}, default=str)
            with open(self.jsonl, "a") as f:
                f.write(line + "\n")


def device_bandwidth(cuda, size: int) -> dict[str, float]:
    """Device-to-device copy (read + write bytes/s) and pinned device-to-host bytes/s, random data."""
    host = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    src = cuda.to_device(host)
    dst = cuda.device_array(size, np.uint8)
    pinned = cuda.pinned_array(size, np.uint8)
    t_copy = seconds(lambda: dst.copy_to_device(src), sync=cuda.synchronize)
    t_d2h = seconds(lambda: src.copy_to_host(pinned), sync=cuda.synchronize)
    return {"device_copy_GBps": 2 * size / t_copy / 1e9, "d2h_pinned_GBps": size / t_d2h / 1e9}


def disk_write(folder: Path, size: int) -> dict[str, float]:
    """A plain sequential write of ``size`` random bytes, fsync'd: the disk's ceiling."""
    block = np.random.default_rng(1).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    path = folder / "disk.bin"
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(max(1, size // len(block))):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    t = time.perf_counter() - t0
    written = path.stat().st_size
    path.unlink()
    return {"disk_write_GBps": written / t / 1e9, "bytes": written}


def nvcomp_stage(d_arrays: dict[str, Any], chunk_samples: int, n: int, copy_bw: float) -> dict[str, Any]:
    """nvCOMP Zstandard through the engine's own :class:`NvcompZstd` on one shard's device arrays."""
    import numcodecs

    from engine.store.device_codec import NvcompZstd, nvcomp_problem

    problem = nvcomp_problem()
    if problem:
        return {"skipped": problem}
    compressor = NvcompZstd()
    n_chunks = n // chunk_samples
    flat = {name: d[: n_chunks * chunk_samples].reshape(-1).view(np.uint8) for name, d in d_arrays.items()}
    raw = sum(f.size for f in flat.values())

    def compress_all() -> dict[str, list[bytes]]:
        return {name: compressor.compress(f, f.size // n_chunks, n_chunks) for name, f in flat.items()}

    t = seconds(compress_all, repeats=3)
    frames = compress_all()
    packed = sum(len(b) for fs in frames.values() for b in fs)
    zstd, cpu_packed, decodes, sized = numcodecs.Zstd(level=3), 0, True, True
    for name, f in flat.items():
        host = f.copy_to_host()
        step = f.size // n_chunks
        for i, frame in enumerate(frames[name]):
            chunk = host[i * step : (i + 1) * step].tobytes()
            cpu_packed += len(zstd.encode(chunk))
            if i < 4:
                decodes &= bytes(numcodecs.Zstd().decode(frame)) == chunk
                sized &= frame_content_size(frame) == len(chunk)
    return {"samples_per_s": n / t, "GBps_in": raw / t / 1e9, "fraction_of_copy_bw": raw / t / copy_bw,
            "ratio": raw / packed, "cpu_zstd3_ratio": raw / cpu_packed,
            "cpu_zstd_decodes_nvcomp_frames": bool(decodes), "frames_carry_content_size": bool(sized)}


def compression_sweep(flat: dict[str, Any], piece_sizes: list[int], compressor: Any, cores: int,
                      repeats: int = 3) -> dict[str, Any]:
    """The same shard compressed in pieces of each of ``piece_sizes`` bytes:
    one ``compressor`` call per array vs one per shard (every array's pieces in
    one batch), GB/s of raw input and ratio, next to CPU zstd-3 on the same
    pieces (ratio, and GB/s on ``cores`` threads). Tells whether nvCOMP wins
    with more, smaller frames per call (the store format is not changed here).

    Args:
        flat: per array, a 1-D ``uint8`` device array (a shard's samples).
        piece_sizes: bytes per piece (multiples of 4, nvCOMP's alignment).
        compressor: with ``compress`` and ``compress_parts`` (engine.store.device_codec).
    """
    import numcodecs

    zstd = numcodecs.Zstd(level=3)
    rows: dict[str, Any] = {"compressor": compressor.name}
    for size in piece_sizes:
        parts = [(f, size, f.size // size) for f in flat.values() if f.size >= size]
        raw = sum(size * k for _, _, k in parts)
        t_array = seconds(lambda parts=parts: [compressor.compress(*p) for p in parts], repeats=repeats)
        t_shard = seconds(lambda parts=parts: compressor.compress_parts(parts), repeats=repeats)
        packed = sum(len(b) for frames in compressor.compress_parts(parts) for b in frames)
        pieces = [h[i * size : (i + 1) * size] for h, (_, _, k) in
                  ((f[: size * k].copy_to_host(), (f, size, k)) for f, size, k in parts) for i in range(k)]
        with ThreadPoolExecutor(cores) as pool:
            t0 = time.perf_counter()
            cpu_packed = sum(len(e) for e in pool.map(zstd.encode, pieces))
            t_cpu = time.perf_counter() - t0
        rows[str(size)] = {
            "pieces": len(pieces), "per_array_call_GBps": raw / t_array / 1e9, "per_shard_call_GBps": raw / t_shard / 1e9,
            "ratio": raw / packed, "cpu_zstd3_ratio": raw / cpu_packed, f"cpu_zstd3_{cores}_threads_GBps": raw / t_cpu / 1e9,
        }
        print(f"  {compressor.name} pieces of {size} B: {rows[str(size)]}", flush=True)
    return rows


def frame_content_size(frame: bytes) -> int | None:
    """Frame_Content_Size from a zstd frame header (RFC 8878 §3.1.1.1), or ``None`` when absent."""
    descriptor = frame[4]
    fcs_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    if fcs_flag == 0 and not single_segment:
        return None
    pos = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1, 2, 4, 8)[fcs_flag]
    value = int.from_bytes(frame[pos : pos + width], "little")
    return value + 256 if width == 2 else value


def writer_rate(make_encoder: Callable[[], Callable[[Any, int], Any]], images: Any, writers: int,
                repeats: int = 2) -> float:
    """Images/s of ``writers`` threads each encoding ``images`` at once, each
    with its own encoder from ``make_encoder()`` built in its thread (as
    ``generate``'s writer threads do)."""
    local = threading.local()

    def one(_: int) -> int:
        if getattr(local, "encode", None) is None:
            local.encode = make_encoder()
        return len(local.encode(images, 95))

    with ThreadPoolExecutor(writers) as pool:
        t = seconds(lambda: list(pool.map(one, range(writers))), repeats=repeats)
    return writers * len(images) / t


#: bench_gpu's JPEG variant names → the --jpeg-encoder they are (None: not an option)
JPEG_VARIANT_ENCODER = {"fgbg_kernels": "fgbg", "torchvision_nvjpeg": "nvjpeg", "nvimgcodec": "nvimgcodec",
                        f"nvimgcodec_streams_{JPEG_STREAMS}": "nvimgcodec-streams"}


def jpeg_variants(streams: tuple[int, ...] = (2, JPEG_STREAMS, 8), nvimgcodec_runs: bool = True,
                  fgbg_runs: bool = True) -> dict[str, Callable[[], Callable[[Any, int], Any]]]:
    """Each GPU JPEG encoder variant that runs here: a factory of one writer's ``encode(images, quality)``."""
    from engine.store.jpeg import NvimgcodecStreams, encode_jpeg_nvimgcodec, encode_jpeg_torchvision

    variants: dict[str, Callable[[], Callable[[Any, int], Any]]] = {}
    if fgbg_runs:
        def fgbg_encoder() -> Callable[[Any, int], Any]:
            from numba import cuda

            from kernels.jpeg_cuda import CudaJpegEncoder

            return CudaJpegEncoder(cuda.stream()).encode  # its buffers and stream per writer, as in generate

        variants["fgbg_kernels"] = fgbg_encoder
    variants["torchvision_nvjpeg"] = lambda: encode_jpeg_torchvision
    if not nvimgcodec_runs:
        return variants
    from nvidia import nvimgcodec

    def one_encoder() -> Callable[[Any, int], Any]:
        encoder = nvimgcodec.Encoder()
        return lambda images, q: encode_jpeg_nvimgcodec(images, q, encoder)

    variants["nvimgcodec"] = one_encoder
    for k in streams:
        shared = NvimgcodecStreams(streams=k)  # its encoders are per calling thread
        variants[f"nvimgcodec_streams_{k}"] = lambda shared=shared: shared.encode
    return variants


def jpeg_verdict(at_writers: dict[str, Any], preference: tuple[str, ...]) -> dict[str, Any]:
    """Does ``--jpeg-encoder auto`` (the first of ``preference`` that ran) pick the
    fastest variant measured at ``generate``'s writer count?"""
    ran = {JPEG_VARIANT_ENCODER[k]: v for k, v in at_writers.items()
           if isinstance(v, float) and k in JPEG_VARIANT_ENCODER}
    if not ran:
        return {"confirmed": None, "why": "no GPU encoder ran"}
    picks = next((e for e in preference if e in ran), None)
    fastest = max(ran, key=ran.__getitem__)
    return {"auto_picks": picks, "fastest": fastest, "confirmed": picks == fastest,
            "measured_order": sorted(ran, key=ran.__getitem__, reverse=True)}


def jpeg_rates(images_device: Any, images_host: np.ndarray, cores: int, writers: int) -> dict[str, Any]:
    """Images/s of each JPEG encoder (quality 95, 4:4:4): one call on the whole
    shard, and ``writers`` writer threads at once (1,024 images each, as many as
    ``generate`` runs), and whether ``auto`` picks the fastest."""
    from engine.compose.hardware import JPEG_PREFERENCE
    from engine.store.jpeg import encode_jpeg_fgbg, encode_jpeg_pillow, fgbg_jpeg_problem, nvimgcodec_problem

    n = len(images_host)
    out: dict[str, Any] = {"single_call": {}, f"{writers}_writers": {}, "writers": writers}
    with ThreadPoolExecutor(cores) as pool:
        parts = np.array_split(np.arange(n), cores)
        out["pillow_all_cores"] = n / seconds(lambda: list(pool.map(lambda ix: encode_jpeg_pillow(images_host[ix], 95), parts)), repeats=1)
    import torch

    images = torch.as_tensor(images_device, device="cuda")
    with ThreadPoolExecutor(cores) as pool:  # fgbg's CPU twin on every core (the writer pool's way)
        out["fgbg_cpu_all_cores"] = n / seconds(lambda: encode_jpeg_fgbg(images_host, 95, pool), repeats=1)
    problem, fgbg_problem = nvimgcodec_problem(), fgbg_jpeg_problem()
    variants = jpeg_variants(nvimgcodec_runs=problem is None, fgbg_runs=fgbg_problem is None)
    if problem:
        out["nvimgcodec"] = {"skipped": problem}
    if fgbg_problem:
        out["fgbg_kernels"] = {"skipped": fgbg_problem}
    def single_call(make: Callable[[], Callable[[Any, int], Any]]) -> float:
        encode = make()  # built once, outside the timing (as a writer keeps its encoder)
        return n / seconds(lambda: encode(images, 95), repeats=2)

    for name, make in variants.items():
        for key, fn in (("single_call", lambda make=make: single_call(make)),
                        (f"{writers}_writers", lambda make=make: writer_rate(make, images[:1024], writers))):
            try:
                out[key][name] = fn()
            except Exception as e:  # noqa: BLE001 - one variant failing leaves the others measured
                out[key][name] = {"error": f"{type(e).__name__}: {e}"}
        print(f"  jpeg {name}: {out['single_call'][name]} one call, {out[f'{writers}_writers'][name]} "
              f"with {writers} writers", flush=True)
    out["auto"] = jpeg_verdict(out[f"{writers}_writers"], JPEG_PREFERENCE)
    return out


def import_seconds() -> float:
    """Start-up of a fresh ``generate`` process: interpreter and imports (median of 2)."""
    code = "import cli, numba.cuda, torch, engine.compose.generate, engine.compose.compositor_cuda"
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def end_to_end(config, device: str, floors: dict[str, float], startup_s: float, compressor: str = "auto") -> dict[str, Any]:
    """``generate`` with its default run options (but ``compressor``); the writing phase, the whole call, the floor."""
    from engine.compose.generate import bottleneck, generate
    from engine.config import RunOptions

    out = SCRATCH / (f"e2e-{device}-{config.image_codec}-{compressor}-chunk{config.samples_per_chunk}"
                     f"-level{config.compression_level}.zarr")
    marks: list[float] = []
    t0 = time.perf_counter()
    report = generate(config, out, RunOptions(overwrite=True, device=device, compressor=compressor),
                      progress=lambda *_: marks.append(time.perf_counter()))
    end = time.perf_counter()
    write_s = end - marks[0]
    store_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shutil.rmtree(out, ignore_errors=True)
    n = report.n_samples
    per_sample_raw = config.height * config.width * (3 + 1 + 2)
    shards = report.compressed_shards
    # shards compressed on the device (nvCOMP, or the host stand-in on the simulator)
    gpu_shards = sum(k for name, k in shards.items() if not name.startswith(("cpu-", "none")))
    gpu_share = gpu_shards / max(sum(shards.values()), 1) if device == "cuda" else 0.0
    # what crosses PCIe: compressed bytes of the device-compressed share (its store bytes, roughly:
    # hybrid's store mixes both), raw bytes of the rest
    crossing = gpu_share * store_bytes + (1 - gpu_share) * n * per_sample_raw
    parts = {"disk_write": store_bytes / (floors["disk_write_GBps"] * 1e9)}
    if device == "cuda":
        parts["d2h"] = crossing / (floors["d2h_pinned_GBps"] * 1e9)
        parts["kernel"] = n / floors["kernel_images_per_s"]
    floor = max(parts.values())
    whole_s = startup_s + (end - t0)
    raw = n * per_sample_raw
    return {
        "samples": n, "seconds_writing": write_s, "seconds_whole_call": whole_s,
        # start-up = whole call - writing: the imports (a fresh process) + generate's set-up before
        # its first shard (assets from the warm cache, depth source, store) + closing the store
        "seconds_startup": whole_s - write_s, "seconds_imports": startup_s, "seconds_setup": marks[0] - t0,
        "images_per_s_writing": n / write_s, "store_bytes": store_bytes, "floor_seconds": floor,
        "floor_parts_seconds": parts, "vs_floor": write_s / floor, "compressor": report.compressor,
        "jpeg_encoder": report.jpeg_encoder, "writer_threads": report.writer_threads,
        "compressed_shards": shards, "gpu_compressed_share": gpu_share,
        "stage_seconds": report.stage_seconds, "bottleneck": bottleneck(report),
        # the inner chunking and CPU level it ran with; raw bytes in per second of writing, raw / store bytes
        "chunk_samples": config.samples_per_chunk, "compression_level": config.compression_level,
        "raw_GBps_writing": raw / write_s / 1e9, "store_ratio": raw / store_bytes if store_bytes else None,
        # the writers' CPU time per sample by step, and how near they run to their compression ceiling
        "writer_cost": None if report.writer_cost is None else report.writer_cost.to_dict(),
    }


def jpeg_sample_count(rates: Any, samples: int, shard: int, seconds_allowed: float = 60.0) -> int:
    """Samples for the JPEG end-to-end run: all of them when the encoder ``auto``
    takes (else the fastest) would write them in ``seconds_allowed``, else what it writes in
    that time (whole shards, at least 10), so the run fits its time; the full
    run's time is then projected (and labelled so)."""
    rates = rates or {}
    flat = {**rates, **rates.get(f"{rates.get('writers')}_writers", {})} if isinstance(rates.get("writers"), int) else rates
    best = max((v for v in flat.values() if isinstance(v, float)), default=0.0)
    picks = (rates.get("auto") or {}).get("auto_picks") if isinstance(rates.get("auto"), dict) else None
    picked = [v for k, v in flat.items() if picks and JPEG_VARIANT_ENCODER.get(k) == picks and isinstance(v, float)]
    best = picked[0] if picked else best  # the run uses auto's pick, not necessarily the fastest
    if best <= 0 or best * seconds_allowed >= samples:
        return samples
    return min(samples, max(10 * shard, int(best * seconds_allowed) // shard * shard))


def naive_rates(config, samples: int, cores: int) -> dict[str, float]:
    """The naive per-image loop (benchmarks/naive.py), alone and on a pool of every core."""
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for
    from naive import naive_generate, naive_generate_pool

    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    p = plan.placements(0, min(samples, plan.n_samples))
    t0 = time.perf_counter()
    naive_generate(assets.bg_images, assets.fg_images, p, SCRATCH / "naive.zip")
    single = len(p) / (time.perf_counter() - t0)
    p_pool = plan.placements(0, min(samples * cores, plan.n_samples))
    t0 = time.perf_counter()
    naive_generate_pool(assets.bg_images, assets.fg_images, p_pool, SCRATCH, cores)
    pool = len(p_pool) / (time.perf_counter() - t0)
    return {"single": single, "pool": pool, "processes": cores}


def nvcomp_sweep(shard: dict[str, Any], config: Any, cores: int, smoke: bool,
                 disk_GBps: float | None) -> dict[str, Any]:
    """:func:`compression_sweep` of one shard with nvCOMP (with ``--smoke`` and
    no nvCOMP: the host stand-in, to check the code path) at 64 KiB, 256 KiB,
    one sample's image (``H*W*3``: ``--chunk-size 1``'s image chunk, 150,528 B
    at 224) and the store's default image chunk (about 1.2 MB); each size with
    its ``setting`` and ``projected_400k_s`` (:func:`chunk_sweep.project_400k`
    at the one-call-per-shard rate and the measured ``disk_GBps``)."""
    from engine.store.device_codec import HostZstdStandIn, NvcompZstd, nvcomp_problem

    problem = nvcomp_problem()
    if problem and not smoke:
        return {"skipped": problem}
    compressor = HostZstdStandIn(level=3) if problem else NvcompZstd()
    flat = {name: d.reshape(-1).view(np.uint8) for name, d in shard.items()}
    per_image = config.height * config.width * 3
    image_chunk = config.samples_per_chunk * per_image
    # --smoke's shard is smaller than one default chunk: that size has no piece there
    sizes = sorted({64 << 10, 256 << 10, per_image, image_chunk} if not smoke else {256, per_image, 1024})
    labels = {per_image: "--chunk-size 1 (one sample's image)",
              image_chunk: f"default chunks ({config.samples_per_chunk} samples' images)"}
    rows = compression_sweep(flat, sizes, compressor, cores)
    per_sample = config.height * config.width * (3 + 1 + 2)
    for size in sizes:
        row = rows[str(size)]
        # chunks run along samples: a piece size no --chunk-size gives is the compressor's figure only
        row["setting"] = labels.get(size, "pieces only (no --chunk-size gives it)")
        row["projected_400k_s"] = project_400k(row["per_shard_call_GBps"], row["ratio"], disk_GBps, per_sample)
    rows["disk_write_GBps"] = disk_GBps
    return rows


@contextmanager
def nvcomp_stand_in(active: bool) -> Iterator[None]:
    """With ``active`` (``--smoke`` where nvCOMP is absent): ``generate``'s nvCOMP
    and hybrid paths run with the host stand-in (CPU zstd through the device
    path, as the tests do), so the simulator checks the sweep's code path; the
    figures are then no nvCOMP figures (its runs say ``host-zstd-stand-in``)."""
    if not active:
        yield
        return
    import engine.compose.generate as gen
    from engine.store.device_codec import HostZstdStandIn

    detect, make = gen.detect_hardware, gen.make_device_compressor
    gen.detect_hardware = lambda device: dataclasses.replace(detect(device), nvcomp=None)
    gen.make_device_compressor = lambda: HostZstdStandIn(level=3)
    try:
        yield
    finally:
        gen.detect_hardware, gen.make_device_compressor = detect, make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=400_000, help="GPU end-to-end samples (default: the full 400k)")
    ap.add_argument("--cpu-samples", type=int, default=50_000, help="CPU end-to-end samples")
    ap.add_argument("--naive-samples", type=int, default=2000, help="naive loop samples (x cores for the pool)")
    ap.add_argument("--batch-sizes", default="256,1024,2048,4096")
    ap.add_argument("--budget-s", type=float, default=330.0, help="start no stage after this many seconds")
    ap.add_argument("--e2e-only", action="store_true",
                    help="only the ceilings and generate end to end (a second, shorter run)")
    ap.add_argument("--compressors", default="auto,cpu",
                    help="GPU lossless end-to-end compressors, comma-separated (auto,cpu,nvcomp,hybrid): the first "
                         "runs --samples (the targets), the others --compared-samples")
    ap.add_argument("--compared-samples", type=int, default=100_000,
                    help="samples of the other --compressors' runs and of the --chunk-settings runs (the full run "
                         "projected)")
    ap.add_argument("--chunk-settings", default=DEFAULT_SETTINGS,
                    help="generate runs on the GPU comparing inner chunks and the CPU level, compressor:chunk:level "
                         "each ('default': the chunk rule of engine/config.py), most important first; '' for none")
    ap.add_argument("--jpeg-samples", type=int, default=None,
                    help="JPEG end-to-end samples (default: what the fastest encoder writes in 45 s; the full run "
                         "projected when fewer than --samples)")
    ap.add_argument("--part", choices=["all", "headline", "sweeps"], default="all",
                    help="headline: ceilings, naive loop, generate lossless (first --compressors) and JPEG; "
                         "sweeps: the rest")
    ap.add_argument("--jsonl", type=Path, default=None, help="also append one JSON line per stage to this file")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check the code paths (e.g. on the simulator)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()
    headline, sweeps = args.part == "headline", args.part == "sweeps"

    from engine.compose.compositor_cuda import CudaCompositor, cuda_status, device_name
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.hardware import Hardware, choose_writer_threads
    from engine.compose.plan import plan_for
    from engine.config import GenerateConfig, RunOptions
    from engine.store.device_codec import nvcomp_problem
    from engine.store.zarr_store import ZarrWriter
    from kernels.composite_cuda import composite_batch_cuda

    available, simulated = cuda_status()
    if not available or (simulated and not args.smoke):
        print("no CUDA GPU here: GPU figures not measured (see benchmarks/RESULTS.md)")
        return
    from numba import cuda

    if args.smoke:
        size, assets_n, sizes, big = 16, 3, [4, 8], 1 << 16
        # the compared runs shorter than the rest: the chunk sweep makes six of them on the simulator
        args.samples, args.cpu_samples, args.naive_samples, args.compared_samples = 48, 48, 8, 16
    else:
        size, assets_n, sizes, big = 224, 100, [int(b) for b in args.batch_sizes.split(",")], 1 << 30
    cores = os.cpu_count() or 1
    # the writer threads `generate` runs on this machine with JPEG (CPU-compressed labels)
    gpu_writers = choose_writer_threads(RunOptions(), "cuda", "cpu", Hardware(cores=cores))
    SCRATCH.mkdir(parents=True, exist_ok=True)
    run = Run(args.budget_s, args.jsonl)
    r = run.results
    r.update({"device": device_name(), "simulated": simulated, "image_size": size, "cores": cores})
    print(f"device: {r['device']}, {cores} CPU cores", flush=True)

    # -- ceilings -----------------------------------------------------------------
    floors: dict[str, float] = {}
    floors.update(run.stage("device_bandwidth", lambda: device_bandwidth(cuda, big)))
    floors.update(run.stage("disk", lambda: disk_write(SCRATCH, 4 * big)))

    # -- the kernel alone, per batch size ---------------------------------------------
    config = GenerateConfig(builtin_backgrounds=assets_n, builtin_foregrounds=assets_n, height=size, width=size,
                            shard_size=max(sizes))
    # The built-in assets into an empty cache folder (cold: drawn and written), then read back (warm);
    # every later load_assets and generate of this run, the end-to-end ones included, reads that warm cache.
    os.environ["FGBG_CACHE_DIR"] = str(SCRATCH / "asset-cache")
    shutil.rmtree(SCRATCH / "asset-cache", ignore_errors=True)
    t0 = time.perf_counter()
    assets = load_assets(config)
    t1 = time.perf_counter()
    assets = load_assets(config)
    r["builtin_assets_seconds"] = {"cold": t1 - t0, "warm": time.perf_counter() - t1}
    print(f"built-in assets: {t1 - t0:.2f} s drawn (cold cache), {r['builtin_assets_seconds']['warm']:.2f} s "
          "from the cache (warm)", flush=True)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    comp = CudaCompositor(assets, depth, config, capacity=max(sizes), slots=1)
    per_sample_out = size * size * (3 + 1 + 2)
    slot = comp.free.get()

    def kernel_rates() -> dict[str, Any]:
        rates = {}
        for b in sizes:
            prepared = comp.prepare(plan.placements(0, b))
            slot.d_table[:b].copy_to_device(prepared.table)
            outs = [slot.device[k][:b] for k in ("images", "masks", "depth")]

            def launch() -> None:
                composite_batch_cuda(comp.d_bg, comp.d_bg_depth, prepared.atlas, slot.d_table[:b], comp.threshold,
                                     *outs, None, stream=0, host_table=prepared.table)

            t = seconds(launch, sync=cuda.synchronize)
            rates[str(b)] = {"images_per_s": b / t,
                             "fraction_of_copy_bw": b * per_sample_out / t / (floors["device_copy_GBps"] * 1e9)}
        return rates

    kernel = run.stage("kernel", kernel_rates) if not (args.e2e_only or headline) else {"skipped": "--e2e-only"}
    rates = [v["images_per_s"] for v in kernel.values() if isinstance(v, dict) and "images_per_s" in v]
    floors["kernel_images_per_s"] = max(rates) if rates else 1.3e6  # 1.33M/s measured on an H200

    # -- one shard's stages (the kernel loop's last batch is still in the slot) -----------
    n = max(sizes)
    shard = {k: slot.device[k][:n] for k in ("images", "masks", "depth")}
    h_images = shard["images"].copy_to_host()

    def host_tables() -> dict[str, float]:
        fresh = CudaCompositor(assets, depth, config, capacity=n, slots=1)
        t0 = time.perf_counter()
        fresh.prepare(plan.placements(0, n))
        return {"cold_atlas_images_per_s": n / (time.perf_counter() - t0)}

    def d2h_raw() -> dict[str, float]:
        pinned = {k: cuda.pinned_array(d.shape, d.dtype) for k, d in shard.items()}
        t = seconds(lambda: [d.copy_to_host(pinned[k]) for k, d in shard.items()], sync=cuda.synchronize)
        return {"images_per_s": n / t, "fraction_of_d2h": n * per_sample_out / t / (floors["d2h_pinned_GBps"] * 1e9)}

    def channel_stats() -> dict[str, float]:
        """The store's statistics of one shard: counted on the GPU (what generate does
        now), by the Numba kernel on every core, and by the old per-channel bincount."""
        from concurrent.futures import ThreadPoolExecutor

        from kernels.histogram import channel_histogram
        from kernels.histogram_cuda import channel_histogram_cuda

        d_counts = cuda.device_array((3, 256), np.int64)
        t_gpu = seconds(lambda: channel_histogram_cuda(shard["images"], d_counts), sync=cuda.synchronize)
        parts = np.array_split(h_images, cores)
        with ThreadPoolExecutor(cores) as pool:
            t_host = seconds(lambda: list(pool.map(channel_histogram, parts)), repeats=3)
        flat = h_images.reshape(-1, 3)
        t_numpy = seconds(lambda: [np.bincount(flat[:, c], minlength=256) for c in range(3)], repeats=1)
        return {"gpu_images_per_s": n / t_gpu, "gpu_fraction_of_copy": h_images.nbytes / t_gpu
                / (floors["device_copy_GBps"] * 1e9 / 2),
                "host_kernel_all_cores_images_per_s": n / t_host, "numpy_bincount_images_per_s": n / t_numpy}

    def cpu_compress_write() -> dict[str, float]:
        batch = comp.composite(plan.placements(0, n))
        batch.ready()
        with ZarrWriter.create(SCRATCH / "stage.zarr", config, plan, assets, depth.background_depth(),
                               depth.describe(), overwrite=True) as writer:
            t = seconds(lambda: writer.write_shard(0, batch), repeats=3)
        batch.release()
        return {"images_per_s": n / t}

    base = {"builtin_backgrounds": assets_n, "builtin_foregrounds": assets_n, "height": size, "width": size}

    def e2e_stage(name: str, cfg: Any, device: str, compressor: str, startup_s: float | None) -> dict[str, Any]:
        """``end_to_end`` and what follows from it (vs the naive loop, the full run projected, a sweep
        run's setting), all in the stage's value, so ``--jsonl`` records it too. ``startup_s``:
        ``None`` when not measured yet (no whole-call projection then)."""
        e = end_to_end(cfg, device, floors, startup_s or 0.0, compressor)
        naive = r.get("naive")
        if isinstance(naive, dict) and "single" in naive:
            e["vs_naive_single"] = e["images_per_s_writing"] / naive["single"]
            e["vs_naive_pool"] = e["images_per_s_writing"] / naive["pool"]
        if device == "cuda" and e["samples"] < args.samples:  # a shortened run: the full one projected
            e["projected_seconds_writing_full"] = e["seconds_writing"] * args.samples / e["samples"]
            e["projected_to_samples"] = args.samples
            if startup_s is not None:
                e["projected_seconds_whole_call_full"] = (startup_s + (e["seconds_whole_call"] - startup_s)
                                                          * args.samples / e["samples"])
        if name.startswith("sweep_"):  # what the chunk verdict compares (chunk_sweep.chunk_verdict)
            e["setting"] = {"compressor": compressor, "chunk_size": cfg.chunk_size,
                            "compression_level": cfg.compression_level,
                            "label": setting_label(compressor, cfg.chunk_size, cfg.compression_level),
                            # generate's defaults: auto (hybrid where nvCOMP runs), the chunk rule, the level
                            "is_default": compressor in ("auto", "hybrid") and cfg.chunk_size is None
                            and cfg.compression_level == default_level}
        return e

    def run_e2e(entries: dict[str, tuple[Any, str, str]], startup_s: float | None) -> None:
        for name, (cfg, device, compressor) in entries.items():
            first = r.get("generate_cuda_zstd")
            if name == "cuda_zstd_cpu" and isinstance(first, dict) and str(first.get("compressor")).startswith("cpu-"):
                r[f"generate_{name}"] = {"skipped": "auto chose the CPU: generate_cuda_zstd is this run"}
                continue
            # --smoke without nvCOMP: the sweep's nvCOMP and hybrid runs go through the host stand-in
            with nvcomp_stand_in(args.smoke and name.startswith("sweep_") and nvcomp_problem() is not None):
                run.stage(f"generate_{name}", lambda cfg=cfg, device=device, c=compressor, name=name: e2e_stage(
                    name, cfg, device, c, startup_s))

    # issue 24's sweep: inner-chunk settings and the hybrid CPU level, end to end on the GPU (each
    # --compared-samples, the full run projected), compared by the chunk verdict at the end
    default_level = next(f.default for f in dataclasses.fields(GenerateConfig) if f.name == "compression_level")
    compared = min(args.compared_samples, args.samples)
    sweep = {} if headline else {
        "sweep_" + setting_key(c, k, level): (
            GenerateConfig(**base, limit=compared, chunk_size=k, compression_level=level), "cuda", c)
        for c, k, level in parse_settings(args.chunk_settings)
    }
    if not (args.e2e_only or headline):
        # first the compression sweep (issue 24), then the longer stages: a run cut short keeps it
        run.stage("nvcomp_sweep", lambda: nvcomp_sweep(shard, config, cores, args.smoke, floors.get("disk_write_GBps")))
        run_e2e(sweep, None)
        run.stage("host_tables", host_tables)
        run.stage("d2h_raw_shard", d2h_raw)
        run.stage("channel_stats", channel_stats)
        run.stage("jpeg_encode", lambda: jpeg_rates(shard["images"], h_images, cores, gpu_writers))
        run.stage("nvcomp_zstd", lambda: nvcomp_stage(shard, config.samples_per_chunk, n, floors["device_copy_GBps"] * 1e9))
    comp.free.put(slot)
    if not (args.e2e_only or headline):
        run.stage("cpu_compress_write_shard", cpu_compress_write)

    # -- baselines and end to end -----------------------------------------------------------
    naive = run.stage("naive", lambda: naive_rates(GenerateConfig(**base), args.naive_samples, cores)) \
        if not (args.e2e_only or sweeps) else {"skipped": "--e2e-only or --part sweeps"}
    startup = run.stage("startup_seconds", import_seconds) if not args.smoke else 0.0
    startup = startup if isinstance(startup, float) else 0.0
    # 45 s of JPEG writing at most (was 60): the time went to the lossless runs of both compressors
    jpeg_samples = args.jpeg_samples or jpeg_sample_count(r.get("jpeg_encode"), args.samples, config.shard_size,
                                                          seconds_allowed=45.0)
    compressors = args.compressors.split(",")
    e2e: dict[str, tuple[Any, str, str]] = {  # the first: the default run, the targets'; then the others, shorter
        "cuda_zstd" + ("" if i == 0 else f"_{c}"): (
            GenerateConfig(**base, limit=args.samples if i == 0 else min(args.compared_samples, args.samples)), "cuda", c)
        for i, c in enumerate(compressors)
    }
    e2e["cuda_jpeg"] = (GenerateConfig(**base, limit=jpeg_samples, image_codec="jpeg"), "cuda", "cpu")
    e2e["cpu_zstd"] = (GenerateConfig(**base, limit=args.cpu_samples), "cpu", "cpu")
    if args.e2e_only:  # the sweep's runs did not run early
        e2e.update(sweep)
    if args.part != "all":  # the headline: the defaults' runs; the sweeps: the others
        e2e = {k: v for k, v in e2e.items() if (k in ("cuda_zstd", "cuda_jpeg")) == headline}
    # start-up measured (not with --smoke): the whole call of shortened runs projected too
    run_e2e(e2e, startup if startup > 0 else None)
    if sweep:
        r["chunk_verdict"] = chunk_verdict(r)
        run.record("chunk_verdict", r["chunk_verdict"])

    # -- the targets ------------------------------------------------------------------
    def get(*keys: str) -> Any:
        value: Any = r
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        return value

    def jpeg_full(key: str) -> Any:  # measured, or projected from a shortened run
        return get("generate_cuda_jpeg", f"projected_{key}_full") or get("generate_cuda_jpeg", key)

    targets = [
        ("400k lossless, writing phase <= 15 s", get("generate_cuda_zstd", "seconds_writing"), lambda v: v <= 15),
        ("400k lossless, whole call <= 20 s", get("generate_cuda_zstd", "seconds_whole_call"), lambda v: v <= 20),
        ("400k lossless, start-up (whole - writing) <= 5 s", get("generate_cuda_zstd", "seconds_startup"),
         lambda v: v <= 5),
        ("400k JPEG q95, writing phase <= 20 s", jpeg_full("seconds_writing"), lambda v: v <= 20),
        ("400k JPEG q95, whole call <= 25 s", jpeg_full("seconds_whole_call"), lambda v: v <= 25),
        ("lossless within 2x of the physical floor", get("generate_cuda_zstd", "vs_floor"), lambda v: v <= 2),
        ("JPEG within 2x of the physical floor", get("generate_cuda_jpeg", "vs_floor"), lambda v: v <= 2),
        (">= 50x the single naive loop", get("generate_cuda_zstd", "vs_naive_single"), lambda v: v >= 50),
        (">= 5x the naive pool of every core", get("generate_cuda_zstd", "vs_naive_pool"), lambda v: v >= 5),
        ("kernel >= 50% of copy bandwidth (goal)",
         max((v.get("fraction_of_copy_bw", 0) for v in (kernel.values() if isinstance(kernel, dict) else [])
              if isinstance(v, dict)), default=None), lambda v: v >= 0.5),
    ]
    r["targets"] = {name: {"value": value, "met": None if value is None else bool(ok(value))}
                    for name, value, ok in targets}
    run.record("targets", r["targets"])
    path = save("gpu-smoke" if args.smoke else "gpu", r, args.results_dir)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print("\ntarget                                      value        met")
    for name, t in r["targets"].items():
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        print(f"{name:43s} {value:>10s}   {'-' if t['met'] is None else ('yes' if t['met'] else 'NO')}")
    for name in e2e:
        e = r.get(f"generate_{name}", {})
        if not isinstance(e, dict):
            continue
        if "samples" in e:
            print(f"generate {name}: {e['samples']} samples, {e['seconds_writing']:.1f} s writing "
                  f"({e['images_per_s_writing']:.0f} images/s), {e['seconds_whole_call']:.1f} s whole call "
                  f"(start-up {e['seconds_startup']:.1f} s: imports {e['seconds_imports']:.1f} s, set-up "
                  f"{e['seconds_setup']:.1f} s with a warm asset cache, the rest closing the store); floor "
                  f"{e['floor_seconds']:.1f} s -> {e['vs_floor']:.2f}x the floor; {e['compressor']}, "
                  f"{e['writer_threads']} writers; {e['bottleneck']}")
            if len(e.get("compressed_shards", {})) > 1:  # hybrid: each compressor's share
                shares = ", ".join(f"{c} {k} shards" for c, k in sorted(e["compressed_shards"].items()))
                print(f"  shards compressed by {shares} ({100 * e['gpu_compressed_share']:.0f}% on the GPU)")
    if sweep:
        print_chunk_sweep(r)
    print(f"saved {path}")


def print_chunk_sweep(r: dict[str, Any]) -> None:
    """The sweep of issue 24 next to the targets: nvCOMP alone per piece size (400k projected),
    ``generate`` per setting (the full run projected), and the chunk verdict."""
    pieces = r.get("nvcomp_sweep")
    if isinstance(pieces, dict) and any(k.isdigit() for k in pieces):
        disk = pieces.get("disk_write_GBps") or float("nan")
        print(f"\n{pieces.get('compressor')} alone, one call per shard; {FULL_SAMPLES:,} samples projected "
              f"(compression and the disk's measured {disk:.2f} GB/s overlap: the larger):")
        for size, row in ((k, v) for k, v in pieces.items() if k.isdigit()):
            p = row.get("projected_400k_s") or {}
            end = f"{p['end_to_end_s']:7.1f} s, {p['bound']}-bound" if p else "      -"
            print(f"  pieces of {int(size):>9,} B  {row['per_shard_call_GBps']:7.2f} GB/s  ratio {row['ratio']:5.2f}"
                  f"  -> {end}  [{row['setting']}]")
    runs = sweep_runs(r)
    if runs:
        print("generate end to end per setting (writing phase, the full run projected from each run's samples):")
        for e in runs.values():
            share = e.get("gpu_compressed_share") or 0.0
            compression = (e.get("writer_cost") or {}).get("compression_share")
            print(f"  {e['setting']['label']:58s} {seconds_full(e):7.1f} s for {samples_full(e):,}  "
                  f"{e['raw_GBps_writing']:6.2f} GB/s raw  ratio {e['store_ratio'] or float('nan'):5.2f}  "
                  f"store {e['store_bytes']:,} B ({e['samples']:,} samples)  GPU {100 * share:.0f}% of shards"
                  + ("" if compression is None else f"  compression {100 * compression:.0f}% of writer CPU")
                  + ("  [today's default]" if e["setting"]["is_default"] else ""))
    verdict = r.get("chunk_verdict") or {}
    print(f"chunk verdict: {verdict.get('line', 'none')}")


if __name__ == "__main__":
    sys.exit(main())
