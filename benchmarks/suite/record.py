"""The JSON record one ``bench`` run appends to the history: its schema, checked on read.

A record (schema version :data:`SCHEMA`)::

    {"schema": 1, "kind": "fgbg-bench", "created": "2026-11-27T21:00:00Z",
     "git": {"commit": "<sha>", "dirty": false},
     "machine": {"cpu": ..., "cores": 2, "gpu": null | {"name", "driver", "cuda"}, "libraries": {...}, ...},
     "settings": {"quick": true, "device": "auto", "stages": [...], "sizes": {...}},
     "ceilings": {"disk_write_GBps": 1.2, ...},            # measured in the same run
     "baselines": {"naive_single": <figure>, "naive_pool": <figure>},
     "figures": [<figure>, ...],                           # one per stage and device
     "skipped": [{"stage": ..., "device": ..., "reason": ...}],
     "seconds": 41.0}

and a figure::

    {"stage": "composite", "device": "cpu", "batch": 256, "unit": "images/s",
     "median": 2100.0, "min": 2000.0, "max": 2200.0, "repeats": 5, "warmup_s": 1.3,
     "ratios": {"naive_single": 9.1, "naive_pool": 5.0},
     "ceiling": "device_copy_GBps" | null, "fraction_of_ceiling": 0.4 | null,
     "writer_cost": {"samples": 20000, "ms_per_sample": {"compress images": 0.3, ...},   # generate only
                     "total_ms_per_sample": 0.5, "compression_ms_per_sample": 0.35,
                     "compression_share": 0.7}}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from engine.errors import FgbgError

SCHEMA = 1
KIND = "fgbg-bench"
BASELINES = ("naive_single", "naive_pool")
#: a record bigger than this is refused on write: the history is committed
MAX_BYTES = 50_000


class BenchRecordError(FgbgError):
    """A benchmark record that is not one this version can read (the message says where)."""


def _fail(where: str, what: str) -> BenchRecordError:
    return BenchRecordError(f"bench record {where}: {what}")


def _positive(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise _fail(where, f"must be a positive number, got {value!r}")


def _typed(doc: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise _fail(f"{where}.{key}" if where else key, "is missing")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _fail(f"{where}.{key}" if where else key, f"must be {names}, got {type(value).__name__}")
    return value


def check_figure(fig: Any, where: str) -> None:
    """Raise :class:`BenchRecordError` unless ``fig`` is a well-formed figure."""
    if not isinstance(fig, dict):
        raise _fail(where, f"must be an object, got {type(fig).__name__}")
    _typed(fig, "stage", str, where)
    if _typed(fig, "device", str, where) not in ("cpu", "cuda"):
        raise _fail(f"{where}.device", f"must be cpu or cuda, got {fig['device']!r}")
    _positive(_typed(fig, "batch", int, where), f"{where}.batch")
    _typed(fig, "unit", str, where)
    for key in ("median", "min", "max"):
        _positive(_typed(fig, key, (int, float), where), f"{where}.{key}")
    if not fig["min"] <= fig["median"] <= fig["max"]:
        raise _fail(where, f"needs min <= median <= max, got {fig['min']}, {fig['median']}, {fig['max']}")
    if _typed(fig, "repeats", int, where) < 5:
        raise _fail(f"{where}.repeats", f"must be at least 5, got {fig['repeats']}")
    if _typed(fig, "warmup_s", (int, float), where) < 0:
        raise _fail(f"{where}.warmup_s", f"must be >= 0, got {fig['warmup_s']}")
    for name, ratio in fig.get("ratios", {}).items():
        _positive(ratio, f"{where}.ratios.{name}")
    if fig.get("fraction_of_ceiling") is not None:
        _positive(fig["fraction_of_ceiling"], f"{where}.fraction_of_ceiling")
    if fig.get("writer_cost") is not None:
        check_writer_cost(fig["writer_cost"], f"{where}.writer_cost")


def check_writer_cost(cost: Any, where: str) -> None:
    """Raise :class:`BenchRecordError` unless ``cost`` is a well-formed writer cost model
    (``engine.store.writer_cost.WriterCostReport.to_dict``)."""
    if not isinstance(cost, dict):
        raise _fail(where, f"must be an object, got {type(cost).__name__}")
    _positive(_typed(cost, "samples", int, where), f"{where}.samples")
    for name, ms in _typed(cost, "ms_per_sample", dict, where).items():
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms < 0:
            raise _fail(f"{where}.ms_per_sample.{name}", f"must be a number >= 0, got {ms!r}")
    _positive(_typed(cost, "total_ms_per_sample", (int, float), where), f"{where}.total_ms_per_sample")
    _positive(_typed(cost, "compression_ms_per_sample", (int, float), where), f"{where}.compression_ms_per_sample")
    share = _typed(cost, "compression_share", (int, float), where)
    if not 0 < share <= 1:
        raise _fail(f"{where}.compression_share", f"must be in (0, 1], got {share!r}")
    if cost["compression_ms_per_sample"] > cost["total_ms_per_sample"] * (1 + 1e-9):
        raise _fail(where, "compression_ms_per_sample exceeds total_ms_per_sample")


def validate(doc: Any) -> dict[str, Any]:
    """``doc`` itself when it is a record this version reads.

    Raises:
        BenchRecordError: another kind of JSON, another schema version, or a
            missing or malformed field (the message names it).
    """
    if not isinstance(doc, dict):
        raise _fail("", f"must be a JSON object, got {type(doc).__name__}")
    if doc.get("kind") != KIND:
        raise _fail("kind", f"must be {KIND!r}, got {doc.get('kind')!r} (not a bench record)")
    if doc.get("schema") != SCHEMA:
        raise _fail("schema", f"version {doc.get('schema')!r} is not {SCHEMA}, the one this fgbg reads")
    _typed(doc, "created", str, "")
    git = _typed(doc, "git", dict, "")
    _typed(git, "commit", str, "git")
    machine = _typed(doc, "machine", dict, "")
    _typed(machine, "cpu", str, "machine")
    _positive(_typed(machine, "cores", int, "machine"), "machine.cores")
    _typed(doc, "settings", dict, "")
    for name, value in _typed(doc, "ceilings", dict, "").items():
        _positive(value, f"ceilings.{name}")
    baselines = _typed(doc, "baselines", dict, "")
    for name in BASELINES:
        if name not in baselines:
            raise _fail(f"baselines.{name}", "is missing (both naive baselines are measured in every run)")
        check_figure(baselines[name], f"baselines.{name}")
    for i, fig in enumerate(_typed(doc, "figures", list, "")):
        check_figure(fig, f"figures[{i}]")
    for i, skip in enumerate(_typed(doc, "skipped", list, "")):
        if not isinstance(skip, dict) or not all(isinstance(skip.get(k), str) for k in ("stage", "device", "reason")):
            raise _fail(f"skipped[{i}]", "needs stage, device and reason (strings)")
    _positive(_typed(doc, "seconds", (int, float), ""), "seconds")
    return doc


def read(path: str | Path) -> dict[str, Any]:
    """The validated record in the file ``path``.

    Raises:
        BenchRecordError: a missing file, not JSON, or not a valid record.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise BenchRecordError(f"{path}: cannot read ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise BenchRecordError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    try:
        return validate(doc)
    except BenchRecordError as e:
        raise BenchRecordError(f"{path}: {e}") from None


#: where ``bench`` keeps its records unless ``--out`` says otherwise: the committed history
DEFAULT_FOLDER = Path("benchmarks/results")
#: where ``bench --quick`` keeps them instead (git-ignored: a quick run is a check, not history)
QUICK_FOLDER = Path("benchmarks/scratch/quick-results")


def record_folder(out: str | Path, quick: bool) -> Path:
    """The folder a run's record goes to: ``out``, except that a ``--quick`` run with the
    default ``out`` goes to :data:`QUICK_FOLDER`, so quick checks stay out of the
    committed history (another ``--out`` keeps them there instead)."""
    out = Path(out)
    return QUICK_FOLDER if quick and out == DEFAULT_FOLDER else out


def write(doc: dict[str, Any], folder: str | Path) -> Path:
    """Validate ``doc`` and write it as a new file in ``folder``; returns its path.

    Named ``<created>-<commit[:10]>-<devices>.json`` so the history sorts by time.

    Raises:
        BenchRecordError: an invalid record, or one over :data:`MAX_BYTES`.
    """
    validate(doc)
    text = json.dumps(doc, indent=1, sort_keys=False) + "\n"
    if len(text) > MAX_BYTES:
        raise BenchRecordError(f"bench record is {len(text)} bytes, over the {MAX_BYTES} a committed record may have")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = doc["created"].replace(":", "").replace("-", "")
    devices = "-".join(sorted({f["device"] for f in doc["figures"]} | {"cpu"}))
    path = folder / f"bench-{stamp}-{doc['git']['commit'][:10]}-{devices}.json"
    path.write_text(text)
    return path


def history(folder: str | Path) -> list[dict[str, Any]]:
    """Every bench record in ``folder`` (``bench-*.json``), oldest first, each validated.

    Raises:
        BenchRecordError: a record in the folder is invalid (named in the message).
    """
    records = [read(p) for p in sorted(Path(folder).glob("bench-*.json"))]
    return sorted(records, key=lambda r: r["created"])
