"""Physical ceilings, measured in the same run as the stages they bound.

Each returns bytes per second (GB/s, 1e9) of plain data movement with random
(never all-zero) bytes: what no stage that moves the same bytes can beat.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .timer import measure


def disk_write_gbps(folder: Path, size: int, block: int = 16 << 20) -> float:
    """A plain sequential write of ``size`` random bytes to ``folder``, fsync'd (median of 5), GB/s."""
    folder.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(1).integers(0, 256, min(block, size), dtype=np.uint8).tobytes()
    path = folder / "ceiling-disk.bin"
    count = max(1, size // len(data))

    def write() -> None:
        with open(path, "wb") as f:
            for _ in range(count):
                f.write(data)
            f.flush()
            os.fsync(f.fileno())

    try:
        t = measure(write, warmup=1)
    finally:
        path.unlink(missing_ok=True)
    return count * len(data) / t.median_s / 1e9


def device_gbps(size: int) -> dict[str, float]:
    """On the current CUDA device, GB/s of: a device-to-device copy (bytes read +
    written), pinned host-to-device, and device-to-host into pinned memory
    (median of 5 each, synchronised)."""
    import torch

    host = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)).pin_memory()
    src = host.to("cuda")
    dst = torch.empty_like(src)
    back = torch.empty_like(host).pin_memory()
    sync = torch.cuda.synchronize
    copy = measure(lambda: dst.copy_(src), sync=sync)
    h2d = measure(lambda: dst.copy_(host, non_blocking=True), sync=sync)
    d2h = measure(lambda: back.copy_(src, non_blocking=True), sync=sync)
    return {"device_copy_GBps": 2 * size / copy.median_s / 1e9, "h2d_pinned_GBps": size / h2d.median_s / 1e9,
            "d2h_pinned_GBps": size / d2h.median_s / 1e9}


