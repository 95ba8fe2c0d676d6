"""benchmarks/bench_user_loader.py runs end to end on a tiny store and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_user_loader_writes_both_figures(tmp_path: Path) -> None:
    out = tmp_path / "user_loader.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_user_loader.py"), "--side", "2", "--store-size",
                    "32", "48", "--size", "16", "24", "--batch", "4", "--epochs", "1", "--workers", "1",
                    "--seconds", "30", "--json", str(out)],
                   check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
    result = json.loads(out.read_text())
    assert set(result["median_images_per_s"]) == {"engine.loader", "DataLoader"}
    assert all(v > 0 for v in result["median_images_per_s"].values())
    assert result["kind"] == "torch" and result["input_size"] == [16, 24]
