"""The sample plan: sample ``i`` is a pure function of ``(seed, i)``.

Default layout (the original dataset): every background × every foreground ×
{plain, flipped} × ``positions`` placements. Index order is foreground
fastest, then background, then flip, then position::

    i = ((pos * n_flip + flip) * n_bg + bg) * n_fg + fg

so any prefix (``--limit``) mixes all foregrounds and many backgrounds. Scale
and position are drawn from a counter-based hash of ``(seed, placement)``,
where a placement is ``(pos, bg, fg)``: the plain and flipped samples of a
placement share scale and position.

Two rules draw them. ``uniform`` (the original dataset's): a height in the
scale range, then a column and a standing row independently. ``perspective``
(where the background has a ground plane): a standing row, and the height the
object has there, ``h = focal · H_m / Z(row)`` with ``Z`` the ground's depth at
that row and ``H_m`` the object's height in metres times ``1 ± jitter``. As
``Z = focal · camera_height / (row + ½ − horizon)``, ``h = H_m · (row + ½ −
horizon) / camera_height``: the rows are drawn among those that give a height
inside the scale range and keep the object inside the image, so the scale
range still bounds the sizes, and a full-size car never stands at the horizon. No state is carried from one sample to
the next, so any index range can be planned alone (resume, sharding across
processes and GPUs).

Truncation (``--truncation F``): an object may reach beyond the image border
by up to ``⌊F·w⌋`` columns (left or right) and ``⌊F·h⌋`` rows (top; under
``uniform`` the bottom too). Only the range the column and standing row are
drawn from widens, from the same draws, so ``F = 0`` gives exactly the plans
of before; sizes keep their rules. Under ``perspective`` the standing row stays
inside the image (its ground depth sets the size), so the bottom is never cut.

Several objects per image (``--objects-per-image MIN MAX``,
:meth:`SamplePlan.objects_at`): object 0 is the sample's placement above;
the sample's count and each extra object's foreground, flip and three
placement draws come from streams 63 and up of ``(seed, index)``, so they
never reuse the grid's streams (1..3 of the placement key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.assets.camera import GroundPlane
from engine.config import GenerateConfig
from engine.errors import ConfigError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective 64-bit mix. ``uint64`` in, ``uint64`` out."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(seed: int, key: np.ndarray, stream: int) -> np.ndarray:
    """Uniform floats in ``[0, 1)`` from ``(seed, key, stream)``: ``float64``, shape of ``key``."""
    with np.errstate(over="ignore"):
        base = splitmix64(np.array([seed], dtype=np.uint64))[0]
        h = splitmix64(splitmix64(base + np.asarray(key, dtype=np.uint64)) + np.uint64(stream))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class Placements:
    """Where and how each sample of a range places its foreground.

    All arrays have shape ``(B,)``: ``bg``, ``fg``, ``x``, ``y``, ``h``, ``w``,
    ``contact_row`` are ``int64`` (``x, y`` = top-left of the resized
    foreground in output pixels, negative or with ``x + w > W`` where
    ``--truncation`` lets the border cut it; ``contact_row`` = its bottom row); ``flip`` is
    ``uint8`` 0/1; ``scale`` is ``float32`` ``h / H``.
    """

    bg: np.ndarray
    fg: np.ndarray
    flip: np.ndarray
    x: np.ndarray
    y: np.ndarray
    h: np.ndarray
    w: np.ndarray
    scale: np.ndarray

    @property
    def contact_row(self) -> np.ndarray:
        return self.y + self.h - 1

    def __len__(self) -> int:
        return len(self.bg)


#: draws of an extra object before it is dropped for overlapping the others
OVERLAP_TRIES = 8


@dataclass(frozen=True)
class ObjectPlacements:
    """Every object of a range of samples (``--objects-per-image``).

    Attributes:
        samples: ``(B,)`` each sample's object 0 (its grid placement).
        objects: ``(M,)`` every kept object, sample by sample, in object order
            (object 0 first); ``objects.bg`` is its sample's background.
        offset: ``(B + 1,) int64``: sample ``b``'s objects are rows
            ``offset[b]:offset[b + 1]`` of ``objects``; its instance ids are
            ``1 ..`` its count, in that order.
    """

    samples: Placements
    objects: Placements
    offset: np.ndarray

    @property
    def sample_of(self) -> np.ndarray:
        """``(M,) int64`` the batch row of each object."""
        return np.repeat(np.arange(len(self.offset) - 1, dtype=np.int64), np.diff(self.offset))

    @property
    def instance_id(self) -> np.ndarray:
        """``(M,) int64`` each object's instance id: its index in its sample + 1."""
        return np.arange(self.offset[-1], dtype=np.int64) - self.offset[:-1][self.sample_of] + 1

    def __len__(self) -> int:
        return len(self.samples)


def truncation_allowance(fraction: float, size: np.ndarray) -> np.ndarray:
    """``int64`` pixels of an object of ``size`` px that may lie beyond the border: ``⌊fraction · size⌋``.

    A hair is added before the floor so that ``0.3 · 10`` allows 3 pixels,
    as the fraction ``3 / 10`` is ``0.3``; 0 for ``fraction`` 0.
    """
    return np.floor(fraction * np.asarray(size, dtype=np.float64) + 1e-9).astype(np.int64)


def _clip_box(x: np.ndarray, y: np.ndarray, h: np.ndarray, w: np.ndarray,
              height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``(x, y, h, w)`` clipped to a ``height × width`` image, as ``x0, y0, x1, y1`` (end exclusive)."""
    return np.maximum(x, 0), np.maximum(y, 0), np.minimum(x + w, width), np.minimum(y + h, height)


def _overlap(p: Placements, other: dict[str, np.ndarray], height: int, width: int) -> np.ndarray:
    """``(B,) float64`` intersection of ``p``'s boxes with ``other``'s, over the smaller box's
    area, every box clipped to the image first (a truncated object's hidden part overlaps nothing)."""
    ax0, ay0, ax1, ay1 = _clip_box(p.x, p.y, p.h, p.w, height, width)
    bx0, by0, bx1, by1 = _clip_box(other["x"], other["y"], other["h"], other["w"], height, width)
    ix = np.minimum(ax1, bx1) - np.maximum(ax0, bx0)
    iy = np.minimum(ay1, by1) - np.maximum(ay0, by0)
    inter = np.maximum(ix, 0) * np.maximum(iy, 0)
    smaller = np.minimum((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
    return inter / np.maximum(smaller, 1)


class SamplePlan:
    """Addressable, deterministic plan of every sample of a store.

    Args:
        config: the generation config (seed, layout, scale range, output size).
        fg_sizes: ``(NF, 2) int64`` canonical foreground ``(height, width)``.
        n_backgrounds: number of backgrounds.
        first_ground_rows: ``(NB,) int64`` first row that sees ground per
            background, or ``None`` (no ground: only keep foregrounds inside).
        grounds: the backgrounds' cameras over flat ground, one per
            background, or ``None``; ``config.placement`` ``perspective``
            needs them, ``auto`` uses them when given.
        fg_heights: ``(NF,) float64`` real height of each foreground in metres
            (perspective), or ``None``: ``config.object_height`` for all.

    Raises:
        ConfigError: ``--placement perspective`` without ground planes.
    """

    def __init__(
        self,
        config: GenerateConfig,
        fg_sizes: np.ndarray,
        n_backgrounds: int,
        first_ground_rows: np.ndarray | None,
        grounds: Sequence[GroundPlane] | None = None,
        fg_heights: np.ndarray | None = None,
    ) -> None:
        self.seed = config.seed
        self.height, self.width = config.height, config.width
        self.n_bg = n_backgrounds
        self.n_fg = len(fg_sizes)
        self.n_flip = 2 if config.flip else 1
        self.positions = config.positions
        self.scale_min, self.scale_max = config.scale_min, config.scale_max
        self.fg_sizes = np.asarray(fg_sizes, dtype=np.int64)
        if first_ground_rows is None:
            first_ground_rows = np.zeros(n_backgrounds, np.int64)
        self.first_ground_rows = np.asarray(first_ground_rows, dtype=np.int64)
        if len(self.first_ground_rows) != n_backgrounds:
            raise ValueError("first_ground_rows needs one entry per background")
        if config.placement == "perspective" and grounds is None:
            raise ConfigError("--placement perspective needs backgrounds with a ground plane: the built-in scenes, "
                              "or --horizon (with --camera-height, --focal) for your own; or use --placement uniform")
        self.perspective = grounds is not None and config.placement != "uniform"
        self.placement = "perspective" if self.perspective else "uniform"
        if self.perspective:
            if len(grounds) != n_backgrounds:
                raise ValueError("grounds needs one entry per background")
            self.horizon = np.array([g.horizon for g in grounds], dtype=np.float64)
            self.camera_height = np.array([g.camera_height for g in grounds], dtype=np.float64)
            self.height_jitter = config.height_jitter
            self.fg_heights = (np.full(self.n_fg, config.object_height) if fg_heights is None
                               else np.asarray(fg_heights, dtype=np.float64))
            if self.fg_heights.shape != (self.n_fg,):
                raise ValueError("fg_heights needs one entry per foreground")
        self.objects_min, self.objects_max = config.objects_min, config.objects_max
        self.max_overlap = config.max_overlap
        self.truncation = config.truncation
        grid = self.n_bg * self.n_fg * self.n_flip * self.positions
        self.n_grid = grid
        self.n_samples = grid if config.limit is None else min(grid, config.limit)
        if self.n_samples < 1:
            raise ConfigError("the plan is empty")

    def placements(self, start: int, stop: int) -> Placements:
        """Placements of samples ``start ≤ i < stop`` (vectorised, no per-sample Python)."""
        if not 0 <= start <= stop <= self.n_samples:
            raise ValueError(f"range [{start}, {stop}) outside the plan of {self.n_samples} samples")
        return self.placements_at(np.arange(start, stop, dtype=np.int64))

    def placements_at(self, indices: np.ndarray) -> Placements:
        """Placements of samples ``indices`` (``(B,)`` integers, any order, repeats
        allowed), in that order: row ``j`` is sample ``indices[j]``, the same as in
        any range holding it (each sample is a pure function of ``(seed, index)``).

        Raises:
            ValueError: an index outside ``[0, n_samples)``, or not a 1-D integer array.
        """
        i = np.asarray(indices)
        if i.ndim != 1 or (i.size and not np.issubdtype(i.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D integer array, got shape {i.shape} of {i.dtype}")
        i = i.astype(np.int64)
        if i.size and (i.min() < 0 or i.max() >= self.n_samples):
            raise ValueError(f"indices {i.min()}..{i.max()} outside the plan of {self.n_samples} samples")
        fg = i % self.n_fg
        t = i // self.n_fg
        bg = t % self.n_bg
        t //= self.n_bg
        flip = (t % self.n_flip).astype(np.uint8)
        pos = t // self.n_flip
        key = (pos * self.n_bg + bg) * self.n_fg + fg  # shared by plain and flipped

        u = [uniform(self.seed, key, stream) for stream in (1, 2, 3)]
        return self._place(bg, fg, flip, *u)

    def _place(self, bg: np.ndarray, fg: np.ndarray, flip: np.ndarray,
               u1: np.ndarray, u2: np.ndarray, u3: np.ndarray) -> Placements:
        """Placements of ``fg`` on ``bg`` from three uniform draws per row (size, column, row)."""
        if self.perspective:
            return self._perspective(bg, fg, flip, u1, u2, u3)
        H, W = self.height, self.width
        fg_h = self.fg_sizes[fg, 0].astype(np.float64)
        fg_w = self.fg_sizes[fg, 1].astype(np.float64)
        s = self.scale_min + u1 * (self.scale_max - self.scale_min)
        h = np.clip(np.floor(s * H + 0.5), 1, H).astype(np.int64)
        # Keep the foreground inside: lower the height where its width would not fit.
        h = np.where(np.floor(h * fg_w / fg_h + 0.5) > W, np.maximum(1, np.floor(W * fg_h / fg_w)), h).astype(np.int64)
        w = np.clip(np.floor(h * fg_w / fg_h + 0.5), 1, W).astype(np.int64)

        x = self._column(w, u2)
        # Stand on the ground: the bottom row lies at or below the first ground row;
        # truncation lets the top rise above row 0 and the bottom sink below row H-1.
        cut = truncation_allowance(self.truncation, h)
        lo = np.maximum(h - 1 - cut, self.first_ground_rows[bg])
        span = H + cut - lo  # rows available for the bottom edge: lo .. H-1+cut
        bottom = lo + np.minimum(np.floor(u3 * span), span - 1).astype(np.int64)
        y = bottom - h + 1
        return Placements(
            bg=bg, fg=fg, flip=flip, x=x, y=y, h=h, w=w, scale=(h / H).astype(np.float32),
        )

    def _perspective(self, bg: np.ndarray, fg: np.ndarray, flip: np.ndarray,
                     u1: np.ndarray, u2: np.ndarray, u3: np.ndarray) -> Placements:
        """Placements by the perspective rule (module docstring), vectorised."""
        H, W = self.height, self.width
        fg_h = self.fg_sizes[fg, 0].astype(np.float64)
        fg_w = self.fg_sizes[fg, 1].astype(np.float64)
        horizon, cam = self.horizon[bg], self.camera_height[bg]
        # pixels of height per row below the horizon: h = k * (row + 0.5 - horizon)
        k = self.fg_heights[fg] * (1 + self.height_jitter * (2 * u1 - 1)) / cam
        h_lo = np.maximum(1.0, self.scale_min * H)
        h_hi = np.minimum(self.scale_max * H, np.floor(W * fg_h / fg_w))  # the width must fit too
        # rows whose height lies in [h_lo, h_hi], that see the ground, and keep the top inside
        # (h <= row + 1), or with truncation at most a fraction F above row 0 ((1 - F) h <= row + 1)
        lo = np.maximum(np.ceil(horizon - 0.5 + h_lo / k), self.first_ground_rows[bg])
        hi = np.minimum(np.floor(horizon - 0.5 + h_hi / k), H - 1)
        kt = k * (1.0 - self.truncation)  # == k for F = 0: the plans of before, bit for bit
        hi = np.where(kt > 1, np.minimum(hi, np.floor((1 + kt * (horizon - 0.5)) / np.maximum(kt - 1, 1e-12))), hi)
        # no such row (a scale range the camera cannot give): the nearest end, height clamped below
        lo = np.clip(lo, 0, H - 1)
        hi = np.clip(np.maximum(hi, lo), 0, H - 1)
        span = hi - lo + 1
        bottom = (lo + np.minimum(np.floor(u3 * span), span - 1)).astype(np.int64)
        h = np.floor(k * (bottom + 0.5 - horizon) + 0.5)
        h = np.clip(h, 1, np.minimum(np.minimum(self._tallest(bottom), H), np.maximum(1, np.floor(W * fg_h / fg_w))))
        h = h.astype(np.int64)
        w = np.clip(np.floor(h * fg_w / fg_h + 0.5), 1, W).astype(np.int64)
        x = self._column(w, u2)
        y = bottom - h + 1
        return Placements(bg=bg, fg=fg, flip=flip, x=x, y=y, h=h, w=w, scale=(h / H).astype(np.float32))

    def _column(self, w: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``(B,) int64`` left columns of objects ``w`` wide from draws ``u``: inside the
        image, or reaching beyond either side by at most :func:`truncation_allowance`."""
        cut = truncation_allowance(self.truncation, w)
        span = self.width - w + 1 + 2 * cut  # columns -cut .. W-w+cut
        return (np.minimum(np.floor(u * span), span - 1) - cut).astype(np.int64)

    def _tallest(self, bottom: np.ndarray) -> np.ndarray:
        """``(B,) float64`` the tallest height standing on row ``bottom`` whose part above
        row 0 stays within :func:`truncation_allowance` (``bottom + 1`` with none)."""
        if self.truncation == 0:
            return (bottom + 1).astype(np.float64)
        h = np.floor((bottom + 1) / (1.0 - self.truncation))
        # h - ⌊F h⌋ <= bottom + 1 exactly (the division may round up by one)
        for _ in range(2):
            h = np.where(h - truncation_allowance(self.truncation, h) > bottom + 1, h - 1, h)
        return h

    def objects(self, start: int, stop: int) -> ObjectPlacements:
        """Every object of samples ``start ≤ i < stop`` (see :meth:`objects_at`)."""
        if not 0 <= start <= stop <= self.n_samples:
            raise ValueError(f"range [{start}, {stop}) outside the plan of {self.n_samples} samples")
        return self.objects_at(np.arange(start, stop, dtype=np.int64))

    def objects_at(self, indices: np.ndarray) -> ObjectPlacements:
        """The objects of samples ``indices`` (``--objects-per-image``), sample by sample.

        Object 0 of a sample is its grid placement (:meth:`placements_at`).
        The sample draws its count ``n`` in ``[objects_min, objects_max]``;
        extra object ``j`` draws its foreground, flip and placement (same rule)
        from streams of ``(seed, index)`` of its own. Its box may overlap
        each box kept before it by at most ``max_overlap`` of the smaller box
        (both clipped to the image):
        else it is re-drawn (up to :data:`OVERLAP_TRIES` draws, each from its
        own streams), and dropped when none fits. Each sample depends only on
        ``(seed, index)``.
        """
        first = self.placements_at(indices)
        i = np.asarray(indices).astype(np.int64)
        B, K = len(i), self.objects_max
        count = self.objects_min + np.minimum(
            np.floor(uniform(self.seed, i, 63) * (K - self.objects_min + 1)), K - self.objects_min).astype(np.int64)
        cols = ("bg", "fg", "flip", "x", "y", "h", "w", "scale")
        table = {name: np.zeros((B, K), getattr(first, name).dtype) for name in cols}
        kept = np.zeros((B, K), bool)
        for name in cols:
            table[name][:, 0] = getattr(first, name)
        kept[:, 0] = True
        for j in range(1, K):
            want = count > j
            for attempt in range(OVERLAP_TRIES):
                rows = np.flatnonzero(want & ~kept[:, j])
                if rows.size == 0:
                    break
                base = 64 + (j * OVERLAP_TRIES + attempt) * 8
                key = i[rows]
                fg = np.minimum(np.floor(uniform(self.seed, key, base) * self.n_fg), self.n_fg - 1).astype(np.int64)
                flip = ((uniform(self.seed, key, base + 1) < 0.5) & (self.n_flip == 2)).astype(np.uint8)
                u = [uniform(self.seed, key, base + s) for s in (2, 3, 4)]
                p = self._place(first.bg[rows], fg, flip, *u)
                ok = np.ones(rows.size, bool)
                for other in range(j):
                    overlap = _overlap(p, {n: table[n][rows, other] for n in ("x", "y", "h", "w")},
                                       self.height, self.width)
                    ok &= ~kept[rows, other] | (overlap <= self.max_overlap)
                good = rows[ok]
                for name in cols:
                    table[name][good, j] = getattr(p, name)[ok]
                kept[good, j] = True
        flat = kept.reshape(-1)
        objects = Placements(**{name: table[name].reshape(-1)[flat] for name in cols})
        per_sample = kept.sum(axis=1)
        offset = np.zeros(B + 1, np.int64)
        np.cumsum(per_sample, out=offset[1:])
        return ObjectPlacements(samples=first, objects=objects, offset=offset)

    def shard_ranges(self, shard_size: int) -> list[tuple[int, int]]:
        """``[start, stop)`` of every shard of ``shard_size`` samples."""
        return [(s, min(s + shard_size, self.n_samples)) for s in range(0, self.n_samples, shard_size)]


def foreground_heights(
    config: GenerateConfig, names: Sequence[str], from_file: Sequence[tuple[str, float]] = (),
) -> np.ndarray:
    """``(NF,) float64`` metres per foreground: ``config.object_heights`` by file
    or category (:func:`~engine.assets.images.category_of` of its recorded name),
    then ``from_file`` (the entries of ``--fg``'s heights file) likewise, else
    ``config.object_height`` (see :mod:`engine.assets.heights`).

    Raises:
        ConfigError: a key names no foreground and no category.
    """
    from engine.assets.heights import HEIGHTS_FILE, resolve_heights

    source = HEIGHTS_FILE if config.fg_dir is None else f"{config.fg_dir}/{HEIGHTS_FILE}"
    return resolve_heights(names, config.object_height, config.object_heights, from_file, source)


def plan_for(config: GenerateConfig, assets: Any, depth: Any) -> SamplePlan:
    """The plan of ``config`` over ``assets`` (an :class:`~engine.assets.images.AssetSet`)
    and a depth source (anything with ``first_ground_rows()`` and a ``grounds``
    attribute, e.g. :mod:`engine.compose.depth`'s): what ``generate``, online
    compositing and the benchmarks all plan with."""
    from_file = getattr(assets, "heights", ())
    heights = (foreground_heights(config, [f.name for f in assets.fg_files], from_file)
               if config.object_heights or from_file else None)
    return SamplePlan(config, assets.fg_sizes, len(assets.bg_images), depth.first_ground_rows(),
                      getattr(depth, "grounds", None), fg_heights=heights)
