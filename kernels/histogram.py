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

from kernels import placement as P
from kernels.checks import check_array, check_same_dims


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


# -- the composites' counts from their backgrounds' ---------------------------------
#
# A composite equals its background outside the rectangle its objects cover, so
# its histogram is the background's (counted once per run) plus, inside that
# rectangle, +1 for each composite pixel and -1 for the background pixel it
# replaced. With objects' rectangles covering 26% of an image (user files at 224x224)
# this reads about half the bytes a full count reads: 0.022 vs 0.034 ms a sample.


@numba.njit(parallel=True, cache=True, nogil=True)
def _count_each(images: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled by Numba
    for i in numba.prange(images.shape[0]):
        _count(images[i].reshape(-1, 3), out[i])


def image_histograms(images: np.ndarray) -> np.ndarray:
    """Each image's per-channel histogram.

    Args:
        images: ``(N, H, W, 3) uint8`` RGB images.

    Returns:
        ``(N, 3, 256) int64``: ``out[i, c, v]`` = pixels of image ``i`` whose channel ``c`` equals ``v``.
    """
    check_array(images, "images", np.uint8, ["N", "H", "W", 3])
    out = np.zeros((len(images), 3, 256), np.int64)
    _count_each(np.ascontiguousarray(images), out)
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _count_changed(bg_counts, bg_images, images, bg_index, rects, partial):  # pragma: no cover - compiled by Numba
    n = images.shape[0]
    threads = partial.shape[0]
    for t in numba.prange(threads):
        # separate tables for what is added and what is taken away: no increment waits on
        # the one before it when a composite pixel and its background pixel are equal
        local = np.zeros((2, 3, 256), np.int64)
        for b in range(t, n, threads):
            bg = bg_index[b]
            for k in range(3):
                for v in range(256):
                    local[0, k, v] += bg_counts[bg, k, v]
            for r in range(rects[b, 0], rects[b, 1]):
                for c in range(rects[b, 2], rects[b, 3]):
                    local[0, 0, images[b, r, c, 0]] += 1
                    local[0, 1, images[b, r, c, 1]] += 1
                    local[0, 2, images[b, r, c, 2]] += 1
                    local[1, 0, bg_images[bg, r, c, 0]] += 1
                    local[1, 1, bg_images[bg, r, c, 1]] += 1
                    local[1, 2, bg_images[bg, r, c, 2]] += 1
        partial[t] = local[0] - local[1]


def changed_rectangles(table: np.ndarray, height: int, width: int, offset: np.ndarray | None = None) -> np.ndarray:
    """Per sample, the rectangle of the output its objects' placements cover, clipped to the output.

    Args:
        table: ``(B, 8) int64`` placements (:mod:`kernels.placement`), or with
            ``offset`` the ``(M, 9) int64`` several-objects table.
        height, width: the output's size.
        offset: several objects: ``(B + 1,) int64``, sample ``b``'s rows are
            ``offset[b]:offset[b + 1]`` (at least one each).

    Returns:
        ``(B, 4) int64`` rows ``(y0, y1, x0, x1)``: rows ``y0:y1``, columns ``x0:x1`` (possibly empty).
    """
    t = np.asarray(table)
    y0 = np.clip(t[:, P.Y], 0, height)
    y1 = np.clip(t[:, P.Y] + t[:, P.H], 0, height)
    x0 = np.clip(t[:, P.X], 0, width)
    x1 = np.clip(t[:, P.X] + t[:, P.W], 0, width)
    if offset is not None:
        starts = np.asarray(offset)[:-1]
        y0, x0 = np.minimum.reduceat(y0, starts), np.minimum.reduceat(x0, starts)
        y1, x1 = np.maximum.reduceat(y1, starts), np.maximum.reduceat(x1, starts)
    return np.stack([y0, np.maximum(y1, y0), x0, np.maximum(x1, x0)], axis=1).astype(np.int64)


def composite_histogram(
    bg_counts: np.ndarray, bg_images: np.ndarray, images: np.ndarray, bg_index: np.ndarray, rects: np.ndarray,
) -> np.ndarray:
    """Per-channel histogram of composites that equal their backgrounds outside ``rects``.

    Exact (equal to :func:`channel_histogram` of ``images``) when every image
    ``b`` equals ``bg_images[bg_index[b]]`` outside its rectangle, as the
    composite kernels' outputs do (not after a blending post-pass).

    Args:
        bg_counts: ``(NB, 3, 256) int64`` each background's histogram (:func:`image_histograms`).
        bg_images: ``(NB, H, W, 3) uint8`` the backgrounds.
        images: ``(B, H, W, 3) uint8`` the composites.
        bg_index: ``(B,) int64`` each composite's background.
        rects: ``(B, 4) int64`` :func:`changed_rectangles`.

    Returns:
        ``(3, 256) int64`` the composites' counts, all samples together.
    """
    dims = check_same_dims([
        check_array(bg_counts, "bg_counts", np.int64, ["NB", 3, 256]),
        check_array(bg_images, "bg_images", np.uint8, ["NB", "H", "W", 3]),
        check_array(images, "images", np.uint8, ["B", "H", "W", 3]),
        check_array(bg_index, "bg_index", np.int64, ["B"]),
        check_array(rects, "rects", np.int64, ["B", 4]),
    ], "composite histogram")
    b = np.asarray(bg_index)
    r = np.asarray(rects)
    if len(b) and ((b < 0) | (b >= dims["NB"])).any():
        raise ValueError(f"bg_index must be in [0, {dims['NB']})")
    if len(r) and ((r[:, 0] < 0) | (r[:, 1] < r[:, 0]) | (r[:, 1] > dims["H"])
                   | (r[:, 2] < 0) | (r[:, 3] < r[:, 2]) | (r[:, 3] > dims["W"])).any():
        raise ValueError("rects must be (y0, y1, x0, x1) inside the images with y0 <= y1 and x0 <= x1")
    partial = np.zeros((max(1, min(numba.get_num_threads(), len(b))), 3, 256), np.int64)
    _count_changed(bg_counts, bg_images, images, b, r, partial)
    return partial.sum(axis=0)
