"""Tiny bench records to build reports and comparisons from."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.suite.runner import add_ratios

BASE: dict[str, Any] = {
    "schema": 1, "kind": "fgbg-bench", "created": "2026-11-27T20:00:00Z",
    "git": {"commit": "a" * 40, "dirty": False},
    "machine": {"cpu": "Test CPU", "cores": 2, "gpu": None, "libraries": {}},
    "settings": {"quick": True, "devices": ["cpu"], "stages": ["composite", "write"], "sizes": {"image": 128, "batch": 256}},
    "ceilings": {"disk_write_GBps": 1.0},
    "baselines": {}, "figures": [], "skipped": [], "seconds": 30.0,
}


def figure(stage: str, median: float, device: str = "cpu", ceiling: str | None = None,
           bytes_per_item: float | None = None) -> dict[str, Any]:
    return {"stage": stage, "device": device, "batch": 256, "unit": "images/s", "median": median,
            "min": median * 0.9, "max": median * 1.1, "repeats": 5, "warmup_s": 0.5, "ceiling": ceiling,
            "bytes_per_item": bytes_per_item, "notes": ""}


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
