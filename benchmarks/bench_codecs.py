"""Which lossless codec for images, masks and depth: ratio and speed, measured.

    python benchmarks/bench_codecs.py [--samples 512]

Composites ``--samples`` built-in samples (in plan order, as the store holds
them), then compresses each array in chunks as the store would (about 1 MB of
images per chunk) with each candidate, one thread. Reports compression ratio
and encode/decode MB/s of raw data. Results: stdout and
``benchmarks/results/codecs.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import save
from engine.compose.compositor import Compositor
from engine.compose.depth import make_depth_source
from engine.compose.generate import load_assets
from engine.compose.plan import plan_for
from engine.config import GenerateConfig


def candidates() -> dict[str, object]:
    from numcodecs import LZ4, Blosc, Zstd

    return {
        "zstd-1": Zstd(level=1), "zstd-3": Zstd(level=3), "zstd-5": Zstd(level=5), "lz4": LZ4(),
        "blosc-lz4-shuffle": Blosc("lz4", 5, Blosc.SHUFFLE),
        "blosc-zstd3-shuffle": Blosc("zstd", 3, Blosc.SHUFFLE),
        "blosc-zstd3-bitshuffle": Blosc("zstd", 3, Blosc.BITSHUFFLE),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=512)
    args = ap.parse_args()
    import numcodecs.blosc

    numcodecs.blosc.set_nthreads(1)
    config = GenerateConfig(builtin_backgrounds=20, builtin_foregrounds=20)
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets.fg_sizes, len(assets.bg_images), depth)
    batch = Compositor(assets, depth, config).composite(plan.placements(0, args.samples))
    chunk = config.samples_per_chunk
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, array in (("images", batch.images), ("masks", batch.masks), ("depth", batch.depth)):
        results[name] = {}
        print(f"== {name} {array.dtype} {array.shape[1:]}, {chunk} samples per chunk")
        pieces = [np.ascontiguousarray(array[i : i + chunk]) for i in range(0, len(array), chunk)]
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
    save("codecs", results)


if __name__ == "__main__":
    main()
