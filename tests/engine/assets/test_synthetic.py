"""Tests of the embedded procedural assets (street scenes and car sprites)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.assets.camera import GroundPlane
from engine.assets.cars import car_sprite
from engine.assets.streets import StreetScene, street_scene


def _ground_view(scene: StreetScene) -> tuple[np.ndarray, np.ndarray]:
    """(ground depth of each pixel's row, whether the row centre is below the horizon), (H, W)."""
    h, w = scene.depth.shape
    rows = np.arange(h)[:, None]
    ground = np.broadcast_to(scene.ground.ground_depth(rows), (h, w))
    below = np.broadcast_to(rows + 0.5 > scene.ground.horizon, (h, w))
    return ground, below


# ---------------------------------------------------------------- street scenes


@pytest.mark.parametrize(("height", "width"), [(224, 224), (32, 48)])
def test_street_scene_shapes_and_dtypes(height: int, width: int) -> None:
    scene = street_scene(0, 0, height, width)
    assert isinstance(scene.ground, GroundPlane)
    assert scene.image.shape == (height, width, 3)
    assert scene.image.dtype == np.uint8
    assert scene.depth.shape == (height, width)
    assert scene.depth.dtype == np.float32


def test_street_scene_camera_is_drawn_in_range() -> None:
    for i in range(20):
        g = street_scene(1, i, 40, 60).ground
        assert 0.35 * 40 <= g.horizon <= 0.55 * 40
        assert 0.8 * 60 <= g.focal <= 1.3 * 60
        assert 1.2 <= g.camera_height <= 2.0


def test_street_scene_is_deterministic_and_indexed() -> None:
    a = street_scene(7, 3, 48, 64)
    b = street_scene(7, 3, 48, 64)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.depth, b.depth)
    assert a.ground == b.ground
    # Making other scenes in between must not change scene 3.
    street_scene(7, 4, 48, 64)
    assert np.array_equal(street_scene(7, 3, 48, 64).image, a.image)
    assert not np.array_equal(street_scene(7, 4, 48, 64).image, a.image)
    assert not np.array_equal(street_scene(8, 3, 48, 64).image, a.image)


def test_street_scenes_vary() -> None:
    scenes = [street_scene(0, i, 32, 32) for i in range(12)]
    means = np.array([s.image.reshape(-1, 3).mean(axis=0) for s in scenes])
    assert len({tuple(np.round(m)) for m in means}) == len(scenes)
    assert len({s.ground for s in scenes}) == len(scenes)
    # Some scenes show sky, and some show buildings (finite depth above the horizon).
    assert any(np.isinf(s.depth).any() for s in scenes)
    assert any((np.isfinite(s.depth) & ~_ground_view(s)[1]).any() for s in scenes)


@pytest.mark.parametrize(("seed", "height", "width"), [(0, 224, 224), (2, 60, 90), (3, 33, 21)])
def test_street_scene_depth_is_exact_geometry(seed: int, height: int, width: int) -> None:
    for index in range(4 if height == 224 else 12):
        scene = street_scene(seed, index, height, width)
        depth = scene.depth
        ground, below = _ground_view(scene)
        assert np.all(depth > 0)
        # Every ray below the horizon meets the ground, if nothing nearer.
        assert np.all(np.isfinite(depth[below]))
        # Sky only above the horizon; anything seen there is a building.
        assert not np.isinf(depth[below]).any()
        # Unoccluded ground has exactly the ground-plane depth; a building
        # in front can only be nearer.
        matches = np.isclose(depth, ground, rtol=1e-5, atol=0) & below
        assert matches.sum() >= 0.3 * below.sum()
        assert np.all(depth[below] <= ground[below] * (1 + 1e-5))
        assert np.array_equal(depth[matches], ground[matches].astype(np.float32))


def test_street_scene_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="height"):
        street_scene(0, 0, 7, 32)
    with pytest.raises(ValueError, match="width"):
        street_scene(0, 0, 32, 4)
    with pytest.raises(ValueError, match=">= 0"):
        street_scene(-1, 0, 32, 32)
    with pytest.raises(TypeError):
        street_scene(0, 0, 32.5, 32)  # type: ignore[arg-type]


# ---------------------------------------------------------------- car sprites


@pytest.mark.parametrize("height", [224, 16])
def test_car_sprite_shape_and_dtype(height: int) -> None:
    car = car_sprite(0, 0, height)
    assert car.dtype == np.uint8
    assert car.ndim == 3 and car.shape[0] == height and car.shape[2] == 4
    assert 1.0 * height <= car.shape[1] <= 2.9 * height


def _check_cutout(car: np.ndarray) -> None:
    alpha = car[..., 3]
    # Tight crop: every border row and column touches the car.
    assert alpha[0].max() > 0 and alpha[-1].max() > 0
    assert alpha[:, 0].max() > 0 and alpha[:, -1].max() > 0
    # Soft anti-aliased edges around a solid interior.
    assert ((alpha > 0) & (alpha < 255)).any()
    assert (alpha == 255).any()
    # Straight alpha with nothing hidden under full transparency.
    assert not car[..., :3][alpha == 0].any()


@pytest.mark.parametrize("height", [16, 9, 64])
def test_car_sprites_are_clean_cutouts(height: int) -> None:
    for index in range(30):
        _check_cutout(car_sprite(5, index, height))


def test_car_sprite_at_full_size_is_a_clean_cutout() -> None:
    for index in range(4):
        car = car_sprite(5, index, 224)
        _check_cutout(car)
        # The wheels stand on the bottom row: its coverage is solid somewhere.
        assert (car[-1, :, 3] == 255).any()


def test_car_sprites_mix_side_and_end_views() -> None:
    shapes = [car_sprite(0, i, 64).shape for i in range(40)]
    aspects = np.array([w / h for h, w, _ in shapes])
    side = (aspects >= 1.75) & (aspects <= 2.85)
    end = (aspects >= 1.05) & (aspects <= 1.55)
    assert np.all(side | end)
    assert side.sum() >= 8 and end.sum() >= 8


def test_car_sprite_is_deterministic_and_indexed() -> None:
    a = car_sprite(3, 1, 48)
    assert np.array_equal(a, car_sprite(3, 1, 48))
    others = [car_sprite(3, i, 48) for i in (0, 2)] + [car_sprite(4, 1, 48)]
    assert all(o.shape != a.shape or not np.array_equal(o, a) for o in others)


def test_car_sprite_colours_vary() -> None:
    mean_rgb = set()
    for i in range(12):
        car = car_sprite(2, i, 32).astype(np.float64)
        solid = car[..., 3] == 255
        mean_rgb.add(tuple(np.round(car[..., :3][solid].mean(axis=0) / 8)))
    assert len(mean_rgb) >= 8


def test_car_sprite_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="height"):
        car_sprite(0, 0, 7)
    with pytest.raises(ValueError, match=">= 0"):
        car_sprite(0, -3)
