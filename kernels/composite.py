"""Straight-alpha "over" composite with its mask and depth, for a batch.

For each sample ``b`` and output pixel ``(r, c)``, with the sample's resized
foreground placed at ``(x, y)`` (see :mod:`kernels.placement`)::

    out   = (fg * a + bg * (255 - a) + 127) // 255     # round to nearest, exact integers
    mask  = 255 if a > threshold else 0
    depth = fg_plane_depth if a > threshold else bg_depth

Depth is switched by the mask, not blended: averaging a near and a far surface
invents a floating surface in between. Depth travels as float16 *bits*
(``uint16``) so the kernel only copies it, which keeps CPU and CUDA outputs
bit-identical. With ``occlusion`` set, a foreground pixel whose background is
nearer than the foreground's plane is hidden (``a = 0`` there, so image, mask
and depth are the background's). For positive float16 values the order of the
bit patterns is the order of the numbers, so that test is an integer compare;
a background depth of 0 means unknown and never occludes.

The per-pixel function :func:`composite_pixel` is plain Python compiled twice:
by ``numba.njit`` here and by ``numba.cuda.jit(device=True)`` in
:mod:`kernels.composite_cuda`, so both devices run the same math.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels import placement as P
from kernels.checks import check_array, check_same_dims


def composite_pixel(
    b, r, c, bg_images, bg_depth, atlas, table, threshold,
    out_images, out_masks, out_depth, out_alpha, write_alpha, occlusion,
):  # pragma: no cover - compiled by Numba; tested through the kernels
    """Composite one output pixel ``(b, r, c)``; shared by CPU and CUDA kernels."""
    bg = table[b, P.BG]
    x = table[b, P.X]
    y = table[b, P.Y]
    h = table[b, P.H]
    w = table[b, P.W]
    fr = r - y
    fc = c - x
    alpha = 0
    inside = fr >= 0 and fr < h and fc >= 0 and fc < w
    if inside and occlusion != 0:
        behind = bg_depth[bg, r, c]
        inside = behind == 0 or behind >= table[b, P.DEPTH]
    if inside:
        if table[b, P.FLIP] != 0:
            fc = w - 1 - fc
        base = table[b, P.OFFSET] + (fr * w + fc) * 4
        alpha = np.int32(atlas[base + 3])
        inv = 255 - alpha
        for k in range(3):
            out_images[b, r, c, k] = (
                np.int32(atlas[base + k]) * alpha + np.int32(bg_images[bg, r, c, k]) * inv + 127
            ) // 255
    else:
        for k in range(3):
            out_images[b, r, c, k] = bg_images[bg, r, c, k]
    if alpha > threshold:
        out_masks[b, r, c] = 255
        out_depth[b, r, c] = table[b, P.DEPTH]
    else:
        out_masks[b, r, c] = 0
        out_depth[b, r, c] = bg_depth[bg, r, c]
    if write_alpha:
        out_alpha[b, r, c] = alpha


_pixel_cpu = numba.njit(cache=True, inline="always")(composite_pixel)


# nogil: a prepare thread or writer threads run Python beside this kernel
@numba.njit(parallel=True, cache=True, nogil=True)
def _composite_cpu(
    bg_images, bg_depth, atlas, table, threshold,
    out_images, out_masks, out_depth, out_alpha, write_alpha, occlusion,
):  # pragma: no cover - compiled by Numba
    n, height, width = out_masks.shape
    # One task per output row: enough parallelism for any batch size, and
    # each task writes a contiguous span of every output.
    for task in numba.prange(n * height):
        b = task // height
        r = task - b * height
        for c in range(width):
            _pixel_cpu(
                b, r, c, bg_images, bg_depth, atlas, table, threshold,
                out_images, out_masks, out_depth, out_alpha, write_alpha, occlusion,
            )


def check_composite_inputs(
    bg_images, bg_depth, atlas, table, threshold,
    out_images, out_masks, out_depth, out_alpha,
) -> dict[str, int]:
    """Validate the arguments of a composite kernel; return the named sizes.

    Shapes: ``bg_images (NB, H, W, 3) uint8``, ``bg_depth (NB, H, W) uint16``
    (float16 bits), ``atlas (A,) uint8`` (RGBA, straight alpha, rows of each
    foreground contiguous), ``table (B, 8) int64`` (:mod:`kernels.placement`),
    ``out_images (B, H, W, 3) uint8``, ``out_masks (B, H, W) uint8``,
    ``out_depth (B, H, W) uint16``, ``out_alpha (B, H, W) uint8`` or ``None``.
    Also checks that every placement lies inside the output and the atlas.
    """
    dims = check_same_dims(
        [
            check_array(bg_images, "bg_images", np.uint8, ["NB", "H", "W", 3]),
            check_array(bg_depth, "bg_depth", np.uint16, ["NB", "H", "W"]),
            check_array(atlas, "atlas", np.uint8, ["A"]),
            check_array(table, "table", np.int64, ["B", P.N_COLUMNS]),
            check_array(out_images, "out_images", np.uint8, ["B", "H", "W", 3]),
            check_array(out_masks, "out_masks", np.uint8, ["B", "H", "W"]),
            check_array(out_depth, "out_depth", np.uint16, ["B", "H", "W"]),
        ]
        + ([] if out_alpha is None else [check_array(out_alpha, "out_alpha", np.uint8, ["B", "H", "W"])]),
        "composite",
    )
    if not 0 <= int(threshold) <= 254:
        raise ValueError(f"threshold must be in [0, 254], got {threshold}")
    t = np.asarray(table)
    if len(t):
        h, w = t[:, P.H], t[:, P.W]
        bad = (
            (t[:, P.BG] < 0) | (t[:, P.BG] >= dims["NB"]) | (h < 1) | (w < 1)
            | (t[:, P.X] < 0) | (t[:, P.Y] < 0)
            | (t[:, P.X] + w > dims["W"]) | (t[:, P.Y] + h > dims["H"])
            | (t[:, P.OFFSET] < 0) | (t[:, P.OFFSET] + h * w * 4 > dims["A"])
            | (t[:, P.DEPTH] < 0) | (t[:, P.DEPTH] > 0xFFFF)
        )
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"placement row {i} is out of bounds: {t[i].tolist()}")
    return dims


def composite_batch(
    bg_images: np.ndarray,
    bg_depth: np.ndarray,
    atlas: np.ndarray,
    table: np.ndarray,
    threshold: int,
    out_images: np.ndarray,
    out_masks: np.ndarray,
    out_depth: np.ndarray,
    out_alpha: np.ndarray | None = None,
    occlusion: bool = False,
) -> None:
    """Composite a batch on the CPU (Numba, all cores), writing into ``out_*``.

    Args:
        bg_images: ``(NB, H, W, 3) uint8`` backgrounds.
        bg_depth: ``(NB, H, W) uint16`` background depth, float16 bits.
        atlas: ``(A,) uint8`` resized foregrounds, RGBA straight alpha.
        table: ``(B, 8) int64`` placements, columns in :mod:`kernels.placement`.
        threshold: mask is 255 where alpha > threshold (0..254).
        out_images: ``(B, H, W, 3) uint8`` composites (written).
        out_masks: ``(B, H, W) uint8`` 0/255 masks (written).
        out_depth: ``(B, H, W) uint16`` depth as float16 bits (written).
        out_alpha: optional ``(B, H, W) uint8`` soft alpha in output space.
        occlusion: hide foreground pixels behind nearer background surfaces.
    """
    check_composite_inputs(
        bg_images, bg_depth, atlas, table, threshold, out_images, out_masks, out_depth, out_alpha
    )
    write_alpha = out_alpha is not None
    if out_alpha is None:
        out_alpha = np.empty((0, 0, 0), np.uint8)  # typed placeholder, never written
    _composite_cpu(
        bg_images, bg_depth, atlas, table, np.int32(threshold),
        out_images, out_masks, out_depth, out_alpha, write_alpha, np.int32(occlusion),
    )
