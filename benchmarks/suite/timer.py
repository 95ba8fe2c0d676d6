"""Timing done one way for every stage: warm-up apart, repeats, median and spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: fewest timed repeats a figure of ``cli.py bench`` rests on (its record refuses fewer)
MIN_REPEATS = 5


@dataclass(frozen=True)
class Timing:
    """Seconds of one measured callable.

    Attributes:
        warmup_s: seconds of the warm-up calls together (compilation, CUDA
            context, atlas fill, caches): reported, never in the figures.
        times_s: seconds of each timed repeat.
    """

    warmup_s: float
    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)


def measure(fn: Callable[[], Any], repeats: int = MIN_REPEATS, warmup: int = 1,
            sync: Callable[[], None] | None = None) -> Timing:
    """Time ``fn``: ``warmup`` calls first (timed apart), then ``repeats`` timed calls.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before the clock starts and
    inside the timed region, so asynchronous device work is counted in the call
    that queued it and none of it leaks into the next.

    Raises:
        ValueError: no timed repeat or a negative warm-up.
    """
    if repeats < 1:
        raise ValueError(f"needs at least one timed repeat, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warm-up calls must be >= 0, got {warmup}")
    done = sync or (lambda: None)
    done()
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
        done()
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        done()
        t0 = time.perf_counter()
        fn()
        done()
        times.append(time.perf_counter() - t0)
    return Timing(warmup_s, tuple(times))
