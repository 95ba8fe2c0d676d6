"""Contact sheets of a store: image | mask | depth (colour-mapped) per sample."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.errors import StoreError
from engine.store.verify import StoreShards
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


def check_sheet_path(path: str | Path) -> None:
    """Refuse, before any work, an output file whose extension names no image format
    Pillow writes (``p4``, ``sheet.xyz``): the extension chooses the format.

    Raises:
        ConfigError: no or an unknown extension.
    """
    from engine.errors import ConfigError

    Image.init()
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        what = "has no extension" if not suffix else f"has the extension {suffix}, which names no image format"
        raise ConfigError(f"--out {path} {what}: the extension chooses the format, e.g. "
                          f"--out {Path(path).with_suffix('.png')} (or .jpg, .webp)")


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


#: a contact sheet holds at most this many pixels (48 MB as RGB); more samples
#: than fit are not drawn (``--n`` 100000 once took 24 GB and the OOM killer)
MAX_SHEET_PIXELS = 16_000_000
#: and reads at most this many store pixels (about 10 bytes each once decoded)
MAX_READ_PIXELS = 32_000_000
LABEL_HEIGHT = 14


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


def pick_covering(done: np.ndarray, bg: np.ndarray, fg: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` of the ``done`` sample indices (sorted) that show every background and
    foreground: each pick prefers a sample whose background and foreground the
    sheet lacks, so once ``n >= max(n_bg, n_fg)`` all appear (a fixed stride lines
    up with the plan order and misses some); after a full round it starts again.

    Args:
        done: ``(M,) int`` completed sample indices.
        bg, fg: ``(M,) int`` their background and foreground indices.
        n: samples wanted (at most ``M`` are returned).
    """
    if len(done) == 0:
        raise StoreError("the store has no completed samples yet")
    rng = np.random.default_rng(seed)  # ties broken at random: a spread of positions and flips
    seen_bg = np.zeros(int(bg.max()) + 1, bool)
    seen_fg = np.zeros(int(fg.max()) + 1, bool)
    present_bg, present_fg = np.unique(bg), np.unique(fg)
    free = np.ones(len(done), bool)
    chosen = []
    for _ in range(min(n, len(done))):
        if seen_bg[present_bg].all():
            seen_bg[:] = False
        if seen_fg[present_fg].all():
            seen_fg[:] = False
        score = np.where(free, (~seen_bg[bg]).astype(np.int8) + (~seen_fg[fg]), -1)
        k = int(rng.choice(np.flatnonzero(score == score.max())))
        free[k] = False
        seen_bg[bg[k]] = seen_fg[fg[k]] = True
        chosen.append(k)
    return np.sort(done[chosen])


def sheet_capacity(tile_height: int, tile_width: int, store_pixels: int, tiles: int = 3) -> int:
    """How many samples of ``tiles`` tiles (``image | mask | depth``, ...) of this
    tile size fit in :data:`MAX_SHEET_PIXELS`, reading samples of ``store_pixels``
    (H*W) each within :data:`MAX_READ_PIXELS` (at least one).

    Raises:
        StoreError: not even one fits (``--tile`` too large).
    """
    per_sample = tiles * tile_width * (tile_height + LABEL_HEIGHT)
    if per_sample > MAX_SHEET_PIXELS:
        raise StoreError(f"--tile {tile_height}: one sample would be {per_sample:,} pixels, "
                         f"more than a sheet's {MAX_SHEET_PIXELS:,}; use a smaller --tile")
    return max(1, min(MAX_SHEET_PIXELS // per_sample, MAX_READ_PIXELS // store_pixels))


def contact_sheet(path: str | Path, n: int = 16, tile: int | None = None) -> Image.Image:
    """Build a contact sheet of ``n`` completed samples of the store at ``path``.

    The samples show every background and foreground when ``n`` allows
    (:func:`pick_covering`); ``n`` is capped so the sheet and the samples read
    stay within :data:`MAX_SHEET_PIXELS` and :data:`MAX_READ_PIXELS`
    (``sheet.info["samples"]`` says how many were drawn). Each sample is a row triplet ``image | mask | depth``
    (plus ``| instances``, one colour per object, for stores of several objects per image, and ``| alpha``,
    grey, for stores with ``--save-alpha``); the samples are laid in
    a grid that is roughly square. ``tile`` scales each tile to that height.
    Depth colours span the shown samples' own range (:func:`depth_range`),
    keyed by a colour bar at the bottom.
    """
    import zarr

    if n < 1:
        raise StoreError(f"--n must be at least 1, got {n}")
    if tile is not None and tile < 1:
        raise StoreError(f"--tile must be at least 1, got {tile}")
    info = inspect_store(path)
    attrs = info.attrs
    lay = attrs["layout"]
    shard = lay["shard_size"]
    ranges = [(k * shard, min((k + 1) * shard, lay["n_samples"])) for k in attrs["progress"]["shards_done"]]
    th0 = tile or lay["height"]
    tw0 = max(1, round(lay["width"] * th0 / lay["height"]))
    arrays = lay.get("data_arrays", ())
    n = min(n, sheet_capacity(th0, tw0, lay["height"] * lay["width"], 3 + ("instances" in arrays) + ("alpha" in arrays)))
    group = zarr.open_group(Path(path), mode="r")
    shards = StoreShards(path, attrs)  # a done shard's missing or damaged file is an error, not black tiles
    index = _pick(group, sorted(ranges), n, shards)

    def read(name: str) -> np.ndarray:
        return shards.guard(name, index // shard, lambda: group[name].get_orthogonal_selection((index,)))

    if "images" in group:
        images = read("images")
    else:
        def decode() -> np.ndarray:
            encoded = group["images_jpeg"].get_orthogonal_selection((index,))
            return np.stack([np.asarray(Image.open(io.BytesIO(e)).convert("RGB")) for e in encoded])

        images = shards.guard("images_jpeg", index // shard, decode)
    masks = read("masks")
    depth = read("depth").astype(np.float32)
    instances = read("instances") if "instances" in group else None  # several objects per image
    alpha = read("alpha") if "alpha" in group else None  # --save-alpha: soft (union) coverage
    near, far = depth_range(depth)
    height, width = images.shape[1:3]
    th = tile or height
    tw = max(1, round(width * th / height))
    label_h = LABEL_HEIGHT
    per = 3 + (instances is not None) + (alpha is not None)  # tiles per sample
    cols = max(1, round(math.sqrt(len(index) / per)))
    rows = -(-len(index) // cols)
    sheet = Image.new("RGB", (cols * per * tw, rows * (th + label_h)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(index):
        r, c = divmod(k, cols)
        x0, y0 = c * per * tw, r * (th + label_h)
        tiles = [images[k], np.repeat(masks[k][..., None], 3, axis=2), depth_to_rgb(depth[k], near, far)]
        if instances is not None:
            tiles.append(instance_colours(instances[k]))
        if alpha is not None:
            tiles.append(np.repeat(alpha[k][..., None], 3, axis=2))
        for j, t in enumerate(tiles):
            im = Image.fromarray(t)
            if (th, tw) != (height, width):
                # ids are labels: never blend two into a third colour
                nearest = j == 3 and instances is not None
                im = im.resize((tw, th), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)
            sheet.paste(im, (x0 + j * tw, y0 + label_h))
        label = ("image | mask | depth" + (" | instances" if instances is not None else "")
                 + (" | alpha" if alpha is not None else ""))
        draw.text((x0 + 3, y0 + 1), f"#{i}  {label}", fill=(220, 220, 220))
    sheet = with_colour_bar(sheet, near, far)
    sheet.info["samples"] = len(index)  # may be fewer than asked: the sheet's size is capped
    return sheet


#: colours of instance ids 1, 2, ... (cycling); id 0 (background) is black
INSTANCE_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                             [145, 30, 180], [70, 240, 240], [240, 50, 230]], np.uint8)


def instance_colours(ids: np.ndarray) -> np.ndarray:
    """``(H, W) uint16`` instance ids → ``(H, W, 3) uint8`` one colour per id, black for 0."""
    out = INSTANCE_PALETTE[(ids.astype(np.int64) - 1) % len(INSTANCE_PALETTE)]
    out[ids == 0] = 0
    return out


def _pick(group: object, ranges: list[tuple[int, int]], n: int, shards: StoreShards) -> np.ndarray:
    """Up to ``n`` completed samples covering every background and foreground
    (from ``meta/``), or evenly spread ones when the store has no ``meta/``."""
    if "meta/bg_index" not in shards.whole_names:  # a store without meta/ (the store records what it has)
        return pick_samples(ranges, n)
    done = np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.empty(0, np.int64)
    if len(done) == 0:
        raise StoreError("the store has no completed samples yet")
    bg_all, fg_all = shards.read_array("meta/bg_index"), shards.read_array("meta/fg_index")
    bg = np.concatenate([bg_all[a:b] for a, b in ranges])
    fg = np.concatenate([fg_all[a:b] for a, b in ranges])
    return pick_covering(done, bg, fg, n)
