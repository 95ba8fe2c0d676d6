"""Which backgrounds a split by background holds out: one rule, shared by the
store's loaders (``engine.learn``) and online compositing (``engine.compose``),
so a network trained either way is judged on the same unseen scenes."""

from __future__ import annotations

import numpy as np


def held_out_backgrounds(n_backgrounds: int, fraction: float, seed: int) -> np.ndarray:
    """``(k,) int64`` sorted backgrounds held out for validation: ``round(fraction * n)``
    (at least 1, at most ``n - 1``) from a permutation seeded by ``seed``.

    Raises:
        ValueError: fewer than two backgrounds (the callers say whose).
    """
    if n_backgrounds < 2:
        raise ValueError("a split by background needs at least two backgrounds")
    n_val = min(n_backgrounds - 1, max(1, round(fraction * n_backgrounds)))
    order = np.random.default_rng([seed, 0x5E1]).permutation(n_backgrounds)
    return np.sort(order[:n_val]).astype(np.int64)
