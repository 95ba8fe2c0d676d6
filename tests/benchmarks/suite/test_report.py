"""Tables, RESULTS.md's generated section, the chart and comparisons, built from fixture records."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.suite import report
from benchmarks.suite.record import BenchRecordError, write

ROOT = Path(__file__).resolve().parents[3]


def test_table_rows_give_ratios_and_ceiling_fractions(make_record) -> None:
    rows = {(r[0], r[1]): r for r in report.table_rows(make_record(gpu=True))}
    assert rows[("naive", "cpu")][4] == "1.0×"
    composite = rows[("composite", "cpu")]
    assert composite[3] == "1,000 (900–1,100)" and composite[4] == "10.0×" and composite[5] == "5.6×"
    # 500 images/s x 1 MB against a 1 GB/s disk: half the ceiling
    assert rows[("write", "cpu")][6] == "50% disk_write"
    # 1e6 images/s x 100 kB = 100 GB/s of a 2000 GB/s copy bandwidth
    assert rows[("composite", "cuda")][6] == "5% device_copy"


def test_generated_section_replaces_only_itself(make_record, tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nIntro prose.\n\n## CPU machine\n\nHand-written table.\n")
    history = [make_record(created="2026-11-27T20:00:00Z"), make_record(commit="b" * 40, created="2026-11-28T20:00:00Z",
                                                                        scale=2.0)]
    report.update_results(results, report.generated_section(history[:1], "../docs/bench.png"))
    first = results.read_text()
    assert first.index("Intro prose.") < first.index(report.BEGIN) < first.index(report.END) < first.index("## CPU machine")
    assert "do not edit by hand" in first and "Hand-written table." in first
    assert "pending: measured by `bash benchmarks/gpu_bench_session.sh`" in first  # no GPU record yet
    assert "![images/s per stage across commits](../docs/bench.png)" in first
    report.update_results(results, report.generated_section(history, "../docs/bench.png"))
    second = results.read_text()
    assert second.count(report.BEGIN) == 1 and second.count("Hand-written table.") == 1
    assert "Median images/s across the history" in second and "bbbbbbb 2026-11-28" in second
    assert second.split(report.END)[1] == first.split(report.END)[1]  # the hand-written part untouched


def test_gpu_record_gets_its_own_latest_table(make_record) -> None:
    gpu = make_record(gpu=True)
    gpu["machine"].update(load_average_start=3.0, load_average_end=2.5)
    section = report.generated_section([make_record(), gpu], None)
    assert "Test GPU" in section and "pending" not in section
    assert "load average (1 min) 3.0 at the start, 2.5 at the end, on 2 cores" in section


def test_chart_draws_every_series(make_record, tmp_path: Path) -> None:
    history = [make_record(), make_record(commit="b" * 40, created="2026-11-28T00:00:00Z", scale=1.5, gpu=True)]
    path = report.chart(history, tmp_path / "bench.png")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[1] == 4 * 300 and path.stat().st_size < 200_000
    for colour in report.COLOURS[:2]:  # the CPU series and the GPU series both drawn
        assert (image == colour).all(axis=-1).sum() > 20, colour


def test_compare_two_records(make_record) -> None:
    rows, warnings = report.compare_rows(make_record(), make_record(scale=2.0))
    ratios = {(r[0], r[1]): r[4] for r in rows}
    assert ratios[("composite", "cpu")] == "2.00×" and ratios[("write", "cpu")] == "2.00×"
    assert ratios[("naive", "cpu")] == "1.00×" and not warnings
    full = make_record()
    full["settings"]["sizes"] = {"image": 224}
    assert any("different sizes (batch, image)" in w for w in report.compare_rows(make_record(), full)[1])


def test_resolve_by_path_and_by_revision(make_record, tmp_path: Path) -> None:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    path = write(make_record(commit=head), tmp_path)
    history = [make_record(), make_record(commit=head, scale=3.0)]
    assert report.resolve(str(path), history)["figures"][0]["median"] == 1000.0
    assert report.resolve("HEAD", history)["figures"][0]["median"] == 3000.0
    with pytest.raises(BenchRecordError, match="no bench record of commit"):
        report.resolve("HEAD", [make_record()])
    with pytest.raises(BenchRecordError, match="not a record file nor a git revision"):
        report.resolve("no-such-revision-xyz", history)
