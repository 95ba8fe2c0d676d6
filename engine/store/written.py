"""What the store is handed to write: its own description, owned here, filled by
whoever makes the samples (``engine.compose`` does: its ``Batch`` and ``SamplePlan``
have these fields), so the store imports nothing above it.

- :class:`ShardContent`: one shard's samples (arrays, or functions that give
  them encoded where they are) and their per-object results;
- :class:`SampleMeta`: every sample's placement, read range by range when the
  store is created (``meta/*``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class ShardContent(Protocol):
    """One shard's samples, in order (``len()`` of them).

    Attributes:
        images: ``(B, H, W, 3) uint8``, or ``None`` when ``encode_jpeg`` or
            ``compressed`` give them.
        masks: ``(B, H, W) uint8`` 0/255.
        depth: ``(B, H, W) float16`` metres.
        alpha: ``(B, H, W) uint8`` or ``None`` (stores without ``save_alpha``).
        instances: ``(B, H, W) uint16`` object number + 1 or ``None`` (one object per image).
        objects: several objects per image: ``{"offset": (B + 1,) int64, "depth": (M,) float32}``; else ``None``.
        encode_jpeg: ``quality → (B,) object`` JPEG bytes encoded where the images are, or ``None``.
        compressed: array name → function giving its chunks as Zstandard frames, in order.
    """

    images: np.ndarray | None
    masks: np.ndarray | None
    depth: np.ndarray | None
    alpha: np.ndarray | None
    instances: np.ndarray | None
    objects: dict[str, Any] | None
    encode_jpeg: Callable[[int], np.ndarray] | None
    compressed: dict[str, Callable[[], list[bytes]]]

    def __len__(self) -> int: ...


class PlacementRows(Protocol):
    """Placements of a range of samples (or objects): ``(k,)`` arrays each."""

    bg: np.ndarray
    fg: np.ndarray
    flip: np.ndarray
    x: np.ndarray
    y: np.ndarray
    h: np.ndarray
    w: np.ndarray
    scale: np.ndarray

    def __len__(self) -> int: ...


class ObjectRows(Protocol):
    """Objects of a range of samples: ``objects`` (every object, sample by sample)
    and ``offset`` ``(k + 1,) int64`` (sample ``b``'s are ``offset[b]:offset[b + 1]``)."""

    objects: PlacementRows
    offset: np.ndarray

    def __len__(self) -> int: ...


class SampleMeta(Protocol):
    """Every sample's placement, by range: ``n_samples``, ``placements(start, stop)``
    and, for stores of several objects per image, ``objects(start, stop)``."""

    n_samples: int

    def placements(self, start: int, stop: int) -> PlacementRows: ...

    def objects(self, start: int, stop: int) -> ObjectRows: ...
