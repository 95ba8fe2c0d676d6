"""One ``bench`` run: ceilings, both naive baselines, every chosen stage, one record."""

from __future__ import annotations

import logging
import multiprocessing as mp
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import ceilings
from .machine import git_state, load_average, machine_facts
from .naive import naive_generate, naive_generate_pool, split_placements
from .record import KIND, SCHEMA
from .stages import FULL, QUICK, Context, Measured, Stage, problem
from .timer import measure

log = logging.getLogger(__name__)

#: called as ``(event, name, device)`` with event ``start``, ``done`` or ``skip`` (for a progress display)
Progress = Callable[[str, str, str], None]


@dataclass(frozen=True)
class BenchSettings:
    """What to run (saved in the record).

    Attributes:
        quick: the small sizes (:data:`.stages.QUICK`), else :data:`.stages.FULL`.
        devices: devices to measure stages on (``cpu``, ``cuda``).
        stages: the chosen registry entries.
        scratch: a folder the run may fill and empties at its end.
    """

    quick: bool
    devices: tuple[str, ...]
    stages: tuple[Stage, ...]
    scratch: Path


def figure(name: str, device: str, m: Measured) -> dict[str, Any]:
    """A record figure (images/s) from a stage's measurement."""
    rates = sorted(m.items / s for s in m.timing.times_s)
    return {"stage": name, "device": device, "batch": m.batch, "unit": "images/s",
            "median": m.items / m.timing.median_s, "min": rates[0], "max": rates[-1],
            "repeats": len(m.timing.times_s), "warmup_s": m.timing.warmup_s,
            "ceiling": m.ceiling, "bytes_per_item": m.bytes_per_item, "notes": m.notes,
            **({"writer_cost": m.writer_cost} if m.writer_cost is not None else {})}


def naive_baselines(assets, plan, samples: int, cores: int, scratch: Path, repeats: int) -> dict[str, Measured]:
    """The naive per-image loop on ``assets`` and ``plan``'s first placements: ``samples`` in one
    process (``naive_single``), and ``samples`` per process on a pool of ``cores`` processes,
    started once, outside the timing (``naive_pool``)."""
    single = plan.placements(0, min(samples, plan.n_samples))
    zipped = scratch / "naive.zip"
    t = measure(lambda: naive_generate(assets.bg_images, assets.fg_images, single, zipped), repeats=repeats)
    out = {"naive_single": Measured(t, len(single), 1, notes="Pillow + NumPy + zip, 1 process")}
    pooled = plan.placements(0, min(samples * cores, plan.n_samples))
    pooled = pooled if len(pooled) >= cores else single
    with mp.get_context("fork").Pool(cores) as pool:
        t = measure(lambda: naive_generate_pool(assets.bg_images, assets.fg_images, pooled, scratch, cores, pool=pool),
                    repeats=repeats)
    out["naive_pool"] = Measured(t, len(pooled), len(split_placements(pooled, cores)[0]), notes=f"{cores} processes")
    return out


def baselines(ctx: Context) -> dict[str, dict[str, Any]]:
    """The record's two baseline figures, on the stages' own assets and placements."""
    measured = naive_baselines(ctx.assets, ctx.plan, ctx.sizes.naive_samples, ctx.cores, ctx.scratch, ctx.sizes.repeats)
    names = {"naive_single": "naive", "naive_pool": "naive-pool"}
    return {key: figure(names[key], "cpu", m) for key, m in measured.items()}


def run_bench(settings: BenchSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Run the ceilings, the baselines and every chosen stage on every chosen device.

    A stage that cannot run here is skipped with its reason; one that fails is
    recorded as skipped with its error and the run goes on (a benchmark says what
    broke). Returns the record (:mod:`.record`), not yet written.
    """
    say = progress or (lambda *_: None)
    t_start = time.perf_counter()
    sizes = QUICK if settings.quick else FULL
    settings.scratch.mkdir(parents=True, exist_ok=True)
    ctx = Context(sizes, settings.scratch)
    record: dict[str, Any] = {
        "schema": SCHEMA, "kind": KIND, "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_state(), "machine": machine_facts(),
        "settings": {"quick": settings.quick, "devices": list(settings.devices),
                     "stages": [s.name for s in settings.stages], "sizes": sizes.as_dict()},
        "ceilings": {}, "baselines": {}, "figures": [], "skipped": [], "setup_s": {},
    }
    try:
        say("start", "ceilings", ",".join(settings.devices))
        record["ceilings"]["disk_write_GBps"] = ceilings.disk_write_gbps(settings.scratch, sizes.ceiling_bytes)
        if "cuda" in settings.devices:
            record["ceilings"].update(ceilings.device_gbps(sizes.ceiling_bytes))
        say("done", "ceilings", ",".join(settings.devices))
        say("start", "naive", "cpu")
        t0 = time.perf_counter()
        ctx.assets, ctx.plan  # noqa: B018 - built here, so no baseline or stage times them
        record["setup_s"]["assets_and_plan"] = time.perf_counter() - t0
        record["baselines"] = baselines(ctx)
        say("done", "naive", "cpu")
        for device in settings.devices:
            for stage in settings.stages:
                why = problem(stage, device)
                if why is None:
                    say("start", stage.name, device)
                    try:
                        record["figures"].append(figure(stage.name, device, stage.run(ctx, device)))
                    except Exception as e:  # noqa: BLE001 - a failing stage is reported, the others still run
                        log.warning("stage %s on %s failed", stage.name, device, exc_info=True)
                        why = f"failed: {type(e).__name__}: {str(e)[:200]}"
                if why is not None:
                    record["skipped"].append({"stage": stage.name, "device": device, "reason": why})
                    say("skip", stage.name, device)
                else:
                    say("done", stage.name, device)
    finally:
        shutil.rmtree(settings.scratch, ignore_errors=True)
    add_ratios(record)
    record["machine"]["load_average_end"] = load_average()
    record["seconds"] = time.perf_counter() - t_start
    return record


def add_ratios(record: dict[str, Any]) -> None:
    """Each figure's ratio to each baseline, and its fraction of its ceiling where that was measured."""
    for fig in record["figures"]:
        fig["ratios"] = {name: fig["median"] / base["median"] for name, base in record["baselines"].items()}
        ceiling = record["ceilings"].get(fig.get("ceiling") or "")
        fig["fraction_of_ceiling"] = (fig["median"] * fig["bytes_per_item"] / (ceiling * 1e9)
                                      if ceiling and fig.get("bytes_per_item") else None)
