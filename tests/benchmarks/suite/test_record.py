"""The record schema: valid records pass and round-trip, broken ones are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.suite import record
from benchmarks.suite.record import BenchRecordError
from engine.errors import FgbgError


def test_valid_record_passes_and_round_trips(make_record, tmp_path: Path) -> None:
    r = make_record()
    assert record.validate(r) is r
    path = record.write(r, tmp_path)
    assert path.name.startswith("bench-20261127T200000Z-aaaaaaaaaa-cpu") and path.suffix == ".json"
    assert record.read(path) == json.loads(json.dumps(r))
    assert path.stat().st_size < record.MAX_BYTES


#: a generate figure's writer cost model, as WriterCostReport.to_dict gives it
WRITER_COST = {"samples": 768, "ms_per_sample": {"compress images": 0.3, "file: write, fsync, rename": 0.05},
               "total_ms_per_sample": 0.4, "compression_ms_per_sample": 0.3, "compression_share": 0.75}


def test_generate_figure_with_a_writer_cost_model_passes(make_record) -> None:
    r = make_record()
    r["figures"][0]["writer_cost"] = dict(WRITER_COST)
    assert record.validate(r) is r


def test_history_is_oldest_first_and_ignores_other_json(make_record, tmp_path: Path) -> None:
    record.write(make_record(commit="b" * 40, created="2026-11-28T00:00:00Z"), tmp_path)
    record.write(make_record(commit="a" * 40, created="2026-11-27T00:00:00Z"), tmp_path)
    (tmp_path / "generate.json").write_text("{}")  # a script's own results: not a bench record
    assert [r["git"]["commit"][0] for r in record.history(tmp_path)] == ["a", "b"]


@pytest.mark.parametrize("breaks, message", [
    (lambda r: r.pop("baselines") and None, "baselines: is missing"),
    (lambda r: r["baselines"].pop("naive_pool") and None, "baselines.naive_pool: is missing"),
    (lambda r: r["figures"][0].update(median=-3.0), "figures[0].median: must be a positive number"),
    (lambda r: r["figures"][1].update(repeats=3), "figures[1].repeats: must be at least 5"),
    (lambda r: r["figures"][0].update(device="tpu"), "figures[0].device: must be cpu or cuda"),
    (lambda r: r["figures"][0].update(min=5000.0), "needs min <= median <= max"),
    (lambda r: r.update(schema=2), "schema: version 2 is not 1"),
    (lambda r: r.update(kind="other"), "not a bench record"),
    (lambda r: r["ceilings"].update(disk_write_GBps=0), "ceilings.disk_write_GBps: must be a positive number"),
    (lambda r: r["machine"].update(cores="2"), "machine.cores: must be int"),
    (lambda r: r["figures"][0].update(writer_cost={**WRITER_COST, "compression_share": 1.5}),
     "figures[0].writer_cost.compression_share: must be in"),
    (lambda r: r["figures"][0].update(writer_cost={**WRITER_COST, "ms_per_sample": {"compress images": -1}}),
     "figures[0].writer_cost.ms_per_sample.compress images: must be a number >= 0"),
    (lambda r: r["figures"][0].update(writer_cost={k: v for k, v in WRITER_COST.items() if k != "samples"}),
     "figures[0].writer_cost.samples: is missing"),
])
def test_broken_record_is_refused_with_where(make_record, breaks, message: str) -> None:
    r = make_record()
    breaks(r)
    with pytest.raises(BenchRecordError, match=message.replace("[", r"\[").replace("]", r"\]")):
        record.validate(r)


def test_read_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bench-x.json"
    bad.write_text("{not json")
    with pytest.raises(FgbgError, match=r"bench-x.json: not JSON"):  # a user error: one line in the CLI
        record.read(bad)
    bad.write_text(json.dumps({"kind": "fgbg-bench", "schema": 1}))
    with pytest.raises(BenchRecordError, match=r"bench-x.json: bench record created: is missing"):
        record.read(bad)


def test_oversized_record_is_not_written(make_record, tmp_path: Path) -> None:
    r = make_record()
    r["figures"][0]["notes"] = "x" * record.MAX_BYTES
    with pytest.raises(BenchRecordError, match="over the 50000"):
        record.write(r, tmp_path)
    assert not list(tmp_path.iterdir())
