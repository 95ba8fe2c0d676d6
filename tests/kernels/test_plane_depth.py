"""Foreground-plane depth from background depth maps, against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import placement as P
from kernels.plane_depth import CONTACT, MIN_FOOTPRINT, plane_depth_batch, plane_depth_reference
from tests.kernels.test_composite import random_batch


@pytest.mark.parametrize("mode", [CONTACT, MIN_FOOTPRINT])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(mode: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    _, _, atlas, table = random_batch(rng, 20, 30, 40)
    depth = rng.uniform(1, 50, (3, 30, 40)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = 0  # unknown pixels
    depth[0, 5] = np.nan
    got = plane_depth_batch(depth, atlas, table, 127, mode)
    want = plane_depth_reference(depth, atlas, table, 127, mode)
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


def test_contact_reads_under_the_wheels() -> None:
    """Bottom row opaque only at three 'wheel' pixels: the median of the depth under them."""
    sprite = np.zeros((4, 10, 4), np.uint8)
    sprite[:3, :, 3] = 255
    sprite[3, [1, 2, 6], 3] = 255
    depth = np.full((1, 8, 12), 30.0, np.float32)
    depth[0, 6, 1:11] = np.arange(10, dtype=np.float32) + 1  # row under the sprite: column c holds c
    table = np.array([[0, 0, 1, 3, 4, 10, 0, 0]], np.int64)
    assert plane_depth_batch(depth, sprite.reshape(-1), table, 127, CONTACT)[0] == 3  # columns 2, 3, 7
    table[0, P.FLIP] = 1  # mirrored: the wheels sit at columns 9, 8, 4
    assert plane_depth_batch(depth, sprite.reshape(-1), table, 127, CONTACT)[0] == 8
    assert plane_depth_batch(depth, sprite.reshape(-1), table, 127, MIN_FOOTPRINT)[0] == 4


def test_unknown_everywhere_is_nan() -> None:
    sprite = np.full((2, 2, 4), 255, np.uint8)
    table = np.array([[0, 0, 0, 0, 2, 2, 0, 0]], np.int64)
    depth = np.zeros((1, 4, 4), np.float32)
    assert np.isnan(plane_depth_batch(depth, sprite.reshape(-1), table, 127, CONTACT)[0])
    assert np.isnan(plane_depth_batch(depth, sprite.reshape(-1), table, 127, MIN_FOOTPRINT)[0])


@pytest.mark.parametrize("mode", [CONTACT, MIN_FOOTPRINT])
def test_boxes_cut_by_the_border_match_reference(mode: int) -> None:
    """--truncation: both rules read only the visible part of the foreground."""
    from tests.kernels.test_composite import cut_by_the_border

    rng = np.random.default_rng(9)
    _, _, atlas, table = random_batch(rng, 40, 30, 40)
    table = cut_by_the_border(rng, table, 30, 40)
    depth = rng.uniform(1, 50, (3, 30, 40)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = 0
    got = plane_depth_batch(depth, atlas, table, 127, mode)
    want = plane_depth_reference(depth, atlas, table, 127, mode)
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    assert np.isfinite(got).mean() > 0.5


def test_contact_of_a_bottom_cut_off_reads_the_last_visible_row() -> None:
    """A sprite reaching 2 rows below the image: contact is read on the image's last row, under
    the visible columns only; min-footprint never reads beyond the image."""
    sprite = np.full((5, 6, 4), 255, np.uint8)
    depth = np.full((1, 8, 10), 30.0, np.float32)
    depth[0, 7] = np.arange(10, dtype=np.float32) + 1  # last row: column c holds c + 1
    table = np.array([[0, 0, 7, 5, 5, 6, 0, 0]], np.int64)  # rows 5..9 (8, 9 cut), columns 7..12 (10.. cut)
    assert plane_depth_batch(depth, sprite.reshape(-1), table, 127, CONTACT)[0] == 9  # median of 8, 9, 10
    assert plane_depth_batch(depth, sprite.reshape(-1), table, 127, MIN_FOOTPRINT)[0] == 8
    table[0, [P.X, P.Y]] = 10, 5  # wholly right of the image
    with pytest.raises(ValueError, match="meet the image"):
        plane_depth_batch(depth, sprite.reshape(-1), table, 127, CONTACT)
