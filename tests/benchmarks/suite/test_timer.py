"""The timer: warm-up apart, every repeat timed, synchronisation inside the timing."""

from __future__ import annotations

import time

import pytest

from benchmarks.suite.timer import measure


def test_warmup_is_timed_apart_and_repeats_counted() -> None:
    calls: list[float] = []

    def work() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.02 if len(calls) == 1 else 0.005)  # the first (warm-up) call is the slow one

    t = measure(work, repeats=5, warmup=1)
    assert len(calls) == 6 and len(t.times_s) == 5
    assert t.warmup_s >= 0.02
    assert all(0.005 <= s < 0.02 for s in t.times_s), t.times_s
    assert min(t.times_s) <= t.median_s <= max(t.times_s)


def test_sync_runs_inside_the_timed_region() -> None:
    pending: list[float] = []

    def launch() -> None:  # like an asynchronous kernel launch: returns at once, the work waits in sync
        pending.append(0.01)

    def sync() -> None:
        while pending:
            time.sleep(pending.pop())

    t = measure(launch, repeats=5, warmup=1, sync=sync)
    assert all(s >= 0.01 for s in t.times_s), t.times_s


@pytest.mark.parametrize("repeats, warmup", [(0, 1), (5, -1)])
def test_bad_counts_are_refused(repeats: int, warmup: int) -> None:
    with pytest.raises(ValueError):
        measure(lambda: None, repeats=repeats, warmup=warmup)
