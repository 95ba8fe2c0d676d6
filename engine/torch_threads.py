"""Torch's intra-op thread count, set per block of work.

Shared by dataset generation (foreground resizes) and learning (split
loading): both run many small torch ops from their own thread pools, where
torch's own threading only adds contention.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run torch ops single-threaded inside the block, restoring the setting after.

    For images this small, torch's own threading makes antialiased
    ``interpolate`` about 10x slower when several threads call it at once.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
