"""Tiny bench records to build reports and comparisons from."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.suite.runner import add_ratios
from tests.benchmarks.suite.fixture_records import BASE, figure


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    """``make_record(commit=..., created=..., scale=1.0, gpu=False)``: a valid record whose
    stage medians are ``scale`` times composite 1000, write 500 (naive 100, pool 180)."""

    def make(commit: str = "a" * 40, created: str = "2026-11-27T20:00:00Z", scale: float = 1.0,
             gpu: bool = False) -> dict[str, Any]:
        r = copy.deepcopy(BASE)
        r["git"]["commit"], r["created"] = commit, created
        r["baselines"] = {"naive_single": figure("naive", 100.0), "naive_pool": figure("naive-pool", 180.0)}
        r["figures"] = [figure("composite", 1000.0 * scale),
                        figure("write", 500.0 * scale, ceiling="disk_write_GBps", bytes_per_item=1e6)]
        if gpu:
            r["machine"]["gpu"] = {"name": "Test GPU", "driver": "1.0", "cuda": "13.0"}
            r["ceilings"]["device_copy_GBps"] = 2000.0
            r["figures"].append(figure("composite", 1e6 * scale, "cuda", "device_copy_GBps", 1e5))
        add_ratios(r)
        return r

    return make
