"""Which lossless codec, level and chunk shape for images, masks and depth: ratio and speed, measured.

    python benchmarks/bench_codecs.py [--samples 512] [--assets 100] [--tables candidates,sweep,threads]

Composites ``--samples`` built-in samples (in plan order, as the store holds
them: foreground fastest, so ``--assets`` consecutive samples share one
background; 100 is the default 400k plan), then compresses each array in
chunks as the store would, one thread:

- ``candidates``: each candidate codec at the store's chunk (about 1 MB of
  images): ratio, encode/decode MB/s of raw data;
- ``sweep``: Zstandard ``--levels`` x ``--chunks`` (samples per chunk, the
  same for every array, as the store chunks them): images ratio, MB/s per
  core, decode MB/s, and the store's compressed bytes per sample (images +
  masks + depth). Repeats are interleaved (every setting once per round) so a
  noisy machine slows them alike; each figure is the median of the rounds;
- ``threads``: the store's chunks compressed by 1 thread and by every core:
  whether numcodecs' Zstandard releases the GIL, so writer threads and the
  chunk pool really run in parallel (speed-up near the core count: yes).

Results: stdout and ``benchmarks/results/codecs.json`` (``codecs-sweep.json``
without the candidates table).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from common import save
from engine.compose.compositor import Compositor
from engine.compose.depth import make_depth_source
from engine.compose.generate import load_assets
from engine.compose.plan import plan_for
from engine.config import GenerateConfig


#: the sweep's clock: wall time, or this thread's CPU time (``--clock cpu``: a loaded machine)
CLOCK: Callable[[], float] = time.perf_counter


def candidates() -> dict[str, object]:
    from numcodecs import LZ4, Blosc, Zstd

    return {
        "zstd-1": Zstd(level=1), "zstd-3": Zstd(level=3), "zstd-5": Zstd(level=5), "lz4": LZ4(),
        "blosc-lz4-shuffle": Blosc("lz4", 5, Blosc.SHUFFLE),
        "blosc-zstd3-shuffle": Blosc("zstd", 3, Blosc.SHUFFLE),
        "blosc-zstd3-bitshuffle": Blosc("zstd", 3, Blosc.BITSHUFFLE),
    }


def chunked(array: np.ndarray, samples_per_chunk: int) -> list[np.ndarray]:
    """``(N, ...)`` → contiguous pieces of ``samples_per_chunk`` samples (the last may be shorter)."""
    return [np.ascontiguousarray(array[i : i + samples_per_chunk]) for i in range(0, len(array), samples_per_chunk)]


def table_candidates(arrays: dict[str, np.ndarray], chunk: int) -> dict[str, Any]:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, array in arrays.items():
        results[name] = {}
        print(f"== {name} {array.dtype} {array.shape[1:]}, {chunk} samples per chunk")
        pieces = chunked(array, chunk)
        for codec_name, codec in candidates().items():
            t0 = time.perf_counter()
            encoded = [codec.encode(p) for p in pieces]
            t_enc = time.perf_counter() - t0
            t0 = time.perf_counter()
            for e in encoded:
                codec.decode(e)
            t_dec = time.perf_counter() - t0
            ratio = array.nbytes / sum(len(e) for e in encoded)
            row = {"ratio": ratio, "encode_MBps": array.nbytes / t_enc / 1e6, "decode_MBps": array.nbytes / t_dec / 1e6}
            results[name][codec_name] = row
            print(f"  {codec_name:24s} ratio {ratio:7.2f}  encode {row['encode_MBps']:6.0f} MB/s  "
                  f"decode {row['decode_MBps']:6.0f} MB/s")
    return results


def table_sweep(arrays: dict[str, np.ndarray], levels: list[int], chunks: list[int], rounds: int) -> dict[str, Any]:
    """Zstandard level x samples per chunk; see the module docstring."""
    from numcodecs import Zstd

    n = len(arrays["images"])
    settings = [(level, c) for c in chunks for level in levels]
    pieces = {c: {name: chunked(a, c) for name, a in arrays.items()} for c in chunks}
    enc_t: dict[tuple[int, int, str], list[float]] = {}
    dec_t: dict[tuple[int, int], list[float]] = {}
    packed: dict[tuple[int, int, str], int] = {}
    for _ in range(rounds):  # interleaved: each round runs every setting once
        for level, c in settings:
            codec = Zstd(level=level)
            for name, ps in pieces[c].items():
                t0 = CLOCK()
                encoded = [codec.encode(p) for p in ps]
                enc_t.setdefault((level, c, name), []).append(CLOCK() - t0)
                packed[(level, c, name)] = sum(len(e) for e in encoded)
                if name == "images":
                    t0 = CLOCK()
                    for e in encoded:
                        codec.decode(e)
                    dec_t.setdefault((level, c), []).append(CLOCK() - t0)
    rows: dict[str, Any] = {}
    print(f"== Zstandard level x samples per chunk, {n} samples, median of {rounds} interleaved rounds, one thread")
    print(f"{'level':>5s} {'chunk':>5s} {'images ratio':>12s} {'images MB/s':>11s} {'decode MB/s':>11s} "
          f"{'all MB/s':>8s} {'bytes/sample':>12s}")
    raw_all = sum(a.nbytes for a in arrays.values())
    for level, c in settings:
        t_images = statistics.median(enc_t[(level, c, "images")])
        t_all = sum(statistics.median(enc_t[(level, c, name)]) for name in arrays)
        per_sample = sum(packed[(level, c, name)] for name in arrays) / n
        row = {
            "level": level, "samples_per_chunk": c,
            "images_ratio": arrays["images"].nbytes / packed[(level, c, "images")],
            "images_encode_MBps_per_core": arrays["images"].nbytes / t_images / 1e6,
            "images_decode_MBps_per_core": arrays["images"].nbytes / statistics.median(dec_t[(level, c)]) / 1e6,
            "all_encode_MBps_per_core": raw_all / t_all / 1e6,
            "store_bytes_per_sample": per_sample,
            "ratio_by_array": {name: arrays[name].nbytes / packed[(level, c, name)] for name in arrays},
        }
        rows[f"zstd{level}_chunk{c}"] = row
        print(f"{level:5d} {c:5d} {row['images_ratio']:12.2f} {row['images_encode_MBps_per_core']:11.0f} "
              f"{row['images_decode_MBps_per_core']:11.0f} {row['all_encode_MBps_per_core']:8.0f} {per_sample:12.0f}")
    return rows


def parallel_speedup(encode: Callable[[np.ndarray], Any], pieces: list[np.ndarray], threads: int,
                     rounds: int) -> dict[str, float]:
    """Seconds to ``encode`` every piece on 1 thread and on ``threads``, interleaved; median of ``rounds``."""
    times: dict[int, list[float]] = {1: [], threads: []}
    for _ in range(rounds):
        for t in (1, threads):
            with ThreadPoolExecutor(t) as pool:
                t0 = time.perf_counter()
                list(pool.map(encode, pieces))
                times[t].append(time.perf_counter() - t0)
    one, many = statistics.median(times[1]), statistics.median(times[threads])
    return {"threads": threads, "seconds_1_thread": one, f"seconds_{threads}_threads": many, "speedup": one / many}


def table_threads(arrays: dict[str, np.ndarray], chunk: int, level: int, rounds: int) -> dict[str, Any]:
    from numcodecs import Zstd

    codec = Zstd(level=level)
    threads = max(2, os.cpu_count() or 1)
    pieces = chunked(arrays["images"], chunk)
    out = parallel_speedup(codec.encode, pieces, threads, rounds)
    out["MBps_1_thread"] = arrays["images"].nbytes / out["seconds_1_thread"] / 1e6
    out["MBps_all_threads"] = arrays["images"].nbytes / out[f"seconds_{threads}_threads"] / 1e6
    print(f"== zstd-{level} images, {chunk} samples per chunk: 1 thread {out['MBps_1_thread']:.0f} MB/s, "
          f"{threads} threads {out['MBps_all_threads']:.0f} MB/s -> x{out['speedup']:.2f} "
          f"({'releases' if out['speedup'] > 1.3 else 'HOLDS'} the GIL)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--assets", type=int, default=100, help="built-in backgrounds and foregrounds (100: the 400k plan)")
    ap.add_argument("--tables", default="candidates,sweep,threads", help="which tables, comma-separated")
    ap.add_argument("--levels", default="-3,-1,1,2,3", help="Zstandard levels of the sweep")
    ap.add_argument("--chunks", default="4,8,16,32", help="samples per chunk of the sweep")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repeats of the sweep")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time the sweep by wall clock or by this thread's CPU time (a loaded machine)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    import numcodecs.blosc

    numcodecs.blosc.set_nthreads(1)
    config = GenerateConfig(builtin_backgrounds=args.assets, builtin_foregrounds=args.assets)
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    batch = Compositor(assets, depth, config).composite(plan.placements(0, args.samples))
    arrays = {"images": batch.images, "masks": batch.masks, "depth": batch.depth}
    chunk = config.samples_per_chunk
    tables = set(args.tables.split(","))
    results: dict[str, Any] = {"samples": args.samples, "assets": args.assets, "store_chunk": chunk}
    if "candidates" in tables:
        results.update(table_candidates(arrays, chunk))
    if "sweep" in tables:
        results["sweep"] = table_sweep(arrays, [int(v) for v in args.levels.split(",")],
                                       [int(v) for v in args.chunks.split(",")], args.rounds)
    if "threads" in tables:
        results["threads"] = table_threads(arrays, chunk, config.compression_level, args.rounds)
    save("codecs" if "candidates" in tables else "codecs-sweep", results)


if __name__ == "__main__":
    main()
