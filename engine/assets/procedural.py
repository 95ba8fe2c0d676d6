"""Shared rules of the procedural built-in assets (streets and cars).

Nothing is downloaded or bundled; every asset is a pure function of
``(seed, index, size)``, drawn from its own random stream, so asset ``index``
never depends on how many others were made.
"""

from __future__ import annotations

import operator

import numpy as np

SCENE_SALT = 0xB6  # separates the scene stream of (seed, index) from the car one
CAR_SALT = 0xCA
MIN_SIZE = 8


def check_args(seed: int, index: int, **sizes: int) -> tuple[int, int]:
    """Validate the stream key and the sizes; return the key as plain ints."""
    try:
        seed = operator.index(seed)
        index = operator.index(index)
    except TypeError:
        raise TypeError(f"seed and index must be integers, got {seed!r} and {index!r}") from None
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    for name, value in sizes.items():
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer, got {value!r}") from None
        if value < MIN_SIZE:
            raise ValueError(f"{name} must be at least {MIN_SIZE} pixels, got {value}")
    return seed, index



def jitter_colour(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float) -> np.ndarray:
    """A colour near ``rgb`` (0-255 floats): overall brightness and per-channel tint vary."""
    base = np.asarray(rgb, dtype=np.float64)
    scale = rng.uniform(1.0 - amount, 1.0 + amount)
    tint = rng.uniform(1.0 - amount / 2, 1.0 + amount / 2, size=3)
    return np.clip(base * scale * tint, 0.0, 255.0).astype(np.float32)

