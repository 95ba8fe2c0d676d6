"""Open a store, look at a few samples, and save a picture of one.

    python examples/read_store.py data/cars.zarr --out sample.png
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from engine import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="a store written by cli.py generate")
    parser.add_argument("--out", default="sample.png", help="picture to write: image | mask | depth, side by side")
    parser.add_argument("--index", type=int, default=0, help="the sample to draw")
    args = parser.parse_args()

    store = open_store(args.store)
    print(store)
    print("made with", store.config.height, "x", store.config.width, "seed", store.config.seed,
          "from", len(store.inputs["backgrounds"]), "backgrounds")
    print("train / val samples:", len(store.split("train")), "/", len(store.split("val")))
    print("channel mean (0..255):", np.round(store.channel_stats()["mean"], 1))

    first = store[0:4]  # several samples at once: arrays stacked on a first axis
    for name in ("image", "mask", "depth"):
        print(f"{name:6s} {first[name].shape} {first[name].dtype}")
    print("placements:", {k: v.tolist() for k, v in first["meta"].items() if k in ("bg_index", "fg_index", "x", "y")})

    sample = store[args.index]  # one sample: (H, W, 3) uint8, (H, W) uint8, (H, W) float32 metres
    depth = sample["depth"]
    valid = depth > 0
    shade = np.zeros_like(depth)
    shade[valid] = 1.0 - (depth[valid] - depth[valid].min()) / max(float(np.ptp(depth[valid])), 1e-6)
    gray = lambda a: np.repeat((a * 255).astype(np.uint8)[..., None], 3, axis=2)  # noqa: E731
    picture = np.concatenate([sample["image"], gray(sample["mask"] > 0), gray(shade)], axis=1)
    Image.fromarray(picture).save(args.out)
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]}: image | mask | depth, near = bright)")


if __name__ == "__main__":
    main()
