"""Contact sheets and depth pictures: which samples are drawn, a bounded sheet whatever --n is,
a colour range that follows the data, and a colour bar that says what it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from engine.compose.generate import generate
from engine.config import GenerateConfig
from engine.errors import StoreError
from engine.store import preview
from engine.store.preview import _TURBO_KNOTS, COLOUR_BAR_HEIGHT, colour_bar, contact_sheet, depth_range, depth_to_rgb
from engine.store.verify import StoreShards

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
    index = preview._pick(group, [(0, 84)], n, StoreShards(store))
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
    bar = sheet.width * preview.COLOUR_BAR_HEIGHT  # the colour key below the tiles
    assert sheet.info["samples"] == 10 and sheet.width * sheet.height <= 10 * per_sample + bar


def test_a_store_with_alpha_and_instances_shows_both(tmp_path: Path) -> None:
    """image | mask | depth | instances | alpha: the last tile is the stored alpha, in grey."""
    from tests.small_stores import several_objects

    out = tmp_path / "alpha.zarr"
    generate(several_objects(save_alpha=True), out)
    sheet = contact_sheet(out, n=1)
    assert sheet.info["samples"] == 1 and sheet.width == 5 * 48
    index = preview._pick(zarr.open_group(out, mode="r"), [(0, 48)], 1, StoreShards(out))
    alpha = zarr.open_group(out, mode="r")["alpha"][int(index[0])]
    tile = np.asarray(sheet)[preview.LABEL_HEIGHT : preview.LABEL_HEIGHT + 32, 4 * 48 :]
    np.testing.assert_array_equal(tile, np.repeat(alpha[..., None], 3, axis=2))


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



RED, BLUE = _TURBO_KNOTS[-1], _TURBO_KNOTS[0]  # near, far


def test_depth_range_is_robust_and_ignores_unknown_depth() -> None:
    room = np.linspace(2.0, 5.0, 10_000).reshape(100, 100)
    room[0, 0], room[0, 1], room[0, 2], room[0, 3] = 1000.0, 0.0, np.nan, np.inf  # one outlier, three unknown
    near, far = depth_range(room)
    assert near == pytest.approx(2.06, abs=0.01) and far == pytest.approx(4.94, abs=0.01)
    assert depth_range(np.full((4, 4), 3.0)) == pytest.approx((3.0 / 1.1, 3.3))
    assert depth_range(np.zeros((4, 4))) == (1.0, 10.0)


def test_an_indoor_depth_map_uses_the_whole_colour_map() -> None:
    room = np.linspace(2.0, 5.0, 64)[None, :].repeat(8, axis=0)
    rgb = depth_to_rgb(room, *depth_range(room)).reshape(-1, 3).astype(np.float64)
    assert np.abs(rgb - RED).sum(axis=1).min() < 10 and np.abs(rgb - BLUE).sum(axis=1).min() < 10


def test_colour_bar_runs_from_near_red_to_far_blue_with_labels() -> None:
    bar = np.asarray(colour_bar(2.0, 5.0, 300)).astype(np.float64)
    assert bar.shape == (COLOUR_BAR_HEIGHT, 300, 3)
    assert np.abs(bar[5, 0] - RED).sum() < 10 and np.abs(bar[5, -1] - BLUE).sum() < 10
    assert (bar[16:, :, :] > 150).any()  # tick labels drawn under the ramp


@pytest.fixture
def indoor_store(tmp_path: Path) -> Path:
    """Two 'rooms' whose depth maps span 2-5 m, one sprite."""
    for d in ("bg", "fg", "depth"):
        (tmp_path / d).mkdir()
    rng = np.random.default_rng(0)
    ramp = np.linspace(5.0, 2.0, 32, dtype=np.float32)[:, None] * np.ones((1, 32), np.float32)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "bg" / f"room{i}.png")
        np.save(tmp_path / "depth" / f"room{i}.npy", ramp)
    sprite = np.zeros((10, 10, 4), np.uint8)
    sprite[2:9, 2:9] = 255
    Image.fromarray(sprite).save(tmp_path / "fg" / "box.png")
    out = tmp_path / "s.zarr"
    generate(GenerateConfig(bg_dir=str(tmp_path / "bg"), fg_dir=str(tmp_path / "fg"), depth_source="bg-maps",
                            depth_maps_dir=str(tmp_path / "depth"), height=32, width=32, positions=2, shard_size=8), out)
    return out


def test_contact_sheet_colours_follow_the_store_and_carry_a_colour_bar(indoor_store: Path) -> None:
    sheet = np.asarray(contact_sheet(indoor_store, n=2)).astype(np.float64)
    depth_tiles = sheet[14 : 14 + 32, 64:96].reshape(-1, 3)  # first sample's depth tile
    assert np.abs(depth_tiles - RED).sum(axis=1).min() < 40  # 2 m is near red, not a sliver of 0-80 m
    assert np.abs(depth_tiles - BLUE).sum(axis=1).min() < 40
    assert sheet.shape[0] == 2 * (32 + 14) + COLOUR_BAR_HEIGHT
