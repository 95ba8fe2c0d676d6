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

from typing import Any

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
        # Outside the foreground's box a pixel is its background's, with mask and
        # alpha 0 (what composite_pixel gives there): copied as spans (the whole
        # kernel 0.129 -> 0.120 ms a sample on one thread, user files at 224x224).
        c0 = 0
        c1 = 0
        if r >= table[b, P.Y] and r < table[b, P.Y] + table[b, P.H]:
            c0 = min(max(table[b, P.X], 0), width)
            c1 = min(max(table[b, P.X] + table[b, P.W], c0), width)
        _background_span(b, r, 0, c0, bg_images, bg_depth, table, out_images, out_masks, out_depth, out_alpha, write_alpha)
        for c in range(c0, c1):
            _pixel_cpu(
                b, r, c, bg_images, bg_depth, atlas, table, threshold,
                out_images, out_masks, out_depth, out_alpha, write_alpha, occlusion,
            )
        _background_span(b, r, c1, width, bg_images, bg_depth, table, out_images, out_masks, out_depth, out_alpha, write_alpha)


@numba.njit(cache=True, inline="always")
def _background_span(
    b, r, c0, c1, bg_images, bg_depth, table, out_images, out_masks, out_depth, out_alpha, write_alpha,
):  # pragma: no cover - compiled by Numba
    """Columns ``c0:c1`` of output row ``(b, r)`` where no foreground lies: the background's."""
    if c1 <= c0:
        return
    bg = table[b, P.BG]
    for c in range(c0, c1):
        out_images[b, r, c, 0] = bg_images[bg, r, c, 0]
        out_images[b, r, c, 1] = bg_images[bg, r, c, 1]
        out_images[b, r, c, 2] = bg_images[bg, r, c, 2]
        out_masks[b, r, c] = 0
        out_depth[b, r, c] = bg_depth[bg, r, c]
    if write_alpha:
        for c in range(c0, c1):
            out_alpha[b, r, c] = 0


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
    Also checks that every placement meets the output (it may reach beyond its
    border: ``--truncation``; only the pixels inside are written) and lies in the atlas.
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
            | (t[:, P.X] + w < 1) | (t[:, P.Y] + h < 1)
            | (t[:, P.X] >= dims["W"]) | (t[:, P.Y] >= dims["H"])
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


# -- several objects per image ---------------------------------------------------
#
# A separate kernel, so the one-object kernel above keeps its loop (and speed).
# Each sample's rows of the object table are ordered far to near; every object
# is composited "over" what is below it with the one-object rule, so the
# nearest opaque object wins a pixel, its plane depth and its instance id.


def composite_objects_pixel(
    b, r, c, bg_images, bg_depth, atlas, table, offset, threshold,
    out_images, out_masks, out_depth, out_instances, out_alpha, write_alpha, occlusion,
):  # pragma: no cover - compiled by Numba; tested through the kernels
    """Composite one output pixel ``(b, r, c)`` of a sample of several objects."""
    first = offset[b]
    last = offset[b + 1]
    bg = table[first, P.BG]
    red = np.int32(bg_images[bg, r, c, 0])
    green = np.int32(bg_images[bg, r, c, 1])
    blue = np.int32(bg_images[bg, r, c, 2])
    behind = bg_depth[bg, r, c]
    depth = behind
    mask = 0
    instance = 0
    cover = np.int32(0)
    for o in range(first, last):
        fr = r - table[o, P.Y]
        fc = c - table[o, P.X]
        h = table[o, P.H]
        w = table[o, P.W]
        if fr < 0 or fr >= h or fc < 0 or fc >= w:
            continue
        if occlusion != 0 and behind != 0 and behind < table[o, P.DEPTH]:
            continue
        if table[o, P.FLIP] != 0:
            fc = w - 1 - fc
        base = table[o, P.OFFSET] + (fr * w + fc) * 4
        alpha = np.int32(atlas[base + 3])
        inv = 255 - alpha
        red = (np.int32(atlas[base]) * alpha + red * inv + 127) // 255
        green = (np.int32(atlas[base + 1]) * alpha + green * inv + 127) // 255
        blue = (np.int32(atlas[base + 2]) * alpha + blue * inv + 127) // 255
        cover = (alpha * 255 + cover * inv + 127) // 255
        if alpha > threshold:
            mask = 255
            depth = table[o, P.DEPTH]
            instance = table[o, P.INSTANCE]
    out_images[b, r, c, 0] = red
    out_images[b, r, c, 1] = green
    out_images[b, r, c, 2] = blue
    out_masks[b, r, c] = mask
    out_depth[b, r, c] = depth
    out_instances[b, r, c] = instance
    if write_alpha:
        out_alpha[b, r, c] = cover


_objects_pixel_cpu = numba.njit(cache=True, inline="always")(composite_objects_pixel)


@numba.njit(parallel=True, cache=True, nogil=True)
def _composite_objects_cpu(
    bg_images, bg_depth, atlas, table, offset, threshold,
    out_images, out_masks, out_depth, out_instances, out_alpha, write_alpha, occlusion,
):  # pragma: no cover - compiled by Numba
    n, height, width = out_masks.shape
    for task in numba.prange(n * height):
        b = task // height
        r = task - b * height
        for c in range(width):
            _objects_pixel_cpu(
                b, r, c, bg_images, bg_depth, atlas, table, offset, threshold,
                out_images, out_masks, out_depth, out_instances, out_alpha, write_alpha, occlusion,
            )


def check_objects_inputs(
    bg_images, bg_depth, atlas, table, offset, threshold,
    out_images, out_masks, out_depth, out_instances, out_alpha,
) -> dict[str, int]:
    """Validate the arguments of a several-objects kernel; return the named sizes.

    As :func:`check_composite_inputs`, with ``table (M, 9) int64`` (one row per
    object, column :data:`kernels.placement.INSTANCE` its id), ``offset
    (B + 1,) int64`` (sample ``b``'s rows are ``offset[b]:offset[b + 1]``, at
    least one each, one background each) and ``out_instances (B, H, W) uint16``.
    """
    check_array(table, "table", np.int64, ["M", P.N_OBJECT_COLUMNS])
    check_array(offset, "offset", np.int64, ["B1"])
    t = np.asarray(table)
    m = len(t)

    def like(x: Any, dtype: Any) -> np.ndarray:  # a zero-byte stand-in of M samples: only its shape is checked
        return np.broadcast_to(np.zeros((), dtype), (m, *tuple(x.shape)[1:]))

    dims = check_composite_inputs(
        bg_images, bg_depth, atlas, np.ascontiguousarray(t[:, : P.N_COLUMNS]), threshold,
        like(out_images, np.uint8), like(out_masks, np.uint8), like(out_depth, np.uint16), None,
    )
    n = check_same_dims(
        [
            check_array(out_images, "out_images", np.uint8, ["B", "H", "W", 3]),
            check_array(out_masks, "out_masks", np.uint8, ["B", "H", "W"]),
            check_array(out_depth, "out_depth", np.uint16, ["B", "H", "W"]),
            check_array(out_instances, "out_instances", np.uint16, ["B", "H", "W"]),
        ]
        + ([] if out_alpha is None else [check_array(out_alpha, "out_alpha", np.uint8, ["B", "H", "W"])]),
        "composite objects",
    )["B"]
    o = np.asarray(offset)
    if len(o) != n + 1 or o[0] != 0 or o[-1] != len(t) or (np.diff(o) < 1).any():
        raise ValueError(f"offset must rise from 0 to {len(t)} by at least 1 per sample over {n} samples")
    if len(t) and ((t[:, P.INSTANCE] < 1) | (t[:, P.INSTANCE] > 0xFFFF)).any():
        raise ValueError("instance ids must be in 1..65535")
    if len(t) and (t[:, P.BG] != np.repeat(t[o[:-1], P.BG], np.diff(o))).any():
        raise ValueError("the objects of a sample must share its background")
    return dims


def composite_objects_batch(
    bg_images: np.ndarray,
    bg_depth: np.ndarray,
    atlas: np.ndarray,
    table: np.ndarray,
    offset: np.ndarray,
    threshold: int,
    out_images: np.ndarray,
    out_masks: np.ndarray,
    out_depth: np.ndarray,
    out_instances: np.ndarray,
    out_alpha: np.ndarray | None = None,
    occlusion: bool = False,
) -> None:
    """Composite samples of several objects each on the CPU (Numba, all cores).

    Args:
        bg_images, bg_depth, atlas, threshold, out_images, out_masks,
            out_depth, occlusion: as for :func:`composite_batch`.
        table: ``(M, 9) int64`` one row per object (:mod:`kernels.placement`),
            each sample's rows ordered far to near.
        offset: ``(B + 1,) int64`` sample ``b``'s rows: ``offset[b]:offset[b + 1]``.
        out_instances: ``(B, H, W) uint16`` id of the object that owns each
            mask pixel (the nearest above the threshold), 0 elsewhere (written).
        out_alpha: optional ``(B, H, W) uint8`` union coverage of the objects.
    """
    check_objects_inputs(
        bg_images, bg_depth, atlas, table, offset, threshold,
        out_images, out_masks, out_depth, out_instances, out_alpha,
    )
    write_alpha = out_alpha is not None
    if out_alpha is None:
        out_alpha = np.empty((0, 0, 0), np.uint8)
    _composite_objects_cpu(
        bg_images, bg_depth, atlas, table, offset, np.int32(threshold),
        out_images, out_masks, out_depth, out_instances, out_alpha, write_alpha, np.int32(occlusion),
    )


@numba.njit(cache=True, nogil=True)
def _instance_stats(instances, offset, visible, box):  # pragma: no cover - compiled by Numba
    n, height, width = instances.shape
    for b in range(n):
        for r in range(height):
            for c in range(width):
                i = instances[b, r, c]
                if i == 0:
                    continue
                o = offset[b] + i - 1
                if visible[o] == 0:
                    box[o, 0] = c
                    box[o, 1] = r
                    box[o, 2] = c
                    box[o, 3] = r
                else:
                    box[o, 0] = min(box[o, 0], c)
                    box[o, 2] = max(box[o, 2], c)
                    box[o, 3] = r
                visible[o] += 1


def instance_stats(instances: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Visible pixels and visible box of every object, from the instance maps.

    Args:
        instances: ``(B, H, W) uint16`` instance ids (0 = background).
        offset: ``(B + 1,) int64`` sample ``b``'s objects are ``offset[b]:offset[b + 1]``
            (instance id ``k`` is object ``offset[b] + k - 1``).

    Returns:
        ``visible (M,) int64`` pixel counts and ``box (M, 4) int32`` ``x, y, w, h``
        of the visible pixels (zeros where none is visible).
    """
    check_array(instances, "instances", np.uint16, ["B", "H", "W"])
    ids = np.ascontiguousarray(instances)
    o = np.asarray(offset, dtype=np.int64)
    if len(o) != len(ids) + 1 or (len(ids) and (ids.max(axis=(1, 2)) > np.diff(o)).any()):
        raise ValueError("offset must have B + 1 entries and cover every instance id")
    m = int(o[-1])
    visible = np.zeros(m, np.int64)
    corners = np.zeros((m, 4), np.int64)
    _instance_stats(ids, o, visible, corners)
    box = np.zeros((m, 4), np.int32)
    seen = visible > 0
    box[seen, 0] = corners[seen, 0]
    box[seen, 1] = corners[seen, 1]
    box[seen, 2] = corners[seen, 2] - corners[seen, 0] + 1
    box[seen, 3] = corners[seen, 3] - corners[seen, 1] + 1
    return visible, box
