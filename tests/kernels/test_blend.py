"""Blending modes against plain NumPy references on tiny images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kernels import placement as P
from kernels.blend import (
    BLEND_MODES,
    BlendSpec,
    blend_batch,
    blend_objects_batch,
    feather,
    foreground_layer,
    harmonize,
    margin,
    motion,
    over,
    poisson,
)
from kernels.reference import composite_reference

H, W = 12, 16


def scene(seed: int = 0, occluders: bool = False, size: tuple[int, int] = (H, W),
          cut: bool = False) -> dict[str, np.ndarray]:
    """2 backgrounds, 2 foregrounds (soft edges), 4 placements (one flipped); ``size`` ≥ (12, 16);
    ``cut``: the placements reach beyond the left, right, top and bottom borders (``--truncation``)."""
    H, W = size  # noqa: N806 - the image size, as elsewhere
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    depth = np.full((2, H, W), np.float16(20.0)).view(np.uint16)
    if occluders:
        depth[:, :, :5] = np.float16(2.0).view(np.uint16)  # a near wall on the left
    fgs = []
    for h, w in ((6, 7), (5, 9)):
        fg = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        fg[..., 3] = 255
        fg[0, :, 3] = fg[:, 0, 3] = 90  # soft rim on two sides
        fg[-1, -1, 3] = 0
        fgs.append(fg)
    atlas = np.concatenate([f.reshape(-1) for f in fgs])
    offsets = [0, fgs[0].size]
    rows = [(0, 0, 2, 3, 0, 10.0), (1, 1, 6, 6, 1, 10.0), (0, 1, 0, 0, 0, 10.0), (1, 0, 9, 5, 1, 10.0)]
    if cut:
        rows = [(0, 0, -3, 3, 0, 10.0), (1, 1, W - 5, 2, 1, 10.0), (0, 1, 4, -2, 0, 10.0), (1, 0, 3, H - 3, 1, 10.0)]
    table = np.zeros((len(rows), P.N_COLUMNS), np.int64)
    for i, (b, f, x, y, flip, d) in enumerate(rows):
        h, w = fgs[f].shape[:2]
        table[i, [P.BG, P.OFFSET, P.X, P.Y, P.H, P.W, P.FLIP]] = b, offsets[f], x, y, h, w, flip
        table[i, P.DEPTH] = int(np.float16(d).view(np.uint16))
    return {"bg": bg, "depth": depth, "atlas": atlas, "table": table}


def layer(s: dict[str, np.ndarray], occlusion: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rgb, alpha = foreground_layer(
        torch.from_numpy(s["atlas"]), torch.from_numpy(s["table"]), *s["bg"].shape[1:3],
        torch.from_numpy(s["depth"].view(np.int16)) if occlusion else None,
    )
    bg = torch.from_numpy(s["bg"][s["table"][:, P.BG]]).permute(0, 3, 1, 2).float()
    return rgb, alpha, bg


def alpha_images(s: dict[str, np.ndarray], occlusion: bool = False) -> np.ndarray:
    return composite_reference(s["bg"], s["depth"], s["atlas"], s["table"], 127, occlusion)[0]


def blended(s: dict[str, np.ndarray], spec: BlendSpec, occlusion: bool = False) -> np.ndarray:
    images = alpha_images(s, occlusion).copy()
    blend_batch(torch.from_numpy(images), torch.from_numpy(s["bg"]), torch.from_numpy(s["atlas"]),
                torch.from_numpy(s["table"]), spec,
                torch.from_numpy(s["depth"].view(np.int16)) if occlusion else None, chunk=3)
    return images


@pytest.mark.parametrize("occlusion", [False, True])
def test_foreground_layer_over_background_is_the_kernels_composite(occlusion: bool) -> None:
    s = scene(occluders=occlusion)
    rgb, alpha, bg = layer(s, occlusion)
    assert rgb.shape == (4, 3, H, W) and alpha.shape == (4, 1, H, W)
    np.testing.assert_array_equal(over(rgb * alpha, alpha, bg).numpy(), alpha_images(s, occlusion))


def test_alpha_alone_changes_nothing() -> None:
    s = scene()
    assert not BlendSpec().active
    np.testing.assert_array_equal(blended(s, BlendSpec()), alpha_images(s))


def test_feather_with_tiny_sigma_is_alpha() -> None:
    s = scene(1)
    np.testing.assert_array_equal(blended(s, BlendSpec(mode="feather", feather_sigma=0.05)), alpha_images(s))


def _blur_reference(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation with replicated borders, one pixel at a time (float64)."""
    k = kernel.shape[0] // 2
    p = np.pad(x, ((0, 0), (0, 0), (k, k), (k, k)), mode="edge")
    out = np.zeros_like(x)
    for r in range(x.shape[2]):
        for c in range(x.shape[3]):
            out[:, :, r, c] = (p[:, :, r : r + 2 * k + 1, c : c + 2 * k + 1] * kernel).sum((2, 3))
    return out


def test_feather_matches_a_loop_reference() -> None:
    s = scene(2)
    sigma = 1.3
    rgb, alpha, bg = layer(s)
    pm, soft = feather(rgb, alpha, sigma)
    size = 2 * int(np.ceil(3 * sigma)) + 1
    g = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    g /= g.sum()
    a = alpha.double().numpy()
    c = rgb.double().numpy()
    blurred = _blur_reference(np.concatenate([c * a, a], 1), np.outer(g, g))
    soft_ref = np.clip(blurred[:, 3:], 0, 1)
    colour = np.where(a > 0, c, blurred[:, :3] / np.maximum(blurred[:, 3:], 1e-6))
    np.testing.assert_allclose(soft.numpy(), soft_ref, atol=1e-5)
    np.testing.assert_allclose(pm.numpy(), colour * soft_ref, atol=2e-3)
    assert (soft_ref[alpha.numpy() == 0] > 0).any()  # the rim really spreads outward


def test_motion_of_length_one_is_alpha() -> None:
    s = scene(3)
    np.testing.assert_array_equal(blended(s, BlendSpec(mode="motion", motion_length=1)), alpha_images(s))


def test_horizontal_motion_is_a_box_filter_along_rows() -> None:
    s = scene(4)
    rgb, alpha, bg = layer(s)
    pm, a = motion(rgb, alpha, 5, 0.0)
    kernel = np.zeros((5, 5))
    kernel[2] = 1 / 5
    ref = _blur_reference(torch.cat([rgb * alpha, alpha], 1).double().numpy(), kernel)
    np.testing.assert_allclose(pm.numpy(), ref[:, :3], atol=2e-3)
    np.testing.assert_allclose(a.numpy(), ref[:, 3:], atol=1e-6)
    # vertical (90°): the same box filter along columns
    pm90, _ = motion(rgb, alpha, 5, 90.0)
    ref90 = _blur_reference((rgb * alpha).double().numpy(), kernel.T)
    np.testing.assert_allclose(pm90.numpy(), ref90, atol=2e-3)


def test_poisson_of_a_constant_object_over_a_constant_background_is_the_background() -> None:
    rgb = torch.zeros(2, 3, H, W)
    rgb[:, :, 3:9, 4:12] = torch.tensor([200.0, 30.0, 90.0]).view(1, 3, 1, 1)
    alpha = (rgb[:, :1] > 0).float()
    bg = torch.tensor([[10.0, 120.0, 240.0], [60.0, 60.0, 60.0]]).view(2, 3, 1, 1).expand(2, 3, H, W)
    out = poisson(rgb, alpha, bg, 2000, 1e-6)
    inside = alpha.expand(2, 3, H, W) > 0
    np.testing.assert_allclose(out[inside].numpy(), bg[inside].numpy(), atol=0.05)


def _poisson_reference(g: np.ndarray, inside: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Dense direct solve of the same 5-point system, one channel (float64)."""
    h, w = inside.shape
    cells = list(zip(*np.nonzero(inside)))
    index = {p: i for i, p in enumerate(cells)}
    A = np.zeros((len(cells), len(cells)))
    b = np.zeros(len(cells))
    for i, (r, c) in enumerate(cells):
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if not (0 <= rr < h and 0 <= cc < w):
                continue
            A[i, i] += 1
            if inside[rr, cc]:
                A[i, index[(rr, cc)]] -= 1
                b[i] += g[r, c] - g[rr, cc]
            else:
                b[i] += bg[rr, cc]
    out = g.copy()
    for i, v in zip(range(len(cells)), np.linalg.solve(A, b)):
        out[cells[i]] = v
    return out


def test_poisson_matches_a_direct_solve() -> None:
    s = scene(5)
    rgb, alpha, bg = layer(s)
    out = poisson(rgb, alpha, bg, 2000, 1e-6).double().numpy()
    for b in range(len(rgb)):
        inside = alpha[b, 0].numpy() > 0
        for k in range(3):
            ref = _poisson_reference(rgb[b, k].double().numpy(), inside, bg[b, k].double().numpy())
            np.testing.assert_allclose(out[b, k][inside], ref[inside], atol=0.02)


def test_harmonize_moves_the_objects_mean_to_the_rings_mean() -> None:
    from kornia.color import rgb_to_lab

    rgb = torch.zeros(1, 3, H, W)
    rgb[:, :, 3:9, 4:12] = torch.linspace(60, 140, 8).view(1, 1, 1, 8) * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)
    alpha = torch.zeros(1, 1, H, W)
    alpha[:, :, 3:9, 4:12] = 1
    bg = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0)) * 60 + torch.tensor(
        [90.0, 140.0, 100.0]).view(1, 3, 1, 1)
    out = harmonize(rgb, alpha, bg, 2)
    obj = alpha[0, 0] > 0
    ring = torch.nn.functional.max_pool2d(alpha, 5, 1, 2)[0, 0].bool() & ~obj
    lab_out = rgb_to_lab(out / 255)[0][:, obj].mean(1)
    lab_ring = rgb_to_lab(bg / 255)[0][:, ring].mean(1)
    np.testing.assert_allclose(lab_out.numpy(), lab_ring.numpy(), atol=0.2)
    assert torch.equal(out[:, :, ~obj], rgb[:, :, ~obj])  # only the object changes


@pytest.mark.parametrize("mode", ["feather", "motion", "poisson"])
def test_modes_change_the_image_only_near_the_object(mode: str) -> None:
    s = scene(6)
    spec = BlendSpec(mode=mode, feather_sigma=1.0, motion_length=3)
    out = blended(s, spec)
    ref = alpha_images(s)
    assert not np.array_equal(out, ref)
    far = np.ones((4, H, W), bool)
    for b, row in enumerate(s["table"]):
        x, y, h, w = row[P.X], row[P.Y], row[P.H], row[P.W]
        far[b, max(y - 4, 0) : y + h + 4, max(x - 4, 0) : x + w + 4] = False
    np.testing.assert_array_equal(out[far], ref[far])


def test_spec_checks_its_values() -> None:
    assert BLEND_MODES[0] == "alpha"
    for bad in (dict(mode="smudge"), dict(feather_sigma=-1), dict(motion_length=0), dict(poisson_tolerance=0)):
        with pytest.raises(ValueError):
            BlendSpec(**bad)


@pytest.mark.gpu
@pytest.mark.parametrize("spec", [
    BlendSpec(mode="feather"), BlendSpec(mode="motion", motion_angle=30.0), BlendSpec(mode="poisson"),
    BlendSpec(harmonize=True),
])
def test_cpu_and_cuda_agree(spec: BlendSpec) -> None:
    """Documented tolerance: at most 2 grey levels anywhere, mean below 0.05."""
    s = scene(7, occluders=True)
    cpu = blended(s, spec, occlusion=True)
    images = torch.from_numpy(alpha_images(s, True)).cuda()
    blend_batch(images, torch.from_numpy(s["bg"]).cuda(), torch.from_numpy(s["atlas"]).cuda(),
                torch.from_numpy(s["table"]).cuda(), spec, torch.from_numpy(s["depth"].view(np.int16)).cuda())
    diff = np.abs(images.cpu().numpy().astype(int) - cpu.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05


def whole_image_layer(rgb: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor,
                      spec: BlendSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference of one object's layer on whole images: premultiplied colour and alpha of
    ``spec``'s mode (harmonized first), straight from the mode functions, for ``over(pm, a, bg)``."""
    if spec.harmonize:
        rgb = harmonize(rgb, alpha, bg, spec.harmonize_ring)
    if spec.mode == "feather":
        return feather(rgb, alpha, spec.feather_sigma)
    if spec.mode == "motion":
        return motion(rgb, alpha, spec.motion_length, spec.motion_angle)
    if spec.mode == "poisson":
        return poisson(rgb, alpha, bg, 2000, 1e-5).clamp(0, 255) * alpha, alpha
    return rgb * alpha, alpha


@pytest.mark.parametrize("spec", [
    BlendSpec(mode="feather", feather_sigma=1.2), BlendSpec(mode="motion", motion_length=5, motion_angle=60.0),
    BlendSpec(mode="poisson"), BlendSpec(harmonize=True, harmonize_ring=2),
    BlendSpec(mode="feather", harmonize=True, harmonize_ring=3),
], ids=["feather", "motion", "poisson", "harmonize", "feather+harmonize"])
@pytest.mark.parametrize("occlusion", [False, True])
def test_windowed_chunks_equal_the_whole_image_maths(spec: BlendSpec, occlusion: bool) -> None:
    """blend_batch works in a window per chunk; the functions on whole images are the reference."""
    s = scene(8, occluders=occlusion, size=(40, 56))  # windows smaller than the image
    rgb, alpha, bg = layer(s, occlusion)
    whole = over(*whole_image_layer(rgb, alpha, bg, spec), bg).numpy().astype(int)
    assert np.abs(blended(s, spec, occlusion).astype(int) - whole).max() <= 1


@pytest.mark.parametrize("occlusion", [False, True])
def test_objects_cut_by_the_border_layer_and_no_op_modes_are_the_kernels_composite(occlusion: bool) -> None:
    s = scene(9, occluders=occlusion, cut=True)
    rgb, alpha, bg = layer(s, occlusion)
    np.testing.assert_array_equal(over(rgb * alpha, alpha, bg).numpy(), alpha_images(s, occlusion))
    for spec in (BlendSpec(mode="feather", feather_sigma=0.05), BlendSpec(mode="motion", motion_length=1)):
        np.testing.assert_array_equal(blended(s, spec, occlusion), alpha_images(s, occlusion))


# -- several objects per image: the layered pass ----------------------------------


def f16(metres: float) -> int:
    return int(np.array(metres, np.float16).view(np.uint16))


def far_to_near(table: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Each sample's rows ordered far to near, ties by instance id (the engine's ``object_table`` rule)."""
    sample = np.repeat(np.arange(len(offset) - 1), np.diff(offset))
    return np.ascontiguousarray(table[np.lexsort((table[:, P.INSTANCE], -table[:, P.DEPTH], sample))])


def object_scene(seed: int, n: int = 6, size: tuple[int, int] = (24, 32), occluders: bool = False) -> dict:
    """3 backgrounds (20 m; with ``occluders`` a 2 m wall on the left of #1 and an
    8 m one on the right of #2), ``n`` samples of 1..3 overlapping soft objects
    at 5..30 m each (sample 0 has 3), rows ordered far to near."""
    from tests.kernels.test_composite import soft_sprite

    H, W = size  # noqa: N806 - the image size, as elsewhere
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    depth = np.full((3, H, W), f16(20.0), np.uint16)
    if occluders:
        depth[1, :, : W // 3] = f16(2.0)
        depth[2, :, W // 2 :] = f16(8.0)
    counts = rng.integers(1, 4, n)
    counts[0] = 3
    rows, sprites, used = [], [], 0
    for b in range(n):
        background = int(rng.integers(3))
        for k in range(counts[b]):
            h, w = int(rng.integers(H // 3, 2 * H // 3 + 1)), int(rng.integers(W // 3, 2 * W // 3 + 1))
            sprite = soft_sprite(rng, h, w)
            rows.append([background, used, rng.integers(0, W - w + 1), rng.integers(0, H - h + 1), h, w,
                         rng.integers(2), f16(float(rng.uniform(5, 30))), k + 1])
            sprites.append(sprite.reshape(-1))
            used += sprite.size
    offset = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    table = far_to_near(np.array(rows, np.int64), offset)
    return {"bg": bg, "depth": depth, "atlas": np.concatenate(sprites), "table": table, "offset": offset}


def objects_kernel_images(s: dict, occlusion: bool = False) -> np.ndarray:
    from kernels.composite import composite_objects_batch

    n = len(s["offset"]) - 1
    _, height, width, _ = s["bg"].shape
    outs = [np.zeros((n, height, width, 3), np.uint8), np.zeros((n, height, width), np.uint8),
            np.zeros((n, height, width), np.uint16), np.zeros((n, height, width), np.uint16)]
    composite_objects_batch(s["bg"], s["depth"], s["atlas"], s["table"], s["offset"], 127, *outs,
                            occlusion=occlusion)
    return outs[0]


def blended_objects(s: dict, spec: BlendSpec, occlusion: bool = False, chunk: int = 4) -> np.ndarray:
    images = objects_kernel_images(s, occlusion)
    blend_objects_batch(torch.from_numpy(images), torch.from_numpy(s["bg"]), torch.from_numpy(s["atlas"]),
                        torch.from_numpy(s["table"]), torch.from_numpy(s["offset"]), spec,
                        torch.from_numpy(s["depth"].view(np.int16)) if occlusion else None, chunk=chunk)
    return images


def layered_reference(s: dict, spec: BlendSpec, occlusion: bool) -> np.ndarray:
    """The layered pass on whole images, one sample and one object at a time (no windows, no chunks)."""
    out = []
    depth = torch.from_numpy(s["depth"].view(np.int16)) if occlusion else None
    _, height, width, _ = s["bg"].shape
    for b in range(len(s["offset"]) - 1):
        rows = torch.from_numpy(s["table"][s["offset"][b] : s["offset"][b + 1], : P.N_COLUMNS])
        canvas = torch.from_numpy(s["bg"][int(rows[0, P.BG])]).permute(2, 0, 1)[None].float()
        for k in range(len(rows)):
            rgb, alpha = foreground_layer(torch.from_numpy(s["atlas"]), rows[k : k + 1], height, width, depth)
            canvas = over(*whole_image_layer(rgb, alpha, canvas, spec), canvas).permute(0, 3, 1, 2).float()
        out.append(canvas[0].permute(1, 2, 0).to(torch.uint8).numpy())
    return np.stack(out)


@pytest.mark.parametrize("spec", [
    BlendSpec(mode="feather", feather_sigma=0.0), BlendSpec(mode="feather", feather_sigma=0.05),
    BlendSpec(mode="motion", motion_length=1),
], ids=["feather0", "feather0.05", "motion1"])
@pytest.mark.parametrize("occlusion", [False, True])
def test_layers_without_blur_are_the_several_objects_kernels_bytes(spec: BlendSpec, occlusion: bool) -> None:
    s = object_scene(0, n=8, occluders=occlusion)
    want = objects_kernel_images(s, occlusion)
    got = blended_objects(s, spec, occlusion, chunk=3)
    np.testing.assert_array_equal(got, want)
    # the canvases really were rebuilt (from the backgrounds), not left as the kernel wrote them
    scrambled = np.zeros_like(want)
    blend_objects_batch(torch.from_numpy(scrambled), torch.from_numpy(s["bg"]), torch.from_numpy(s["atlas"]),
                        torch.from_numpy(s["table"]), torch.from_numpy(s["offset"]), spec,
                        torch.from_numpy(s["depth"].view(np.int16)) if occlusion else None, chunk=5)
    np.testing.assert_array_equal(scrambled, want)


@pytest.mark.parametrize("spec", [
    BlendSpec(mode="feather", feather_sigma=1.2), BlendSpec(mode="motion", motion_length=5, motion_angle=60.0),
    BlendSpec(mode="poisson"), BlendSpec(harmonize=True, harmonize_ring=2),
], ids=["feather", "motion", "poisson", "harmonize"])
def test_windows_of_objects_cut_by_the_border_equal_the_whole_image_maths(spec: BlendSpec) -> None:
    """The post-pass window is clamped to the image: a cut object's window holds all its visible part."""
    s = scene(10, size=(40, 56), cut=True)
    rgb, alpha, bg = layer(s)
    whole = over(*whole_image_layer(rgb, alpha, bg, spec), bg).numpy().astype(int)
    out = blended(s, spec)
    assert np.abs(out.astype(int) - whole).max() <= 1
    assert not np.array_equal(out, alpha_images(s))


@pytest.mark.parametrize("spec", [
    BlendSpec(mode="feather", feather_sigma=1.2), BlendSpec(mode="motion", motion_length=5, motion_angle=60.0),
    BlendSpec(mode="poisson"), BlendSpec(harmonize=True, harmonize_ring=2),
], ids=["feather", "motion", "poisson", "harmonize"])
def test_one_object_each_is_the_one_object_pass(spec: BlendSpec) -> None:
    s = scene(9, occluders=True)
    objects = np.concatenate([s["table"], np.ones((len(s["table"]), 1), np.int64)], axis=1)
    images = alpha_images(s, True).copy()
    blend_objects_batch(torch.from_numpy(images), torch.from_numpy(s["bg"]), torch.from_numpy(s["atlas"]),
                        torch.from_numpy(objects), torch.arange(len(objects) + 1), spec,
                        torch.from_numpy(s["depth"].view(np.int16)), chunk=3)
    np.testing.assert_array_equal(images, blended(s, spec, occlusion=True))


@pytest.mark.parametrize("spec", [
    BlendSpec(mode="feather", feather_sigma=1.2), BlendSpec(mode="motion", motion_length=5, motion_angle=30.0),
    BlendSpec(mode="poisson"), BlendSpec(harmonize=True, harmonize_ring=2),
    BlendSpec(mode="feather", feather_sigma=0.8, harmonize=True, harmonize_ring=3),
], ids=["feather", "motion", "poisson", "harmonize", "feather+harmonize"])
def test_layered_chunks_equal_the_whole_image_layers(spec: BlendSpec) -> None:
    """Windows, chunks and the canvas index stand-in (with each sample's real
    background depth for the occlusion test) against whole images, one object at a time."""
    s = object_scene(1, n=5, size=(40, 56), occluders=True)  # windows smaller than the image
    got = blended_objects(s, spec, occlusion=True, chunk=2)
    assert not np.array_equal(got, objects_kernel_images(s, True))
    assert np.abs(got.astype(int) - layered_reference(s, spec, occlusion=True).astype(int)).max() <= 1


def near_over_far() -> dict:
    """One 40x56 sample on noise: a far (25 m) red soft-edged 20x32 object at (10, 8), and
    over its middle a near (6 m) opaque green 14x18 one at (17, 11); rows far to near."""
    from tests.kernels.test_composite import soft_sprite

    rng = np.random.default_rng(4)
    bg = rng.integers(40, 120, (1, 40, 56, 3), dtype=np.uint8)
    far = soft_sprite(rng, 20, 32)
    far[..., :3] = (220, 20, 20)
    near = np.zeros((14, 18, 4), np.uint8)
    near[..., 1], near[..., 3] = 200, 255
    table = np.array([[0, 0, 10, 8, 20, 32, 0, f16(25.0), 1],
                      [0, far.size, 17, 11, 14, 18, 0, f16(6.0), 2]], np.int64)
    return {"bg": bg, "depth": np.full((1, 40, 56), f16(40.0), np.uint16),
            "atlas": np.concatenate([far.reshape(-1), near.reshape(-1)]), "table": table,
            "offset": np.array([0, 2], np.int64)}


NEAR = (slice(11, 25), slice(17, 35))  # the near object's box in near_over_far


@pytest.mark.parametrize("spec", [BlendSpec(mode="feather", feather_sigma=1.5),
                                  BlendSpec(mode="motion", motion_length=7, motion_angle=0.0)],
                         ids=["feather", "motion"])
def test_a_far_objects_blur_does_not_bleed_over_a_nearer_one(spec: BlendSpec) -> None:
    s = near_over_far()
    got = blended_objects(s, spec)
    reach = margin(spec)
    interior = (slice(11 + reach, 25 - reach), slice(17 + reach, 35 - reach))  # the near object, its rim off
    assert got[0][interior].size > 0
    np.testing.assert_array_equal(got[0][interior], np.broadcast_to([0, 200, 0], got[0][interior].shape))
    outside_far = np.ones((40, 56), bool)
    outside_far[8:28, 10:42] = False
    assert np.any(got[0] != objects_kernel_images(s)[0], axis=-1)[outside_far].any()  # the far rim did spread
    # drawn the other way round (near first), the far object would cover it
    swapped = dict(s, table=np.ascontiguousarray(s["table"][::-1]))
    assert not np.array_equal(blended_objects(swapped, spec)[0][interior], got[0][interior])


def test_harmonize_with_several_objects_changes_only_the_objects_and_reads_the_canvas() -> None:
    spec = BlendSpec(harmonize=True, harmonize_ring=3)
    s = object_scene(2, n=6)
    got, plain = blended_objects(s, spec), objects_kernel_images(s)
    changed = np.any(got != plain, axis=-1)
    assert changed.any()
    support = np.zeros(changed.shape, bool)  # every object's alpha > 0
    for b in range(len(s["offset"]) - 1):
        for row in s["table"][s["offset"][b] : s["offset"][b + 1]]:
            _, off, x, y, h, w, flip = (int(v) for v in row[:7])
            a = s["atlas"][off : off + h * w * 4].reshape(h, w, 4)[..., 3]
            support[b, y : y + h, x : x + w] |= (a[:, ::-1] if flip else a) > 0
    assert not (changed & ~support).any()
    # the nearer object's ring sees the farther one: without it, the near object's colours differ
    t = near_over_far()
    with_far = blended_objects(t, spec)[0][NEAR]
    alone = dict(t, table=np.ascontiguousarray(t["table"][1:]), offset=np.array([0, 1], np.int64))
    assert not np.array_equal(blended_objects(alone, spec)[0][NEAR], with_far)


def test_objects_pass_checks_its_offsets() -> None:
    s = object_scene(3, n=2)
    images = torch.from_numpy(objects_kernel_images(s))
    args = (torch.from_numpy(s["bg"]), torch.from_numpy(s["atlas"]), torch.from_numpy(s["table"]))
    with pytest.raises(ValueError, match="offset"):
        blend_objects_batch(images, *args, torch.tensor([0, 1], dtype=torch.int64), BlendSpec(mode="feather"))
    with pytest.raises(ValueError, match="offset"):
        bad = torch.from_numpy(s["offset"].copy())
        bad[1] = 0
        blend_objects_batch(images, *args, bad, BlendSpec(mode="feather"))


@pytest.mark.gpu
@pytest.mark.parametrize("spec", [
    BlendSpec(mode="feather"), BlendSpec(mode="motion", motion_angle=30.0), BlendSpec(mode="poisson"),
    BlendSpec(harmonize=True),
])
def test_several_objects_cpu_and_cuda_agree(spec: BlendSpec) -> None:
    """The documented tolerance of one object holds layer by layer: at most 2 grey levels, mean below 0.05."""
    s = object_scene(7, n=8, size=(48, 64), occluders=True)
    cpu = blended_objects(s, spec, occlusion=True)
    images = torch.from_numpy(objects_kernel_images(s, True)).cuda()
    blend_objects_batch(images, torch.from_numpy(s["bg"]).cuda(), torch.from_numpy(s["atlas"]).cuda(),
                        torch.from_numpy(s["table"]).cuda(), torch.from_numpy(s["offset"]).cuda(), spec,
                        torch.from_numpy(s["depth"].view(np.int16)).cuda())
    diff = np.abs(images.cpu().numpy().astype(int) - cpu.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05
