"""Depth of the plane a placed foreground stands on, read from a background depth map.

Two rules, for backgrounds whose depth is a map rather than a ground-plane
equation:

- ``CONTACT``: the median background depth along the foreground's bottom
  row, over the columns where that row is opaque (alpha > threshold): where
  the object touches the ground. If no bottom pixel is opaque, the whole row.
- ``MIN_FOOTPRINT``: the smallest background depth under the foreground's
  mask: the object stands in front of everything it covers.

Both read only the *visible* part of the foreground, its box clipped to the
image (a placement may reach beyond the border: ``--truncation``): the
background has no depth beyond it. So ``CONTACT`` reads the lowest visible row,
which is the bottom row unless the bottom is cut off (then the image's last
row, the nearest ground the image shows under the object).

Unknown background depth (``<= 0`` or not finite) is ignored; a sample with
no known depth to read gets ``nan`` and the caller decides. Runs on the host
(the placement table is built there) with Numba over samples.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels import placement as P
from kernels.checks import check_array, check_same_dims
from kernels.placement import visible_window

CONTACT = 0
MIN_FOOTPRINT = 1


# nogil: a prepare thread or writer threads run Python beside this kernel
@numba.njit(parallel=True, cache=True, nogil=True)
def _plane_depth(bg_depth, atlas, table, threshold, mode, out):  # pragma: no cover - compiled by Numba
    _, height, width = bg_depth.shape
    for b in numba.prange(len(table)):
        bg, off = table[b, P.BG], table[b, P.OFFSET]
        x, y, h, w, flip = table[b, P.X], table[b, P.Y], table[b, P.H], table[b, P.W], table[b, P.FLIP]
        # the visible part: foreground rows r0..r1-1, columns c0..c1-1
        r0, r1 = max(0, -y), min(h, height - y)
        c0, c1 = max(0, -x), min(w, width - x)
        values = np.empty(max(c1 - c0, 1), np.float32)
        n = 0
        if mode == CONTACT:
            r = r1 - 1
            for pass_ in range(2):  # opaque bottom pixels first; the whole row if none
                for fc in range(c0, c1):
                    src = w - 1 - fc if flip != 0 else fc
                    if pass_ == 0 and atlas[off + (r * w + src) * 4 + 3] <= threshold:
                        continue
                    d = bg_depth[bg, y + r, x + fc]
                    if d > 0 and np.isfinite(d):
                        values[n] = d
                        n += 1
                if n > 0:
                    break
            out[b] = np.median(values[:n]) if n > 0 else np.nan
        else:
            best = np.inf
            for r in range(r0, r1):
                for fc in range(c0, c1):
                    src = w - 1 - fc if flip != 0 else fc
                    if atlas[off + (r * w + src) * 4 + 3] > threshold:
                        d = bg_depth[bg, y + r, x + fc]
                        if d > 0 and d < best:
                            best = d
            out[b] = best if np.isfinite(best) else np.nan


def plane_depth_batch(
    bg_depth: np.ndarray, atlas: np.ndarray, table: np.ndarray, threshold: int, mode: int
) -> np.ndarray:
    """Foreground-plane depth per sample from background depth maps.

    Args:
        bg_depth: ``(NB, H, W) float32`` metres; ``<= 0`` or not finite = unknown.
        atlas: ``(A,) uint8`` resized foregrounds (RGBA), as for the composite.
        table: ``(B, 8) int64`` placements (the DEPTH column is not read), each
            meeting the image (it may reach beyond the border).
        threshold: opaque means alpha > threshold.
        mode: :data:`CONTACT` or :data:`MIN_FOOTPRINT`.

    Returns:
        ``(B,) float32`` metres, ``nan`` where nothing known was under the foreground.
    """
    check_same_dims(
        [
            check_array(bg_depth, "bg_depth", np.float32, ["NB", "H", "W"]),
            check_array(atlas, "atlas", np.uint8, ["A"]),
            check_array(table, "table", np.int64, ["B", P.N_COLUMNS]),
        ],
        "plane_depth",
    )
    if mode not in (CONTACT, MIN_FOOTPRINT):
        raise ValueError(f"unknown plane-depth mode {mode}")
    t = np.asarray(table)
    _, height, width = bg_depth.shape
    if len(t) and ((t[:, P.X] + t[:, P.W] < 1) | (t[:, P.Y] + t[:, P.H] < 1)
                   | (t[:, P.X] >= width) | (t[:, P.Y] >= height) | (t[:, P.H] < 1) | (t[:, P.W] < 1)).any():
        raise ValueError("every placement must meet the image")
    out = np.empty(len(table), np.float32)
    if len(table):
        _plane_depth(bg_depth, atlas, table, np.int32(threshold), np.int32(mode), out)
    return out


def plane_depth_reference(
    bg_depth: np.ndarray, atlas: np.ndarray, table: np.ndarray, threshold: int, mode: int
) -> np.ndarray:
    """Plain NumPy reference of :func:`plane_depth_batch`, one sample at a time."""
    out = np.empty(len(table), np.float32)
    for b, row in enumerate(table):
        bg, off, x, y, h, w, flip, _ = (int(v) for v in row)
        alpha = atlas[off : off + h * w * 4].reshape(h, w, 4)[..., 3]
        if flip:
            alpha = alpha[:, ::-1]
        seen, part = visible_window(x, y, h, w, *bg_depth.shape[1:])
        alpha = alpha[part]
        under = bg_depth[bg][seen]
        known = (under > 0) & np.isfinite(under)
        if mode == CONTACT:
            pick = known[-1] & (alpha[-1] > threshold)
            if not pick.any():
                pick = known[-1]
            out[b] = np.median(under[-1][pick]) if pick.any() else np.nan
        else:
            pick = known & (alpha > threshold)
            out[b] = under[pick].min() if pick.any() else np.nan
    return out
