"""Parts of tiny bench records, shared by the suite's tests and the CLI's."""

from __future__ import annotations

from typing import Any

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
