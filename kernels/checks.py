"""Named boundary checks for kernel inputs (Kornia's KORNIA_CHECK_* idea).

Kernel inputs are built by the engine, so a failed check here is a programming
error: they raise ``ValueError``/``TypeError`` with a message naming the
argument, never ``assert`` (which ``python -O`` removes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def check_array(
    x: Any, name: str, dtype: Any, shape: Sequence[int | str]
) -> dict[str, int]:
    """Check an array's dtype and shape; return the sizes bound to named dims.

    Args:
        x: anything with ``.dtype`` and ``.shape`` (numpy, torch, Numba device arrays).
        name: argument name, for the message.
        dtype: required numpy dtype.
        shape: one entry per dimension: an int for an exact size, a str naming
            a dimension (returned in the dict), or ``"*"`` for any size.

    Returns:
        ``{dim name: size}`` for the named dimensions.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if np.dtype(str(x.dtype).replace("torch.", "")) != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {x.dtype}")
    if len(x.shape) != len(shape):
        raise ValueError(
            f"{name} must have shape ({', '.join(map(str, shape))}), got {tuple(x.shape)}"
        )
    dims: dict[str, int] = {}
    for size, want in zip(x.shape, shape):
        if isinstance(want, int) and size != want:
            raise ValueError(
                f"{name} must have shape ({', '.join(map(str, shape))}), got {tuple(x.shape)}"
            )
        if isinstance(want, str) and want != "*":
            dims[want] = int(size)
    return dims


def check_same_dims(bound: Sequence[dict[str, int]], context: str) -> dict[str, int]:
    """Check that dims named in several ``check_array`` results agree; merge them."""
    merged: dict[str, int] = {}
    for dims in bound:
        for key, size in dims.items():
            if key in merged and merged[key] != size:
                raise ValueError(f"{context}: dimension {key} is {merged[key]} and {size}")
            merged[key] = size
    return merged
