"""Antialiased resizing of RGBA foregrounds with straight alpha.

Colours are premultiplied by alpha before filtering and divided back after,
so transparent pixels (whose RGB is meaningless) do not bleed dark fringes
into the object's edge. The filter is PyTorch's antialiased bilinear (the
triangle filter widened to the output pixel size when shrinking, as
torchvision and Kornia resize use): no ringing, so alpha stays in range.

Premultiplying is split out (:func:`premultiply`) because one foreground is
resized to many sizes: the engine premultiplies it once and calls
:func:`resize_premultiplied` per size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kernels.checks import check_array


def premultiply(fg: np.ndarray) -> torch.Tensor:
    """Straight-alpha RGBA to a premultiplied float tensor.

    Args:
        fg: ``(h, w, 4) uint8`` RGBA, straight alpha.

    Returns:
        ``(1, 4, h, w) float32``: RGB multiplied by ``alpha / 255``, alpha in 0..255.
    """
    check_array(fg, "fg", np.uint8, ["h", "w", 4])
    x = torch.from_numpy(np.ascontiguousarray(fg)).permute(2, 0, 1).unsqueeze(0).float()
    x[:, :3] *= x[:, 3:4] / 255.0
    return x


def resize_premultiplied(pm: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Resize a premultiplied foreground and return it as straight-alpha uint8.

    Args:
        pm: ``(1, 4, h, w) float32`` from :func:`premultiply`.
        height: output height, ≥ 1.
        width: output width, ≥ 1.

    Returns:
        ``(height, width, 4) uint8`` RGBA, straight alpha, RGB 0 where alpha is 0.
    """
    check_array(pm, "pm", np.float32, [1, 4, "h", "w"])
    if height < 1 or width < 1:
        raise ValueError(f"output size must be positive, got {height}x{width}")
    y = F.interpolate(pm, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    y = y[0].permute(1, 2, 0).numpy()  # (height, width, 4)
    exact = np.clip(y[..., 3:], 0, 255)
    alpha = np.floor(exact + 0.5)
    # Divide by the unrounded alpha: a one-colour object keeps exactly its
    # colour; rounding alpha afterwards moves a composite by at most 0.5.
    with np.errstate(divide="ignore", invalid="ignore"):
        rgb = np.where(alpha > 0, y[..., :3] * 255.0 / exact, 0.0)
    out = np.empty((height, width, 4), np.uint8)
    out[..., :3] = np.floor(np.clip(rgb, 0, 255) + 0.5)
    out[..., 3:] = alpha
    return out


def resize_rgba(fg: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize one straight-alpha RGBA image (premultiply, filter, divide back).

    Args:
        fg: ``(h, w, 4) uint8`` RGBA, straight alpha.
        height: output height, ≥ 1.
        width: output width, ≥ 1.

    Returns:
        ``(height, width, 4) uint8`` RGBA, straight alpha. A copy of the input
        when the size already matches.

    Example:
        >>> fg = np.full((8, 8, 4), 255, np.uint8)
        >>> resize_rgba(fg, 4, 4).shape, int(resize_rgba(fg, 4, 4).min())
        ((4, 4, 4), 255)
    """
    check_array(fg, "fg", np.uint8, ["h", "w", 4])
    if fg.shape[:2] == (height, width):
        return fg.copy()
    return resize_premultiplied(premultiply(fg), height, width)
