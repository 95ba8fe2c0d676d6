"""Per-channel 256-bin histograms of ``uint8`` RGB images, for a store's statistics.

What the training normaliser's mean and std are computed from (see
:mod:`engine.store.stats`): integer counts, so a store's statistics are exact
whatever order its shards were counted in. NumPy's ``bincount`` of each
channel's strided view holds the GIL and runs at ~0.3-0.5 GB/s a core, which
made counting the largest per-sample CPU cost of ``generate`` (more than
compression); this loop releases the GIL (writer threads count side by side)
and reads each pixel once. Two partial tables let consecutive equal pixels,
the common case in images, increment different counters.

The CUDA twin is :mod:`kernels.histogram_cuda`; both equal
``np.bincount`` per channel exactly.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.checks import check_array


@numba.njit(cache=True, nogil=True)
def _count(flat: np.ndarray, counts: np.ndarray) -> None:  # pragma: no cover - compiled by Numba
    n = flat.shape[0]
    part = np.zeros((2, 3, 256), np.int64)
    for i in range(n // 2):
        a = 2 * i
        part[0, 0, flat[a, 0]] += 1
        part[0, 1, flat[a, 1]] += 1
        part[0, 2, flat[a, 2]] += 1
        part[1, 0, flat[a + 1, 0]] += 1
        part[1, 1, flat[a + 1, 1]] += 1
        part[1, 2, flat[a + 1, 2]] += 1
    if n % 2:
        part[0, 0, flat[n - 1, 0]] += 1
        part[0, 1, flat[n - 1, 1]] += 1
        part[0, 2, flat[n - 1, 2]] += 1
    for c in range(3):
        for v in range(256):
            counts[c, v] += part[0, c, v] + part[1, c, v]


def channel_histogram(images: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """Count every pixel of ``images`` per channel and value.

    Args:
        images: ``(B, H, W, 3) uint8`` RGB images (any batch size, also 0).
        counts: ``(3, 256) int64`` table to add into, or ``None`` for a new one.

    Returns:
        ``(3, 256) int64``: ``counts[c, v]`` (plus what it held) = pixels whose
        channel ``c`` equals ``v``.
    """
    check_array(images, "images", np.uint8, ["B", "H", "W", 3])
    if counts is None:
        counts = np.zeros((3, 256), np.int64)
    check_array(counts, "counts", np.int64, [3, 256])
    _count(np.ascontiguousarray(images).reshape(-1, 3), counts)
    return counts
