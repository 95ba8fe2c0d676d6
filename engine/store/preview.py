"""Contact sheets of a store: image | mask | depth (colour-mapped) per sample."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.errors import StoreError
from engine.store.zarr_store import inspect_store

# Turbo colour map (Google, Apache-2.0) as a 9-point piecewise-linear
# approximation: perceptually ordered, dark blue (far) → red (near).
_TURBO_KNOTS = np.array([
    [48, 18, 59], [70, 107, 227], [40, 187, 236], [50, 242, 152], [164, 252, 60],
    [237, 208, 58], [251, 128, 34], [210, 49, 5], [122, 4, 3],
], dtype=np.float64)


def colorize(values: np.ndarray) -> np.ndarray:
    """Map ``(H, W)`` floats in ``[0, 1]`` to ``(H, W, 3) uint8`` turbo colours."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * (len(_TURBO_KNOTS) - 1)
    lo = np.floor(v).astype(np.int64).clip(0, len(_TURBO_KNOTS) - 2)
    t = (v - lo)[..., None]
    rgb = _TURBO_KNOTS[lo] * (1 - t) + _TURBO_KNOTS[lo + 1] * t
    return np.floor(rgb + 0.5).astype(np.uint8)


UNKNOWN_RGB = (48, 48, 48)


def depth_to_rgb(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """``(H, W)`` metres → ``(H, W, 3) uint8``; log scale, near = red, far = blue,
    unknown depth (0 or not finite) dark grey."""
    d = depth.astype(np.float64)
    unknown = ~(np.isfinite(d) & (d > 0))
    d = np.clip(np.where(unknown, far, d), near, far)
    rgb = colorize(1.0 - (np.log(d) - math.log(near)) / max(math.log(far) - math.log(near), 1e-9))
    rgb[unknown] = UNKNOWN_RGB
    return rgb


def depth_range(depth: np.ndarray, low: float = 2.0, high: float = 98.0) -> tuple[float, float]:
    """Colour range of depth maps: ``(near, far)`` metres, the ``low``-th and
    ``high``-th percentiles of the valid (finite, > 0) depths of ``depth`` (any shape).

    Robust to a few extreme pixels, and follows the data: a 2–5 m room spans
    the whole colour map instead of a sliver of a fixed 0–80 m one. A flat map
    gets ±10% around its value; no valid depth at all, 1–10 m.
    """
    d = np.asarray(depth, dtype=np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        return 1.0, 10.0
    near, far = (float(v) for v in np.percentile(d, [low, high]))
    if far < near * 1.01:
        near, far = near / 1.1, far * 1.1
    return near, far


COLOUR_BAR_HEIGHT = 28


def colour_bar(near: float, far: float, width: int) -> Image.Image:
    """A ``width × COLOUR_BAR_HEIGHT`` RGB key of :func:`depth_to_rgb`: the colour
    ramp from ``near`` (left, red) to ``far`` (right, blue), log-spaced ticks in metres."""
    bar = Image.new("RGB", (width, COLOUR_BAR_HEIGHT), (24, 24, 24))
    x = np.arange(width) / max(width - 1, 1)
    ramp = depth_to_rgb((near * (far / near) ** x)[None, :], near, far)  # (1, width, 3)
    bar.paste(Image.fromarray(np.repeat(ramp, 10, axis=0)), (0, 2))
    draw = ImageDraw.Draw(bar)
    ticks = max(2, min(5, width // 70))  # labels about 40 px wide
    for k in range(ticks):
        t = k / (ticks - 1)
        label = f"{near * (far / near) ** t:.3g} m"
        xx = round(t * (width - 1))
        draw.line([xx, 12, xx, 15], fill=(220, 220, 220))
        tx = min(max(xx - 3 * len(label), 0), width - 6 * len(label))  # inside the bar
        draw.text((max(tx, 0), 15), label, fill=(220, 220, 220))
    return bar


def with_colour_bar(sheet: Image.Image, near: float, far: float) -> Image.Image:
    """``sheet`` with a :func:`colour_bar` of ``near``–``far`` metres below it."""
    out = Image.new("RGB", (sheet.width, sheet.height + COLOUR_BAR_HEIGHT), (24, 24, 24))
    out.paste(sheet, (0, 0))
    out.paste(colour_bar(near, far, sheet.width), (0, sheet.height))
    return out


def pick_samples(done_ranges: list[tuple[int, int]], n: int) -> np.ndarray:
    """``n`` sample indices spread evenly over the completed ranges (sorted)."""
    done = np.concatenate([np.arange(a, b) for a, b in done_ranges]) if done_ranges else np.empty(0, np.int64)
    if len(done) == 0:
        raise StoreError("the store has no completed samples yet")
    take = np.linspace(0, len(done) - 1, num=min(n, len(done))).round().astype(np.int64)
    return done[np.unique(take)]


def contact_sheet(path: str | Path, n: int = 16, tile: int | None = None) -> Image.Image:
    """Build a contact sheet of ``n`` completed samples of the store at ``path``.

    Each sample is a row triplet ``image | mask | depth``; triplets are laid in
    a grid that is roughly square. ``tile`` scales each tile to that height.
    Depth colours span the shown samples' own range (:func:`depth_range`),
    keyed by a colour bar at the bottom.
    """
    import zarr

    if n < 1:
        raise StoreError(f"--n must be at least 1, got {n}")
    info = inspect_store(path)
    attrs = info.attrs
    lay = attrs["layout"]
    shard = lay["shard_size"]
    ranges = [(k * shard, min((k + 1) * shard, lay["n_samples"])) for k in attrs["progress"]["shards_done"]]
    index = pick_samples(sorted(ranges), n)
    group = zarr.open_group(Path(path), mode="r")
    if "images" in group:
        images = group["images"].get_orthogonal_selection((index,))
    else:
        encoded = group["images_jpeg"].get_orthogonal_selection((index,))
        images = np.stack([np.asarray(Image.open(io.BytesIO(e)).convert("RGB")) for e in encoded])
    masks = group["masks"].get_orthogonal_selection((index,))
    depth = group["depth"].get_orthogonal_selection((index,)).astype(np.float32)
    near, far = depth_range(depth)
    height, width = images.shape[1:3]
    th = tile or height
    tw = max(1, round(width * th / height))
    label_h = 14
    cols = max(1, round(math.sqrt(len(index) / 3)))
    rows = -(-len(index) // cols)
    sheet = Image.new("RGB", (cols * 3 * tw, rows * (th + label_h)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(index):
        r, c = divmod(k, cols)
        x0, y0 = c * 3 * tw, r * (th + label_h)
        tiles = [images[k], np.repeat(masks[k][..., None], 3, axis=2), depth_to_rgb(depth[k], near, far)]
        for j, t in enumerate(tiles):
            im = Image.fromarray(t)
            if (th, tw) != (height, width):
                im = im.resize((tw, th), Image.Resampling.BILINEAR)
            sheet.paste(im, (x0 + j * tw, y0 + label_h))
        draw.text((x0 + 3, y0 + 1), f"#{i}  image | mask | depth", fill=(220, 220, 220))
    return with_colour_bar(sheet, near, far)
