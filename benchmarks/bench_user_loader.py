"""``engine.loader`` against a plain ``torch.utils.data.DataLoader`` on the same store and work.

The work is ``examples/train_segmentation.py``'s: batches of the training split
(image resized to the input size, antialiased bilinear; mask nearest), a random
flip of image and mask together and colour gains, normalised, delivered on the
device. The plain loader is what one writes without fgbg's: a ``Dataset`` whose
``__getitem__`` reads one sample through ``open_store`` and augments it, in
``num_workers`` = cores processes, shuffled, pinned on a GPU. Both run side by
side in one process, epoch by epoch, alternating; the figure is the median of
the epochs' images/s (setup — worker start, the split loaded into memory — is
timed apart).

    python benchmarks/bench_user_loader.py                    # CPU: torch loader vs DataLoader
    python benchmarks/bench_user_loader.py --device cuda --seconds 60 --json out.json   # DALI on the GPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine  # noqa: E402


class PlainDataset:
    """One sample per ``__getitem__``, through :func:`engine.open_store`, augmented as ``engine.loader`` does."""

    def __init__(self, path: str, index: np.ndarray, size: tuple[int, int], mean: np.ndarray, std: np.ndarray,
                 seed: int) -> None:
        self.path, self.index, self.size, self.seed = path, index, size, seed
        self.mean, self.std = mean, std
        self.store: Any = None  # opened in each worker

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        import torch
        import torch.nn.functional as F

        from engine import open_store

        if self.store is None:
            self.store = open_store(self.path)
        sample = self.store[int(self.index[i])]
        x = torch.from_numpy(sample["image"]).permute(2, 0, 1)[None].float()  # (1, 3, H0, W0)
        mask = torch.from_numpy(sample["mask"] > 0)[None, None].float()
        if tuple(x.shape[2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True).round()
            mask = F.interpolate(mask, size=self.size, mode="nearest-exact")
        x, mask = x[0] / 255.0, mask[0] > 0.5
        rng = np.random.default_rng([self.seed, i])
        if rng.random() < 0.5:
            x, mask = x.flip(2), mask.flip(2)
        gain = rng.uniform(0.8, 1.2) * rng.uniform(0.8, 1.2, 3)
        x = (x * torch.from_numpy(gain.astype(np.float32))[:, None, None]).clamp(0, 1)
        x = (x - torch.from_numpy(self.mean)[:, None, None]) / torch.from_numpy(self.std)[:, None, None]
        return x, mask


def make_store(path: Path, samples_side: int, height: int, width: int) -> None:
    from engine import GenerateConfig, RunOptions, generate

    config = GenerateConfig(builtin_backgrounds=samples_side, builtin_foregrounds=samples_side, height=height,
                            width=width, positions=samples_side, shard_size=64, chunk_size=8)
    generate(config, path, RunOptions(overwrite=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="an existing store (default: a built-in one made in a temp folder)")
    parser.add_argument("--side", type=int, default=4, help="made store: backgrounds = cars = positions = SIDE (x2 flips)")
    parser.add_argument("--store-size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    parser.add_argument("--size", type=int, nargs=2, default=(64, 96), metavar=("H", "W"), help="input size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per loader (median)")
    parser.add_argument("--seconds", type=float, default=None, help="stop timing a loader's epochs after this long")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers (default: cores)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    import torch

    from engine import loader, open_store

    tmp = tempfile.TemporaryDirectory(prefix="fgbg-bench-user-loader-")
    path = args.store
    t0 = time.perf_counter()
    if path is None:
        path = str(Path(tmp.name) / "store.zarr")
        make_store(Path(path), args.side, *args.store_size)
    made = time.perf_counter() - t0
    store = open_store(path)
    size = tuple(args.size)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    t = time.perf_counter()
    ours = loader(store, args.batch, "train", device=args.device, input_size=size, seed=0)
    ours_setup = time.perf_counter() - t
    stats = store.channel_stats()
    mean = (np.asarray(stats["mean"], np.float32) / 255.0).astype(np.float32)
    std = (np.asarray(stats["std"], np.float32) / 255.0).astype(np.float32)
    dataset = PlainDataset(path, ours.index, size, mean, std, 0)
    t = time.perf_counter()
    plain = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                        pin_memory=cuda, persistent_workers=args.workers > 0, drop_last=False)
    iter(plain)  # workers start here
    plain_setup = time.perf_counter() - t

    def epoch_ours() -> int:
        n = 0
        for batch in ours:
            n += len(batch["image"])
        sync()
        return n

    def epoch_plain() -> int:
        n = 0
        for x, mask in plain:
            x, mask = x.to(args.device, non_blocking=True), mask.to(args.device, non_blocking=True)
            n += len(x)
        sync()
        return n

    rates: dict[str, list[float]] = {"engine.loader": [], "DataLoader": []}
    spent = {k: 0.0 for k in rates}
    for name, run in (("engine.loader", epoch_ours), ("DataLoader", epoch_plain)):  # warm-up epoch each
        run()
    for _ in range(args.epochs):
        for name, run in (("engine.loader", epoch_ours), ("DataLoader", epoch_plain)):
            if args.seconds is not None and spent[name] > args.seconds / 2 and rates[name]:
                continue
            t = time.perf_counter()
            n = run()
            dt = time.perf_counter() - t
            spent[name] += dt
            rates[name].append(n / dt)
    result = {
        "store": path, "samples": len(store), "train_samples": len(ours.index), "store_size": list(store.size),
        "input_size": list(size), "batch": args.batch, "device": args.device, "kind": ours.kind,
        "workers": args.workers, "made_store_s": made,
        "setup_s": {"engine.loader": ours_setup, "DataLoader": plain_setup},
        "images_per_s": {k: v for k, v in rates.items()},
        "median_images_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "machine": machine(), "command": " ".join(sys.argv),
    }
    med = result["median_images_per_s"]
    print(f"{len(ours.index)} training samples {store.size[0]}x{store.size[1]} -> {size[0]}x{size[1]}, "
          f"batch {args.batch}, {args.device}, epochs {len(rates['engine.loader'])}")
    print(f"  engine.loader (kind={ours.kind}): {med['engine.loader']:8.0f} images/s  (setup {ours_setup:.2f} s)")
    print(f"  DataLoader ({args.workers} workers): {med['DataLoader']:8.0f} images/s  (setup {plain_setup:.2f} s)")
    print(f"  ratio: {med['engine.loader'] / med['DataLoader']:.1f}x")
    if args.json:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ours.close()


if __name__ == "__main__":
    main()
