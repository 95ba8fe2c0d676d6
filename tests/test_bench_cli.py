"""``cli.py bench``: bad options in one line, --compare on records, and one real --quick run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.suite.record import BASELINES, read, write
from cli import app
from tests.benchmarks.suite.fixture_records import BASE, figure

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_unknown_stage_is_one_line_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "--stages", "composite,nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown stage 'nope'" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_compare_two_record_files(tmp_path: Path) -> None:
    paths = []
    for day, median in (("27", 1000.0), ("28", 1500.0)):
        r = json.loads(json.dumps(BASE))
        r["created"] = f"2026-11-{day}T00:00:00Z"
        r["baselines"] = {"naive_single": figure("naive", 100.0), "naive_pool": figure("naive-pool", 180.0)}
        r["figures"] = [figure("composite", median)]
        paths.append(write(r, tmp_path / day))
    result = runner.invoke(app, ["bench", "--compare", str(paths[0]), "--compare", str(paths[1])])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("composite"))
    assert line.split()[-1] == "1.50×" and "1,000" in line and "1,500" in line
    bad = runner.invoke(app, ["bench", "--compare", str(tmp_path / "missing.json")])
    assert bad.exit_code == 2 and "missing.json: cannot read" in bad.output


@pytest.mark.slow
def test_quick_run_on_the_cpu(tmp_path: Path) -> None:
    """The whole --quick suite end to end: every figure positive, both baselines, one small record."""
    out = subprocess.run(
        [sys.executable, "cli.py", "bench", "--quick", "--device", "cpu", "--out", str(tmp_path / "results"),
         "--scratch", str(tmp_path / "scratch"), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (path,) = (tmp_path / "results").glob("bench-*.json")
    record = read(path)  # validated: positive medians, min <= median <= max, >= 5 repeats
    assert set(BASELINES) <= set(record["baselines"])
    assert {f["stage"] for f in record["figures"]} >= {"composite", "generate", "write", "loader-torch", "train-resident"}
    for fig in record["figures"]:
        assert fig["median"] > 0 and fig["ratios"]["naive_single"] > 0 and fig["ratios"]["naive_pool"] > 0, fig
    assert not record["skipped"], record["skipped"]
    assert path.stat().st_size < 50_000 and not (tmp_path / "scratch").exists()
    assert "naive-pool" in out.stdout and "× naive" in out.stdout and "record:" in out.stdout
