"""Depth pictures: a colour range that follows the data, and a colour bar that says what it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.compose.generate import generate
from engine.config import GenerateConfig
from engine.store.preview import _TURBO_KNOTS, COLOUR_BAR_HEIGHT, colour_bar, contact_sheet, depth_range, depth_to_rgb

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
