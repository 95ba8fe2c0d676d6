"""Premultiplied antialiased resizing of straight-alpha foregrounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kernels.resample import premultiply, resize_premultiplied, resize_rgba


def ring(h: int, w: int, colour: tuple[int, int, int], junk: np.random.Generator | None = None) -> np.ndarray:
    """A disc of one colour with a soft edge; RGB of transparent pixels is junk if given."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy + 0.5 - h / 2) / (h / 2), (xx + 0.5 - w / 2) / (w / 2))
    out = np.zeros((h, w, 4), np.uint8)
    out[..., :3] = colour
    out[..., 3] = np.floor(np.clip((1 - r) * 3, 0, 1) * 255 + 0.5)
    if junk is not None:
        transparent = out[..., 3] == 0
        out[transparent, :3] = junk.integers(0, 256, (int(transparent.sum()), 3))
    return out


def test_same_size_is_a_copy() -> None:
    fg = ring(10, 12, (10, 200, 30))
    out = resize_rgba(fg, 10, 12)
    np.testing.assert_array_equal(out, fg)
    assert out is not fg


@pytest.mark.parametrize("size", [(37, 61), (9, 13), (120, 200)])
def test_shape_dtype_and_alpha_range(size: tuple[int, int]) -> None:
    out = resize_rgba(ring(64, 100, (200, 100, 50)), *size)
    assert out.shape == (*size, 4) and out.dtype == np.uint8
    assert out[..., 3].max() > 200 and out[..., 3].min() == 0


@pytest.mark.parametrize("size", [(21, 33), (40, 70), (128, 200)])
def test_transparent_pixels_do_not_bleed(size: tuple[int, int]) -> None:
    """A one-colour object keeps its colour at every visible pixel, whatever the
    RGB of its transparent surroundings: the point of premultiplying."""
    colour = (230, 40, 90)
    out = resize_rgba(ring(64, 100, colour, junk=np.random.default_rng(0)), *size)
    visible = out[..., 3] > 0
    assert visible.sum() > 10
    assert np.abs(out[visible][:, :3].astype(int) - np.array(colour)).max() <= 1
    assert not out[~visible][:, :3].any()


def test_against_plain_torch_reference() -> None:
    rng = np.random.default_rng(3)
    fg = rng.integers(0, 256, (50, 70, 4), dtype=np.uint8)
    out = resize_premultiplied(premultiply(fg), 23, 31)
    # Reference: same maths spelled out in float64.
    x = torch.from_numpy(fg).permute(2, 0, 1)[None].double()
    a = x[:, 3:4] / 255
    y = F.interpolate(torch.cat([x[:, :3] * a, x[:, 3:4]], 1), size=(23, 31), mode="bilinear", antialias=True)
    exact = y[:, 3:4].clamp(0, 255)
    alpha = torch.floor(exact + 0.5)
    rgb = torch.where(alpha > 0, y[:, :3] * 255 / exact.clamp(min=1e-9), torch.zeros_like(y[:, :3]))
    want = torch.cat([torch.floor(rgb.clamp(0, 255) + 0.5), alpha], 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1  # float32 vs float64 rounding


def test_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="uint8"):
        resize_rgba(np.zeros((4, 4, 4), np.float32), 2, 2)
    with pytest.raises(ValueError, match="shape"):
        resize_rgba(np.zeros((4, 4, 3), np.uint8), 2, 2)
    with pytest.raises(ValueError, match="positive"):
        resize_rgba(np.zeros((4, 4, 4), np.uint8), 0, 2)
