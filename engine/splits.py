"""Which backgrounds a split by background holds out: one rule, shared by the
store's loaders (``engine.learn``: train and evaluate), ``export --split`` and
online compositing (``engine.compose``), so a network trained either way is
judged on the same unseen scenes.

The rule draws among the backgrounds the used samples hold (a store's
completed samples; an online plan's samples), not among every background of
the inputs: a store made with ``--limit`` or not yet complete may hold a few of
them only, and held-out backgrounds it does not hold would leave the
validation split empty. Where the samples hold every background (every
complete store of the default grid, and any whose prefix reaches every
background) the draw is the one of before, bit for bit: a permutation of the
held backgrounds seeded by ``seed``, its first ``round(fraction · n)`` held out.
Train records the held-out backgrounds in its checkpoint (``val_backgrounds``)
and evaluate uses those, so a checkpoint is judged on the split it was trained
with even if its store has grown since.
"""

from __future__ import annotations

import numpy as np


def held_out_among(backgrounds: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``(k,) int64`` sorted backgrounds held out for validation, drawn among ``backgrounds``.

    Args:
        backgrounds: ``(n,)`` integer indices of the backgrounds the used samples
            hold, any order, repeats allowed (e.g. ``meta/bg_index`` of them).
        fraction: share held out: ``round(fraction · n)``, at least 1, at most ``n - 1``.
        seed: seed of the permutation.

    Raises:
        ValueError: fewer than two distinct backgrounds (the callers say whose, and what to do).
    """
    present = np.unique(np.asarray(backgrounds, dtype=np.int64))  # (n,) sorted
    n = len(present)
    if n < 2:
        raise ValueError(f"a split by background needs at least two backgrounds, the samples hold {n}")
    n_val = min(n - 1, max(1, round(fraction * n)))
    order = np.random.default_rng([seed, 0x5E1]).permutation(n)
    return np.sort(present[order[:n_val]]).astype(np.int64)


def held_out_backgrounds(n_backgrounds: int, fraction: float, seed: int) -> np.ndarray:
    """``(k,) int64`` sorted held-out backgrounds when the samples hold all of
    ``0 .. n_backgrounds - 1`` (:func:`held_out_among` of them).

    Raises:
        ValueError: fewer than two backgrounds (the callers say whose).
    """
    return held_out_among(np.arange(max(n_backgrounds, 0), dtype=np.int64), fraction, seed)


def too_few_backgrounds(n_samples: int, n_foregrounds: int, present: int) -> str:
    """What to do when ``n_samples`` used samples hold ``present < 2`` backgrounds:
    the plan's index runs foreground fastest, then background, so a prefix of
    ``n_foregrounds + 1`` samples already holds two."""
    return (f"its {n_samples:,} used samples hold {present} background(s), and a split by background needs "
            f"at least two: generate with a larger --limit (at least {n_foregrounds + 1:,}: the plan goes "
            "through every foreground on one background before the next) or more backgrounds, "
            "or finish the store with generate --resume")
