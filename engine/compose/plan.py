"""The sample plan: sample ``i`` is a pure function of ``(seed, i)``.

Default layout (the original dataset): every background × every foreground ×
{plain, flipped} × ``positions`` placements. Index order is foreground
fastest, then background, then flip, then position::

    i = ((pos * n_flip + flip) * n_bg + bg) * n_fg + fg

so any prefix (``--limit``) mixes all foregrounds and many backgrounds. Scale
and position are drawn from a counter-based hash of ``(seed, placement)``,
where a placement is ``(pos, bg, fg)``: the plain and flipped samples of a
placement share scale and position. No state is carried from one sample to
the next, so any index range can be planned alone (resume, sharding across
processes and GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    foreground in output pixels, ``contact_row`` = its bottom row); ``flip`` is
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


class SamplePlan:
    """Addressable, deterministic plan of every sample of a store.

    Args:
        config: the generation config (seed, layout, scale range, output size).
        fg_sizes: ``(NF, 2) int64`` canonical foreground ``(height, width)``.
        n_backgrounds: number of backgrounds.
        first_ground_rows: ``(NB,) int64`` first row that sees ground per
            background, or ``None`` (no ground: only keep foregrounds inside).
    """

    def __init__(
        self,
        config: GenerateConfig,
        fg_sizes: np.ndarray,
        n_backgrounds: int,
        first_ground_rows: np.ndarray | None,
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

        H, W = self.height, self.width
        fg_h = self.fg_sizes[fg, 0].astype(np.float64)
        fg_w = self.fg_sizes[fg, 1].astype(np.float64)
        s = self.scale_min + uniform(self.seed, key, 1) * (self.scale_max - self.scale_min)
        h = np.clip(np.floor(s * H + 0.5), 1, H).astype(np.int64)
        # Keep the foreground inside: lower the height where its width would not fit.
        h = np.where(np.floor(h * fg_w / fg_h + 0.5) > W, np.maximum(1, np.floor(W * fg_h / fg_w)), h).astype(np.int64)
        w = np.clip(np.floor(h * fg_w / fg_h + 0.5), 1, W).astype(np.int64)

        x = np.minimum(np.floor(uniform(self.seed, key, 2) * (W - w + 1)), W - w).astype(np.int64)
        # Stand on the ground: the bottom row lies at or below the first ground row.
        lo = np.maximum(h - 1, self.first_ground_rows[bg])
        span = H - lo  # rows available for the bottom edge: lo .. H-1
        bottom = lo + np.minimum(np.floor(uniform(self.seed, key, 3) * span), span - 1).astype(np.int64)
        y = bottom - h + 1
        return Placements(
            bg=bg, fg=fg, flip=flip, x=x, y=y, h=h, w=w, scale=(h / H).astype(np.float32),
        )

    def shard_ranges(self, shard_size: int) -> list[tuple[int, int]]:
        """``[start, stop)`` of every shard of ``shard_size`` samples."""
        return [(s, min(s + shard_size, self.n_samples)) for s in range(0, self.n_samples, shard_size)]
