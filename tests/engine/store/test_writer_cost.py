"""The writers' cost model: thread CPU time per step, the report and its ceiling line."""

from __future__ import annotations

import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.compose.generate import generate
from engine.store.writer_cost import (
    COMPRESS,
    STATISTICS,
    UNATTRIBUTED,
    WriterCost,
    cost_report,
    threads_cpu_seconds,
)
from tests.small_stores import small


def _spin(seconds: float) -> float:
    """Burn about ``seconds`` of this thread's CPU time; returns what it burnt."""
    t0 = time.thread_time()
    while time.thread_time() - t0 < seconds:
        sum(range(1000))
    return time.thread_time() - t0


def test_steps_count_thread_cpu_time_not_sleep() -> None:
    cost = WriterCost()
    with cost.step("spin"):
        burnt = _spin(0.05)
    with cost.step("sleep"):
        time.sleep(0.05)
    assert cost.cpu["spin"] == pytest.approx(burnt, abs=0.01)
    assert cost.cpu["sleep"] < 0.01  # waiting (disk, GIL, other threads) is not CPU time


def test_timed_map_sums_pool_threads_and_the_pool_clock_agrees() -> None:
    cost = WriterCost()
    with ThreadPoolExecutor(max_workers=2) as pool:
        burnt = sum(cost.timed_map(COMPRESS + "images", pool.map)(_spin, [0.03] * 6))
        total = threads_cpu_seconds([pool])
    assert cost.cpu[COMPRESS + "images"] == pytest.approx(burnt, rel=0.05)
    if total is not None:  # the threads' own clocks: the steps plus the executor's bookkeeping
        assert burnt <= total * 1.001 and total - burnt < 0.05


def test_report_per_sample_unattributed_and_ceiling() -> None:
    steps = {COMPRESS + "images": 3.0, COMPRESS + "masks": 1.0, STATISTICS: 2.0}
    report = cost_report(steps, 1000, total_cpu=8.0)
    assert report.ms_per_sample[COMPRESS + "images"] == pytest.approx(3.0)
    assert report.ms_per_sample[UNATTRIBUTED] == pytest.approx(2.0)
    assert sum(report.ms_per_sample.values()) == pytest.approx(report.total_ms_per_sample)
    assert report.compression_ms_per_sample == pytest.approx(4.0) and report.compression_share == pytest.approx(0.5)
    assert report.lines()[-1].startswith("writers at 50% of their compression ceiling")
    assert cost_report(steps, 1000, None).total_ms_per_sample == pytest.approx(6.0)  # no thread clocks: the steps' sum
    assert cost_report(steps, 0, 8.0) is None


def test_generate_reports_writer_cpu_by_step(tmp_path: Path) -> None:
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    report = generate(small(), tmp_path / "w.zarr")
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cost = report.writer_cost
    assert cost is not None and cost.samples == 48
    for name in ("images", "masks", "depth"):
        assert cost.ms_per_sample[COMPRESS + name] > 0, name
    assert STATISTICS in cost.ms_per_sample
    # the steps (unattributed included) add up to the threads' own CPU clocks; what no step
    # covers stays a minor part, and the writers used no more CPU than the whole process did
    assert sum(cost.ms_per_sample.values()) == pytest.approx(cost.total_ms_per_sample, rel=1e-6)
    assert cost.ms_per_sample.get(UNATTRIBUTED, 0.0) <= 0.5 * cost.total_ms_per_sample
    process_cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    assert cost.total_ms_per_sample * cost.samples / 1e3 <= process_cpu * 1.01
    assert 0 < cost.compression_share < 1
    assert cost.to_dict()["compression_share"] == pytest.approx(cost.compression_share)


def test_grouped_map_keeps_order_and_sends_few_tasks() -> None:
    from engine.store.zarr_store import grouped_map

    submitted = []

    class Counting(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            submitted.append(1)
            return super().submit(fn, *args, **kwargs)

    with Counting(max_workers=2) as pool:
        assert list(grouped_map(pool, 4)(lambda x: x * x, range(101))) == [x * x for x in range(101)]
        assert len(submitted) == 4
        assert list(grouped_map(pool, 4)(str, [])) == []
        with pytest.raises(ZeroDivisionError):
            list(grouped_map(pool, 4)(lambda x: 1 // x, [3, 2, 1, 0]))
