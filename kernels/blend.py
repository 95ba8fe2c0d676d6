"""Blending modes: a post-pass over composites, in torch (CPU or CUDA alike).

The composite kernel (:mod:`kernels.composite`) pastes with plain straight
alpha and writes the image, mask and depth. A blending mode other than
``alpha`` then rewrites the *image only*: masks and depth stay the kernel's,
exact labels of the original alpha (``mask = alpha > threshold``).

Design: the post-pass does not try to undo the composite. It rebuilds each
sample's *foreground layer* in output space from what the kernel read — the
placement table and the atlas of resized foregrounds (flip and, with
``occlusion``, the background-depth test applied exactly as the kernel does) —
and the background image, then composes them again:

- ``feather``: alpha ``a`` blurred by a Gaussian of σ px, ``a'``; colour is the
  foreground's own where ``a > 0`` and, just outside, its normalised blur
  (blurred premultiplied colour / blurred alpha), so the soft rim takes the
  object's edge colours; ``out = fg·a' + bg·(1−a')``.
- ``motion``: the premultiplied layer ``(fg·a, a)`` filtered by Kornia's
  ``motion_blur`` (a line of ``length`` px at ``angle`` degrees), then ``over``
  the background: ``out = pm' + bg·(1−a')``.
- ``poisson``: gradient-domain (Pérez et al. 2003) on the object's support
  ``Ω = {a > 0}``: the new colours ``f`` solve ``Δf = Δg`` inside Ω (guidance:
  the foreground's gradients between Ω pixels) with ``f = bg`` on the pixels
  just outside Ω; then ``out = f·a + bg·(1−a)``. The 5-point system is solved
  by batched conjugate gradients (one CG per sample and channel, run side by
  side) started from the foreground colours; it stops when every channel's
  residual ``‖b − Af‖ ≤ tolerance·‖b‖`` or after ``iterations`` steps.
- ``harmonize`` (with any mode, before it): the object's colours in CIE Lab
  are shifted and scaled per channel so their alpha-weighted mean and std
  match the background's in a ring of ``ring`` px around the object (the std
  ratio is clamped to [0.5, 2] so a flat road does not flatten a car).

Several objects per image (:func:`blend_objects_batch`): a layered pass. Each
image restarts from its background; the objects are then blended one layer at
a time, far to near as the kernel draws them, each over the canvas so far
(background and the farther objects). Masks, depth and instance ids stay the
kernel's.

``alpha`` never runs this module: the default path is the kernel alone. All
colour work is ``float32`` in 0..255 and rounds to nearest at the end (of
each layer), so ``feather`` with σ → 0 and ``motion`` with length 1 reproduce
the kernel's bytes exactly, with one object or several.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels import placement as P
from kernels.checks import check_array

BLEND_MODES = ("alpha", "feather", "motion", "poisson")


@dataclass(frozen=True)
class BlendSpec:
    """What the post-pass does (see the module docstring).

    Attributes:
        mode: one of :data:`BLEND_MODES`.
        harmonize: match the object's Lab mean/std to the ring around it first.
        feather_sigma: Gaussian σ in px (``feather``); 0 keeps the alpha.
        motion_length: blur line length in px (``motion``), rounded up to odd; 1 is no blur.
        motion_angle: blur direction, degrees counter-clockwise from the x axis (``motion``).
        poisson_iterations: most conjugate-gradient steps (``poisson``).
        poisson_tolerance: relative residual at which CG stops (``poisson``).
        harmonize_ring: width in px of the background ring (``harmonize``).
    """

    mode: str = "alpha"
    harmonize: bool = False
    feather_sigma: float = 2.0
    motion_length: int = 9
    motion_angle: float = 0.0
    poisson_iterations: int = 2000
    poisson_tolerance: float = 1e-5
    harmonize_ring: int = 8

    def __post_init__(self) -> None:
        if self.mode not in BLEND_MODES:
            raise ValueError(f"blend mode must be one of {', '.join(BLEND_MODES)}, got {self.mode!r}")
        if not 0 <= self.feather_sigma <= 64:
            raise ValueError(f"feather sigma must be in [0, 64] px, got {self.feather_sigma}")
        if not 1 <= self.motion_length <= 255:
            raise ValueError(f"motion length must be in [1, 255] px, got {self.motion_length}")
        if not 1 <= self.poisson_iterations <= 100_000:
            raise ValueError(f"poisson iterations must be in [1, 100000], got {self.poisson_iterations}")
        if not 0 < self.poisson_tolerance < 1:
            raise ValueError(f"poisson tolerance must be in (0, 1), got {self.poisson_tolerance}")
        if not 1 <= self.harmonize_ring <= 256:
            raise ValueError(f"harmonize ring must be in [1, 256] px, got {self.harmonize_ring}")

    @property
    def active(self) -> bool:
        """False when the post-pass would change nothing (plain ``alpha``)."""
        return self.mode != "alpha" or self.harmonize


def foreground_layer(
    atlas: torch.Tensor, table: torch.Tensor, height: int, width: int, bg_depth: torch.Tensor | None = None,
    origin: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's foreground in output space (or a window of it), as the composite kernel reads it.

    Args:
        atlas: ``(A,) uint8`` resized foregrounds, RGBA straight alpha.
        table: ``(B, 8) int64`` placements (:mod:`kernels.placement`), on ``atlas``'s device.
        height: output (window) height.
        width: output (window) width.
        bg_depth: ``(NB, H, W) int16`` background depth as float16 bits, to hide
            pixels behind nearer background (``--occlusion background``); ``None``: no test.
        origin: ``(B, 2) int64`` each sample's window top-left ``(row, col)`` in
            the output, the window lying inside it; ``None``: the whole output.

    Returns:
        ``rgb (B, 3, h, w) float32`` straight colour 0..255 (0 outside the object) and
        ``alpha (B, 1, h, w) float32`` in [0, 1], ``h, w = height, width``.
    """
    check_array(atlas, "atlas", "uint8", ["A"])
    check_array(table, "table", "int64", ["B", P.N_COLUMNS])
    dev = atlas.device
    t = table.to(dev)
    col = lambda k: t[:, k].view(-1, 1, 1)  # noqa: E731 - (B, 1, 1) column of the table
    if origin is None:
        origin = torch.zeros((len(t), 2), dtype=torch.int64, device=dev)
    origin = origin.to(dev)
    rows = origin[:, 0].view(-1, 1, 1) + torch.arange(height, device=dev).view(1, -1, 1)  # (B, h, 1)
    cols = origin[:, 1].view(-1, 1, 1) + torch.arange(width, device=dev).view(1, 1, -1)  # (B, 1, w)
    fr = rows - col(P.Y)
    fc = cols - col(P.X)
    h, w = col(P.H), col(P.W)
    inside = (fr >= 0) & (fr < h) & (fc >= 0) & (fc < w)  # (B, h, w)
    if bg_depth is not None:
        behind = bg_depth.to(dev)[col(P.BG), rows, cols].to(torch.int32) & 0xFFFF  # uint16 bits: order = value order
        inside &= (behind == 0) | (behind >= col(P.DEPTH))
    fc = torch.where(col(P.FLIP) != 0, w - 1 - fc, fc)
    base = torch.where(inside, col(P.OFFSET) + (fr * w + fc) * 4, 0)
    rgba = atlas[base.unsqueeze(1) + torch.arange(4, device=dev).view(1, 4, 1, 1)].float()  # (B, 4, H, W)
    rgba = rgba * inside.unsqueeze(1)
    return rgba[:, :3], rgba[:, 3:] / 255.0


def over(pm: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """``pm + bg·(1−alpha)`` rounded to nearest, as ``(B, H, W, 3) uint8``.

    Args:
        pm: ``(B, 3, H, W) float32`` premultiplied colour, 0..255.
        alpha: ``(B, 1, H, W) float32`` in [0, 1].
        bg: ``(B, 3, H, W) float32`` background, 0..255.
    """
    out = torch.floor(pm + bg * (1.0 - alpha) + 0.5).clamp_(0, 255)
    return out.to(torch.uint8).permute(0, 2, 3, 1)


def feather(rgb: torch.Tensor, alpha: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Soften the alpha by a Gaussian of ``sigma`` px; returns the premultiplied layer.

    Args:
        rgb: ``(B, 3, H, W) float32`` straight colour.
        alpha: ``(B, 1, H, W) float32`` in [0, 1].
        sigma: Gaussian σ in px; 0 returns the layer unchanged.

    Returns:
        ``pm (B, 3, H, W)``, ``alpha' (B, 1, H, W)`` float32.
    """
    if sigma <= 0:
        return rgb * alpha, alpha
    from kornia.filters import gaussian_blur2d

    size = 2 * math.ceil(3 * sigma) + 1
    blurred = gaussian_blur2d(torch.cat([rgb * alpha, alpha], 1), (size, size), (sigma, sigma), border_type="replicate")
    soft = blurred[:, 3:].clamp(0, 1)
    # Outside the object, its colour continued outward (normalised blur); inside, its own.
    extended = blurred[:, :3] / blurred[:, 3:].clamp_min(1e-6)
    colour = torch.where(alpha > 0, rgb, extended)
    return colour * soft, soft


def motion(rgb: torch.Tensor, alpha: torch.Tensor, length: int, angle: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Directional blur of the premultiplied layer (Kornia ``motion_blur``).

    Args:
        rgb: ``(B, 3, H, W) float32`` straight colour.
        alpha: ``(B, 1, H, W) float32`` in [0, 1].
        length: line length in px, rounded up to odd (Kornia's kernel size); 1 is no blur.
        angle: degrees, counter-clockwise from the x axis.

    Returns:
        ``pm (B, 3, H, W)``, ``alpha' (B, 1, H, W)`` float32.
    """
    pm = rgb * alpha
    if length <= 1:
        return pm, alpha
    from kornia.filters import motion_blur

    size = length | 1
    blurred = motion_blur(torch.cat([pm, alpha], 1), size, float(angle), 0.0, border_type="replicate")
    return blurred[:, :3], blurred[:, 3:].clamp(0, 1)


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 4 neighbours of every pixel, zero beyond the image. ``(B, C, H, W)`` in and out."""
    p = F.pad(x, (1, 1, 1, 1))
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def poisson(
    rgb: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor, iterations: int, tolerance: float
) -> torch.Tensor:
    """New object colours by gradient-domain blending (see the module docstring).

    The system is solved in a window per sample (the object's box plus one
    pixel, all windows of the chunk one size), not over the whole image.

    Args:
        rgb: ``(B, 3, H, W) float32`` straight foreground colour (the guidance).
        alpha: ``(B, 1, H, W) float32``; the object's support is ``alpha > 0``.
        bg: ``(B, 3, H, W) float32`` background (the boundary condition).
        iterations: most CG steps.
        tolerance: stop when every ``‖b − Af‖ ≤ tolerance·‖b‖``.

    Returns:
        ``(B, 3, H, W) float32`` colours: the solution inside the support, ``rgb`` elsewhere.
    """
    n, _, height, width = rgb.shape
    support = alpha[:, 0] > 0
    if n == 0 or not bool(support.any()):
        return rgb
    dev = rgb.device
    rows_any, cols_any = support.any(2), support.any(1)  # (B, H), (B, W)

    def span(any_: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(size, device=dev)
        first = torch.where(any_, idx, size).amin(1)
        last = torch.where(any_, idx, -1).amax(1)
        return first.clamp(max=size - 1), (last - first + 1).clamp(min=1)

    y0, hs = span(rows_any, height)
    x0, ws = span(cols_any, width)
    wh = min(int(hs.max()) + 2, height)  # window: the box and a 1-px ring, where the image has it
    ww = min(int(ws.max()) + 2, width)
    oy = (y0 - 1).clamp(0, height - wh)
    ox = (x0 - 1).clamp(0, width - ww)
    rows = (oy.view(-1, 1) + torch.arange(wh, device=dev)).view(n, wh, 1)
    cols = (ox.view(-1, 1) + torch.arange(ww, device=dev)).view(n, 1, ww)
    b_idx = torch.arange(n, device=dev).view(n, 1, 1)

    def crop(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, wh, ww)
        return x[b_idx, :, rows, cols].permute(0, 3, 1, 2)

    solved = _poisson_window(crop(rgb), crop(alpha), crop(bg), iterations, tolerance)
    out = rgb.clone()
    out[b_idx, :, rows, cols] = solved.permute(0, 2, 3, 1)
    return out


def _poisson_window(
    rgb: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor, iterations: int, tolerance: float
) -> torch.Tensor:
    """:func:`poisson` on windows holding each object and a 1-px ring (or the image edge)."""
    inside = (alpha > 0).to(rgb.dtype)  # (B, 1, h, w)
    # Neighbours inside the image: the window's edge is the image's edge wherever Ω touches it.
    count = _neighbour_sum(torch.ones_like(inside))

    def apply(x: torch.Tensor) -> torch.Tensor:  # A x on Ω; x is 0 outside Ω
        return (count * x - _neighbour_sum(x)) * inside

    g = rgb * inside
    # Guidance only between Ω pixels (the transparent rim's colour is meaningless),
    # plus the Dirichlet values (background) of the neighbours outside Ω.
    outside_n = (count - _neighbour_sum(inside)) * inside  # Dirichlet neighbours per Ω pixel
    dirichlet = _neighbour_sum(bg * (1 - inside)) * inside
    b = _neighbour_sum(inside) * g - _neighbour_sum(g) * inside + dirichlet
    # Start from the guidance shifted by the mean step at the boundary: the
    # slowest (smoothest) error component is mostly gone before CG starts.
    weight = outside_n.sum((2, 3), keepdim=True).clamp_min(1e-6)
    shift = (dirichlet.sum((2, 3), keepdim=True) - (g * outside_n).sum((2, 3), keepdim=True)) / weight
    x = (g + shift) * inside
    r = b - apply(x)
    p = r.clone()
    rs = (r * r).sum((2, 3), keepdim=True)
    stop = (tolerance * tolerance) * (b * b).sum((2, 3), keepdim=True)
    for step in range(iterations):
        if step % 16 == 0 and bool((rs <= stop).all()):
            break
        ap = apply(p)
        denom = (p * ap).sum((2, 3), keepdim=True)
        a = torch.where(denom > 0, rs / denom.clamp_min(1e-30), torch.zeros_like(rs))
        x += a * p
        r -= a * ap
        rs_new = (r * r).sum((2, 3), keepdim=True)
        p = r + torch.where(rs > 0, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs)) * p
        rs = rs_new
    return torch.where(inside > 0, x, rgb)


def _lab(rgb: torch.Tensor) -> torch.Tensor:
    from kornia.color import rgb_to_lab

    return rgb_to_lab((rgb / 255.0).clamp(0, 1))


def harmonize(rgb: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor, ring: int) -> torch.Tensor:
    """Shift/scale the object's Lab colours to the statistics of a background ring.

    Args:
        rgb: ``(B, 3, H, W) float32`` straight foreground colour.
        alpha: ``(B, 1, H, W) float32``; object statistics are alpha-weighted.
        bg: ``(B, 3, H, W) float32`` background.
        ring: ring width in px: pixels within ``ring`` (square neighbourhood) of
            the object's support, outside it.

    Returns:
        ``(B, 3, H, W) float32`` colours, unchanged for samples with no object or no ring.
    """
    from kornia.color import lab_to_rgb

    support = (alpha > 0).to(rgb.dtype)
    around = F.max_pool2d(support, 2 * ring + 1, stride=1, padding=ring) - support

    def stats(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        total = weight.sum((2, 3), keepdim=True)
        mean = (x * weight).sum((2, 3), keepdim=True) / total.clamp_min(1e-6)
        var = ((x - mean) ** 2 * weight).sum((2, 3), keepdim=True) / total.clamp_min(1e-6)
        return mean, var.sqrt(), total

    lab = _lab(rgb)
    mean_o, std_o, n_o = stats(lab, alpha)
    mean_r, std_r, n_r = stats(_lab(bg), around)
    scale = (std_r / std_o.clamp_min(1e-3)).clamp(0.5, 2.0)
    valid = (n_o > 0) & (n_r > 0)
    scale = torch.where(valid, scale, torch.ones_like(scale))
    shifted = torch.where(valid, (lab - mean_o) * scale + mean_r, lab)
    out = lab_to_rgb(shifted, clip=True) * 255.0
    return torch.where(support > 0, out, rgb)


def margin(spec: BlendSpec) -> int:
    """Pixels around an object's box that ``spec`` can change or read (its window's margin)."""
    reach = 1  # poisson's boundary ring
    if spec.mode == "feather":
        reach = max(reach, math.ceil(3 * spec.feather_sigma) + 1)
    elif spec.mode == "motion":
        reach = max(reach, (spec.motion_length | 1) // 2 + 1)
    if spec.harmonize:
        reach = max(reach, spec.harmonize_ring + 1)
    return reach


def blend_chunk(
    images: torch.Tensor, bg_images: torch.Tensor, atlas: torch.Tensor, table: torch.Tensor,
    spec: BlendSpec, bg_depth: torch.Tensor | None = None, targets: torch.Tensor | None = None,
) -> None:
    """Rewrite composites in place with ``spec``'s mode (one chunk of a batch).

    Works in one window size for the chunk: each object's box plus
    :func:`margin` (clamped to the image); pixels beyond it are background,
    which every mode leaves as it is.

    Args:
        images: ``(B, H, W, 3) uint8`` the kernel's composites (overwritten).
        bg_images: ``(NB, H, W, 3) uint8`` backgrounds; may be ``images`` itself
            (the layered pass: its windows are read before any is written).
        atlas: ``(A,) uint8`` resized foregrounds.
        table: ``(N, 8) int64`` placements, one row per image written.
        spec: the blending mode and its parameters.
        bg_depth: ``(NB, H, W) int16`` background depth bits for the occlusion test, or ``None``.
        targets: ``(N,) int64`` the image each table row rewrites, distinct;
            ``None``: row ``i`` rewrites image ``i`` (then ``N = B``).
    """
    check_array(images, "images", "uint8", ["B", "H", "W", 3])
    check_array(bg_images, "bg_images", "uint8", ["NB", "H", "W", 3])
    _, height, width, _ = images.shape
    n = len(table)
    if n == 0 or not spec.active:
        return
    dev = images.device
    t = table.to(dev)
    if targets is None:
        if n != len(images):
            raise ValueError(f"table has {n} rows for {len(images)} images (pass targets)")
        targets = torch.arange(n, device=dev)
    m = margin(spec)
    wh = min(int(t[:, P.H].max()) + 2 * m, height)
    ww = min(int(t[:, P.W].max()) + 2 * m, width)
    oy = (t[:, P.Y] - m).clamp(0, height - wh)
    ox = (t[:, P.X] - m).clamp(0, width - ww)
    rows = (oy.view(-1, 1) + torch.arange(wh, device=dev)).view(n, wh, 1)
    cols = (ox.view(-1, 1) + torch.arange(ww, device=dev)).view(n, 1, ww)
    rgb, alpha = foreground_layer(atlas, t, wh, ww, bg_depth, torch.stack([oy, ox], 1))
    bg = bg_images[t[:, P.BG].view(n, 1, 1), rows, cols].permute(0, 3, 1, 2).float()  # (B, 3, wh, ww)
    if spec.harmonize:
        rgb = harmonize(rgb, alpha, bg, spec.harmonize_ring)
    if spec.mode == "feather":
        pm, a = feather(rgb, alpha, spec.feather_sigma)
    elif spec.mode == "motion":
        pm, a = motion(rgb, alpha, spec.motion_length, spec.motion_angle)
    elif spec.mode == "poisson":
        colour = poisson(rgb, alpha, bg, spec.poisson_iterations, spec.poisson_tolerance)
        pm, a = colour.clamp(0, 255) * alpha, alpha
    else:  # alpha + harmonize
        pm, a = rgb * alpha, alpha
    images[targets.to(dev).view(n, 1, 1), rows, cols] = over(pm, a, bg)


def _exact_convolutions(images: torch.Tensor) -> contextlib.AbstractContextManager:
    """No TF32 in cuDNN's convolutions (Kornia's filters) for CUDA ``images``:
    its 10-bit mantissa would move GPU results away from the CPU's by more than rounding."""
    if images.is_cuda:
        return torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
    return contextlib.nullcontext()


def blend_batch(
    images: torch.Tensor, bg_images: torch.Tensor, atlas: torch.Tensor, table: torch.Tensor,
    spec: BlendSpec, bg_depth: torch.Tensor | None = None, chunk: int = 16,
) -> None:
    """:func:`blend_chunk` over a batch, ``chunk`` samples at a time (bounded memory).

    Arguments as for :func:`blend_chunk`; ``chunk`` ≥ 1.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    with _exact_convolutions(images):
        for start in range(0, len(images), chunk):
            stop = min(start + chunk, len(images))
            blend_chunk(images[start:stop], bg_images, atlas, table[start:stop], spec, bg_depth)


def blend_objects_chunk(
    images: torch.Tensor, bg_images: torch.Tensor, atlas: torch.Tensor, table: torch.Tensor,
    offset: torch.Tensor, spec: BlendSpec, bg_depth: torch.Tensor | None = None,
) -> None:
    """Rewrite composites of several objects each in place, one layer at a time.

    Each image restarts from its background (the *canvas*); then layer
    ``k = 0, 1, ...`` takes the ``k``-th object of every sample that has one,
    in the table's far-to-near order, and :func:`blend_chunk` blends it over
    the canvas. Nearer objects are so blended over farther ones (a far
    object's soft rim never covers a nearer object, drawn after it), and
    ``harmonize``'s ring and ``poisson``'s boundary read the background with
    the farther objects already in it. Each layer rounds to ``uint8`` as the
    several-objects kernel does per object, so ``feather`` with σ → 0 and
    ``motion`` of length 1 reproduce the kernel's bytes exactly.

    Args:
        images: ``(B, H, W, 3) uint8`` the kernel's composites (overwritten).
        bg_images: ``(NB, H, W, 3) uint8`` backgrounds.
        atlas: ``(A,) uint8`` resized foregrounds.
        table: ``(M, 9) int64`` one row per object (:mod:`kernels.placement`),
            each sample's rows ordered far to near.
        offset: ``(B + 1,) int64`` sample ``b``'s rows are ``offset[b]:offset[b + 1]``
            (at least one each).
        spec: the blending mode and its parameters.
        bg_depth: ``(NB, H, W) int16`` background depth bits for the occlusion test, or ``None``.
    """
    check_array(images, "images", "uint8", ["B", "H", "W", 3])
    check_array(table, "table", "int64", ["M", P.N_OBJECT_COLUMNS])
    check_array(offset, "offset", "int64", ["B1"])
    n = len(images)
    if len(offset) != n + 1:
        raise ValueError(f"offset must have {n + 1} entries for {n} images, got {len(offset)}")
    if n == 0 or not spec.active:
        return
    dev = images.device
    t, o = table.to(dev), offset.to(dev)
    counts = o[1:] - o[:-1]
    if bool((counts < 1).any()) or int(o[-1]) != len(t):
        raise ValueError(f"offset must rise by at least 1 per sample up to the table's {len(t)} rows")
    sample_bg = t[o[:-1], P.BG]
    images[:] = bg_images.to(dev)[sample_bg]  # the canvases
    # The canvases stand in for the backgrounds (the BG column becomes the
    # sample's own index); the occlusion test must still see each sample's
    # real background depth, so it is gathered in the same order.
    depth = None if bg_depth is None else bg_depth.to(dev)[sample_bg]  # (B, H, W)
    for k in range(int(counts.max())):
        samples = torch.nonzero(counts > k).view(-1)  # (N,) those with a k-th object
        rows = t[o[samples] + k, : P.N_COLUMNS].clone()
        rows[:, P.BG] = samples
        blend_chunk(images, images, atlas, rows, spec, depth, targets=samples)


def blend_objects_batch(
    images: torch.Tensor, bg_images: torch.Tensor, atlas: torch.Tensor, table: torch.Tensor,
    offset: torch.Tensor, spec: BlendSpec, bg_depth: torch.Tensor | None = None, chunk: int = 16,
) -> None:
    """:func:`blend_objects_chunk` over a batch, ``chunk`` samples at a time (bounded memory).

    Arguments as for :func:`blend_objects_chunk`; ``chunk`` ≥ 1.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    check_array(offset, "offset", "int64", ["B1"])
    if len(offset) != len(images) + 1:
        raise ValueError(f"offset must have {len(images) + 1} entries for {len(images)} images, got {len(offset)}")
    o = offset.cpu()
    with _exact_convolutions(images):
        for start in range(0, len(images), chunk):
            stop = min(start + chunk, len(images))
            first, last = int(o[start]), int(o[stop])
            blend_objects_chunk(images[start:stop], bg_images, atlas, table[first:last],
                                o[start : stop + 1] - first, spec, bg_depth)
