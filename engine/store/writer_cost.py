"""Where the writers' CPU time goes: compression against everything else.

``generate``'s writers turn a composited shard into durable files: count the
image statistics, slice the shard into chunks, compress each chunk (on the
compression threads), assemble the shard file (chunks, index, CRC32C) and
write, fsync and rename it. Each step's *thread CPU time* is summed here
(``time.thread_time`` around it, in whichever thread runs it), so the figures
hold on a loaded machine, where wall time measures the other processes.

The whole CPU time of the writer and compression threads is read from their
own CPU clocks (:func:`threads_cpu_seconds`), independently of the steps, so
what no step covers (executor bookkeeping, Python glue) shows as
``unattributed``. The compression ceiling is the rate the writers would reach
if compressing were all they did: ``compression / total`` of their CPU time.

Cheap enough to be always on: two clock reads per chunk and per step.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: step names; compression is per array: ``compress <array>``
COMPRESS = "compress "
STATISTICS = "statistics (channel histogram)"
ASSEMBLE = "shard bytes: slice, pad, join chunks, index, crc32c"
FILE_WRITE = "file: write, fsync, rename"
OBJECTS = "per-object results"
JPEG = "jpeg encode"
ZARR_WRITE = "zarr write (vlen bytes)"
UNATTRIBUTED = "unattributed (executor, Python glue)"


class WriterCost:
    """Thread CPU seconds per writer step, summed over threads (thread-safe)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, step: str, seconds: float) -> None:
        with self._lock:
            self.cpu[step] += seconds

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """``with cost.step("name"): ...`` adds the block's thread CPU time to ``name``."""
        t0 = time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.thread_time() - t0)

    def timed(self, name: str, fn: Callable[[T], R]) -> Callable[[T], R]:
        """``fn`` adding its thread CPU time to ``name`` on each call (for pool threads)."""

        def run(arg: T) -> R:
            t0 = time.thread_time()
            try:
                return fn(arg)
            finally:
                self.add(name, time.thread_time() - t0)

        return run

    def timed_map(self, name: str, map_fn: Callable[..., Iterable[Any]]) -> Callable[..., Iterable[Any]]:
        """An ordered ``map`` (e.g. an executor's) that times each call of its function as ``name``."""
        return lambda fn, items: map_fn(self.timed(name, fn), items)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.cpu)


def thread_cpu_seconds(thread: threading.Thread) -> float | None:
    """CPU seconds ``thread`` has used so far (``None`` where the OS cannot say, or it has ended)."""
    if thread.ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (OSError, ValueError):  # the thread has ended
        return None


def threads_cpu_seconds(pools: Iterable[Any]) -> float | None:
    """CPU seconds used by the threads of executors ``pools`` (read before they shut down),
    or ``None`` where thread CPU clocks are not available."""
    total = 0.0
    for pool in pools:
        for thread in list(getattr(pool, "_threads", ())):
            seconds = thread_cpu_seconds(thread)
            if seconds is None:
                return None
            total += seconds
    return total


@dataclass(frozen=True)
class WriterCostReport:
    """Per-sample CPU cost of the writers.

    Attributes:
        samples: samples the writers wrote.
        ms_per_sample: thread CPU milliseconds per sample of each step, ``unattributed`` included.
        total_ms_per_sample: all CPU time of the writer and compression threads, per sample.
        compression_ms_per_sample: the ``compress <array>`` steps together.
    """

    samples: int
    ms_per_sample: dict[str, float]
    total_ms_per_sample: float
    compression_ms_per_sample: float

    @property
    def compression_share(self) -> float:
        """Compression's part of the writers' CPU time: how near they run to their compression ceiling."""
        return self.compression_ms_per_sample / self.total_ms_per_sample if self.total_ms_per_sample > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "ms_per_sample": dict(self.ms_per_sample),
                "total_ms_per_sample": self.total_ms_per_sample,
                "compression_ms_per_sample": self.compression_ms_per_sample,
                "compression_share": self.compression_share}

    def lines(self) -> list[str]:
        """The ``generate -v`` block: ms/sample per step, then the ceiling line."""
        out = [f"writer CPU time per sample ({self.samples:,} samples, thread CPU time):"]
        for step, ms in sorted(self.ms_per_sample.items(), key=lambda kv: -kv[1]):
            share = 100 * ms / self.total_ms_per_sample if self.total_ms_per_sample > 0 else 0.0
            out.append(f"  {ms:8.3f} ms  {share:5.1f}%  {step}")
        out.append(f"  {self.total_ms_per_sample:8.3f} ms  100.0%  total (writer + compression threads)")
        out.append(f"writers at {100 * self.compression_share:.0f}% of their compression ceiling "
                   f"({self.compression_ms_per_sample:.3f} of {self.total_ms_per_sample:.3f} ms a sample is compression)")
        return out


def cost_report(steps: dict[str, float], samples: int, total_cpu: float | None) -> WriterCostReport | None:
    """The per-sample report of ``steps`` (CPU seconds) over ``samples``; ``total_cpu``: the
    threads' whole CPU time (``None``: the steps' sum). ``None`` when nothing was written."""
    if samples <= 0:
        return None
    named = sum(steps.values())
    total = named if total_cpu is None else max(total_cpu, named)
    per = {name: 1e3 * s / samples for name, s in steps.items()}
    if total_cpu is not None:
        per[UNATTRIBUTED] = 1e3 * (total - named) / samples
    compression = sum(ms for name, ms in per.items() if name.startswith(COMPRESS))
    return WriterCostReport(samples, per, 1e3 * total / samples, compression)
