"""Contact sheets: which samples are drawn, and a bounded sheet whatever --n is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from engine.compose.generate import generate
from engine.config import GenerateConfig
from engine.errors import StoreError
from engine.store import preview

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 backgrounds x 3 cars x 2 flips x 2 positions = 84 samples."""
    out = tmp_path_factory.mktemp("preview") / "s.zarr"
    generate(GenerateConfig(builtin_backgrounds=7, builtin_foregrounds=3, height=32, width=48, positions=2,
                            shard_size=16, chunk_size=4), out)
    return out


def _inputs(store: Path, index: np.ndarray) -> tuple[set[int], set[int]]:
    meta = zarr.open_group(store, mode="r")["meta"]
    return set(meta["bg_index"][:][index].tolist()), set(meta["fg_index"][:][index].tolist())


@pytest.mark.parametrize("n", [7, 8, 12])
def test_picked_samples_show_every_background_and_foreground(store: Path, n: int) -> None:
    group = zarr.open_group(store, mode="r")
    index = preview._pick(group, [(0, 84)], n)
    assert len(index) == n and len(set(index.tolist())) == n and (np.diff(index) > 0).all()
    assert _inputs(store, index) == (set(range(7)), set(range(3)))


def test_picks_cover_only_completed_samples() -> None:
    done = np.arange(100, 140)
    bg, fg = done % 5, done % 4
    index = preview.pick_covering(done, bg, fg, 10)
    assert set(index.tolist()) <= set(done.tolist())
    assert set((index % 5).tolist()) == set(range(5)) and set((index % 4).tolist()) == set(range(4))


def test_a_huge_n_is_capped_to_the_sheet_budget(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    per_sample = 3 * 48 * (32 + preview.LABEL_HEIGHT)
    monkeypatch.setattr(preview, "MAX_SHEET_PIXELS", 10 * per_sample)
    sheet = preview.contact_sheet(store, n=100_000)
    assert sheet.info["samples"] == 10 and sheet.width * sheet.height <= 10 * per_sample


def test_a_tile_too_large_for_one_sheet_is_a_store_error(store: Path) -> None:
    with pytest.raises(StoreError, match="smaller --tile"):
        preview.contact_sheet(store, n=4, tile=100_000)


def test_preview_memory_stays_bounded(store: Path, tmp_path: Path) -> None:
    """--n 100000 with big tiles: uncapped, this peaked at 1.5 GB (and 3.4 GB with --tile 1500)."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a regression fails fast, not the machine\n"
        "from engine.store.preview import contact_sheet\n"
        "sheet = contact_sheet(sys.argv[1], n=100_000, tile=800)\n"
        "sheet.save(sys.argv[2])\n"
        # VmHWM, not ru_maxrss: that one keeps the forking pytest's peak across exec
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print('PEAK_MB', int(hwm.split()[1]) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(store), str(tmp_path / "p.png")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    peak = int(out.stdout.split("PEAK_MB")[1])
    assert peak < 400, f"peak RSS {peak} MB"
