"""The benchmark scripts still run (tiny sizes): a benchmark that rots is no benchmark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, env: dict | None = None) -> str:
    """Run a benchmark script; its scratch files go to a fresh temporary folder,
    never the checkout's benchmarks/scratch (which may hold a user's stores)."""
    scratch = tempfile.mkdtemp(prefix="fgbg-bench-")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT / "benchmarks", capture_output=True,
        text=True, env={**os.environ, "FGBG_BENCH_SCRATCH": scratch, **(env or {})}, timeout=600,
    )
    shutil.rmtree(scratch, ignore_errors=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.slow
def test_bench_generate_runs(tmp_path: Path) -> None:
    stdout = run("bench_generate.py", "--samples", "600", "--naive-samples", "60", "--backgrounds", "3",
                 "--foregrounds", "3", "--repeats", "1", "--shard-size", "256", "--devices", "cpu",
                 "--results-dir", str(tmp_path))
    assert "naive per-image loop" in stdout and "engine --device cpu" in stdout
    doc = json.loads((tmp_path / "generate.json").read_text())
    assert doc["results"]["cpu/zstd"]["images_per_s_writing"] > 0 and doc["machine"]["cpu_count"] >= 1


@pytest.mark.slow
def test_bench_gpu_smoke_runs_on_the_simulator(tmp_path: Path) -> None:
    stdout = run("bench_gpu.py", "--smoke", "--codecs", "zstd", "--results-dir", str(tmp_path),
                 env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert "kernel batch" in stdout and "x the floor" in stdout
    assert json.loads((tmp_path / "gpu-smoke.json").read_text())["results"]["simulated"] is True


@pytest.mark.slow
def test_bench_data_runs(tmp_path: Path) -> None:
    stdout = run("bench_data.py", "--samples", "64", "--load", "40", "--results-dir", str(tmp_path))
    assert "load_split 40 samples" in stdout and "make_batch" in stdout
    assert json.loads((tmp_path / "data.json").read_text())["results"]["make_batch_224_cpu_ms"] > 0


@pytest.mark.slow
def test_bench_atlas_runs(tmp_path: Path) -> None:
    stdout = run("bench_atlas.py", "--samples", "300", "--backgrounds", "3", "--foregrounds", "3",
                 "--results-dir", str(tmp_path))
    assert "distinct resizes" in stdout
    results = json.loads((tmp_path / "atlas.json").read_text())["results"]
    assert results["samples"] == 300 and 1 <= results["distinct_resizes"] <= 300
