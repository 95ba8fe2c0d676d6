"""The composite kernels against the NumPy reference, each other, and Pillow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kernels import placement as P
from kernels.composite import composite_batch
from kernels.reference import composite_reference


def soft_sprite(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``(h, w, 4) uint8`` random colours with an ellipse alpha and a soft edge."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy + 0.5 - h / 2) / (h / 2), (xx + 0.5 - w / 2) / (w / 2))
    alpha = np.clip((1.0 - r) * 4.0, 0, 1) * 255
    rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    rgba[..., 3] = np.floor(alpha + 0.5).astype(np.uint8)
    return rgba


def random_batch(rng: np.random.Generator, n: int, height: int, width: int, n_bg: int = 3):
    """Backgrounds, depth bits, a packed atlas and an in-bounds placement table."""
    bg = rng.integers(0, 256, (n_bg, height, width, 3), dtype=np.uint8)
    depth = rng.integers(0, 0x7BFF, (n_bg, height, width), dtype=np.uint16)
    sprites, table, offset = [], np.zeros((n, P.N_COLUMNS), np.int64), 0
    for b in range(n):
        h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        sprite = soft_sprite(rng, h, w)
        table[b, P.BG] = rng.integers(n_bg)
        table[b, P.OFFSET] = offset
        table[b, P.X] = rng.integers(0, width - w + 1)
        table[b, P.Y] = rng.integers(0, height - h + 1)
        table[b, P.H], table[b, P.W] = h, w
        table[b, P.FLIP] = rng.integers(2)
        table[b, P.DEPTH] = rng.integers(0, 0x7BFF)
        sprites.append(sprite.reshape(-1))
        offset += sprite.size
    return bg, depth, np.concatenate(sprites), table


def cut_by_the_border(rng: np.random.Generator, table: np.ndarray, height: int, width: int) -> np.ndarray:
    """``table`` with every box moved to a random place that meets the image, most of them
    reaching beyond a border (``--truncation``); the first four cut left, right, top, bottom."""
    t = table.copy()
    h, w = t[:, P.H], t[:, P.W]
    t[:, P.X] = rng.integers(1 - w, width)
    t[:, P.Y] = rng.integers(1 - h, height)
    n = len(t)
    for i, (col, value) in enumerate([(P.X, -1), (P.X, width - 1), (P.Y, -1), (P.Y, height - 1)][:n]):
        size = t[i, P.W if col == P.X else P.H]
        t[i, col] = value - (size // 2 if value < 0 else 0)  # about half outside, at least one pixel inside
    return t


def run_kernel(device: str, bg, depth, atlas, table, threshold: int, with_alpha: bool = True, occlusion: bool = False):
    n = len(table)
    _, height, width, _ = bg.shape
    outs = [
        np.zeros((n, height, width, 3), np.uint8),
        np.zeros((n, height, width), np.uint8),
        np.zeros((n, height, width), np.uint16),
        np.zeros((n, height, width), np.uint8) if with_alpha else None,
    ]
    if device == "cpu":
        composite_batch(bg, depth, atlas, table, threshold, *outs, occlusion=occlusion)
        return outs
    from numba import cuda

    from kernels.composite_cuda import composite_batch_cuda

    d_outs = [None if o is None else cuda.to_device(o) for o in outs]
    composite_batch_cuda(
        cuda.to_device(bg), cuda.to_device(depth), cuda.to_device(atlas), cuda.to_device(table),
        threshold, *d_outs, occlusion=occlusion,
    )
    return [None if o is None else o.copy_to_host() for o in d_outs]


def small_shape(device: str) -> tuple[int, int, int]:
    # The CUDA simulator runs every thread in Python: keep its batches tiny.
    return (3, 10, 12) if device == "cuda" else (12, 37, 53)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(kernel_device: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, height, width = small_shape(kernel_device)
    bg, depth, atlas, table = random_batch(rng, n, height, width)
    got = run_kernel(kernel_device, bg, depth, atlas, table, 127)
    want = composite_reference(bg, depth, atlas, table, 127)
    for name, g, w in zip(("images", "masks", "depth", "alpha"), got, want):
        np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("seed", [0, 1])
def test_occlusion_matches_reference(kernel_device: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, height, width = small_shape(kernel_device)
    bg, depth, atlas, table = random_batch(rng, n, height, width)
    depth[:, : height // 2] = 0  # unknown depth never occludes
    got = run_kernel(kernel_device, bg, depth, atlas, table, 127, occlusion=True)
    want = composite_reference(bg, depth, atlas, table, 127, occlusion=True)
    for name, g, w in zip(("images", "masks", "depth", "alpha"), got, want):
        np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("occlusion", [False, True])
def test_boxes_cut_by_the_border_match_reference(kernel_device: str, occlusion: bool) -> None:
    """--truncation: placements reaching beyond the image write only the pixels inside."""
    rng = np.random.default_rng(11)
    n, height, width = small_shape(kernel_device)
    n = max(n, 4)
    bg, depth, atlas, table = random_batch(rng, n, height, width)
    table = cut_by_the_border(rng, table, height, width)
    assert (table[:, P.X] < 0).any() and (table[:, P.Y] < 0).any()
    assert (table[:, P.X] + table[:, P.W] > width).any() and (table[:, P.Y] + table[:, P.H] > height).any()
    depth[:, : height // 3] = 0
    got = run_kernel(kernel_device, bg, depth, atlas, table, 127, occlusion=occlusion)
    want = composite_reference(bg, depth, atlas, table, 127, occlusion=occlusion)
    for name, g, w in zip(("images", "masks", "depth", "alpha"), got, want):
        np.testing.assert_array_equal(g, w, err_msg=name)
    assert got[1].any()


def test_a_box_cut_by_the_border_is_the_inner_part_of_a_larger_canvas() -> None:
    """Pasting at (-3, -2) equals pasting at (0, 0) on a canvas 3 px wider and 2 px taller, then cropping."""
    rng = np.random.default_rng(2)
    bg, depth, atlas, table = random_batch(rng, 1, 14, 18)
    big_bg = np.zeros((3, 16, 21, 3), np.uint8)
    big_bg[:, 2:, 3:] = bg
    big_depth = np.zeros((3, 16, 21), np.uint16)
    big_depth[:, 2:, 3:] = depth
    table[0, [P.X, P.Y]] = 0
    big = run_kernel("cpu", big_bg, big_depth, atlas, table, 127)
    table[0, [P.X, P.Y]] = -3, -2
    cut = run_kernel("cpu", bg, depth, atlas, table, 127)
    for c, b in zip(cut, big):
        np.testing.assert_array_equal(c, b[:, 2:, 3:])


def test_a_near_box_hides_the_foreground() -> None:
    """Background at 20 m with a box at 5 m; the car's plane is at 10 m: hidden only behind the box."""
    height, width = 20, 30
    depth = np.full((1, height, width), np.float16(20).view(np.uint16), np.uint16)
    depth[0, 5:15, 10:14] = np.float16(5).view(np.uint16)
    sprite = np.full((12, 20, 4), 255, np.uint8)
    table = np.array([[0, 0, 5, 4, 12, 20, 0, np.float16(10).view(np.uint16)]], np.int64)
    bg = np.zeros((1, height, width, 3), np.uint8)
    _, masks, d, alpha = run_kernel("cpu", bg, depth, sprite.reshape(-1), table, 127, occlusion=True)
    expected = np.zeros((height, width), bool)
    expected[4:16, 5:25] = True
    expected[5:15, 10:14] = False
    np.testing.assert_array_equal(masks[0] > 0, expected)
    np.testing.assert_array_equal(d[0].view(np.float16)[5:15, 10:14], 5)
    np.testing.assert_array_equal(d[0].view(np.float16)[expected], 10)
    assert not alpha[0, 5:15, 10:14].any()


def test_cpu_equals_cuda_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    bg, depth, atlas, table = random_batch(rng, 4, 9, 11)
    cpu = run_kernel("cpu", bg, depth, atlas, table, 60)
    gpu = run_kernel("cuda", bg, depth, atlas, table, 60)
    for c, g in zip(cpu, gpu):
        np.testing.assert_array_equal(c, g)


def test_shapes_and_no_alpha_output(kernel_device: str) -> None:
    rng = np.random.default_rng(3)
    n, height, width = small_shape(kernel_device)
    bg, depth, atlas, table = random_batch(rng, n, height, width)
    images, masks, d, alpha = run_kernel(kernel_device, bg, depth, atlas, table, 127, with_alpha=False)
    assert alpha is None
    assert images.shape == (n, height, width, 3) and masks.shape == d.shape == (n, height, width)
    assert set(np.unique(masks)) <= {0, 255}


@pytest.mark.parametrize("flip", [0, 1])
def test_within_one_of_pillow_alpha_composite(flip: int) -> None:
    """Straight-alpha over at scale 1 agrees with Pillow's alpha_composite to ±1."""
    rng = np.random.default_rng(11 + flip)
    height, width = 64, 80
    bg = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    sprite = soft_sprite(rng, 30, 50)
    x, y = 17, 21
    table = np.array([[0, 0, x, y, 30, 50, flip, 0]], np.int64)
    images, *_ = run_kernel("cpu", bg, np.zeros((1, height, width), np.uint16), sprite.reshape(-1), table, 127)

    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    layer.paste(Image.fromarray(sprite[:, ::-1] if flip else sprite, "RGBA"), (x, y))
    want = np.asarray(Image.alpha_composite(Image.fromarray(bg[0]).convert("RGBA"), layer).convert("RGB"))
    diff = np.abs(images[0].astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.95


def test_mask_and_depth_follow_threshold() -> None:
    """mask = alpha > threshold; depth is the plane's where masked, the background's elsewhere."""
    alpha = np.arange(256, dtype=np.uint8).reshape(16, 16)
    sprite = np.zeros((16, 16, 4), np.uint8)
    sprite[..., 3] = alpha
    bg_depth = np.full((1, 16, 16), 0x1234, np.uint16)
    table = np.array([[0, 0, 0, 0, 16, 16, 0, 0x4321]], np.int64)
    for threshold in (0, 127, 200, 254):
        _, masks, depth, out_alpha = run_kernel(
            "cpu", np.zeros((1, 16, 16, 3), np.uint8), bg_depth, sprite.reshape(-1), table, threshold
        )
        np.testing.assert_array_equal(masks[0] == 255, alpha > threshold)
        np.testing.assert_array_equal(depth[0], np.where(alpha > threshold, 0x4321, 0x1234))
        np.testing.assert_array_equal(out_alpha[0], alpha)


def test_flip_mirrors_the_foreground() -> None:
    rng = np.random.default_rng(5)
    bg, depth, atlas, table = random_batch(rng, 1, 20, 30)
    table[0, P.FLIP] = 0
    plain = run_kernel("cpu", bg, depth, atlas, table, 127)[3]
    table[0, P.FLIP] = 1
    flipped = run_kernel("cpu", bg, depth, atlas, table, 127)[3]
    x, y, h, w = (int(table[0, c]) for c in (P.X, P.Y, P.H, P.W))
    np.testing.assert_array_equal(flipped[0, y : y + h, x : x + w], plain[0, y : y + h, x : x + w][:, ::-1])


@pytest.mark.parametrize(
    "column, value, message",
    [(P.X, 50, "out of bounds"), (P.X, -10**6, "out of bounds"), (P.Y, 20, "out of bounds"), (P.BG, 9, "out of bounds"), (P.OFFSET, 10**9, "out of bounds"), (P.H, 0, "out of bounds")],
)
def test_rejects_bad_placements(column: int, value: int, message: str) -> None:
    rng = np.random.default_rng(0)
    bg, depth, atlas, table = random_batch(rng, 2, 20, 30)
    table[1, column] = value
    with pytest.raises(ValueError, match=message):
        run_kernel("cpu", bg, depth, atlas, table, 127)


def test_rejects_wrong_dtypes_and_shapes() -> None:
    rng = np.random.default_rng(0)
    bg, depth, atlas, table = random_batch(rng, 2, 20, 30)
    with pytest.raises(TypeError, match="bg_images must have dtype uint8"):
        run_kernel("cpu", bg.astype(np.int16), depth, atlas, table, 127)
    with pytest.raises(ValueError, match="bg_depth must have shape"):
        run_kernel("cpu", bg, depth[..., None], atlas, table, 127)
    with pytest.raises(ValueError, match="threshold"):
        run_kernel("cpu", bg, depth, atlas, table, 255)


@pytest.mark.gpu
def test_real_gpu_matches_cpu_on_a_full_batch() -> None:
    rng = np.random.default_rng(42)
    bg, depth, atlas, table = random_batch(rng, 256, 224, 224, n_bg=8)
    cpu = run_kernel("cpu", bg, depth, atlas, table, 127)
    gpu = run_kernel("cuda", bg, depth, atlas, table, 127)
    for c, g in zip(cpu, gpu):
        np.testing.assert_array_equal(c, g)


def test_launch_geometry_stays_within_cuda_limits() -> None:
    """Real GPUs refuse grids past their limits (the simulator does not check):
    the 1-D grid covers every pixel, even for shards far beyond the default."""
    from kernels.composite_cuda import MAX_BLOCKS, THREADS, launch_blocks

    for n, h, w in [(1, 16, 16), (2048, 224, 224), (4096, 224, 224), (8192, 512, 512)]:
        blocks = launch_blocks(n, h, w)
        assert blocks <= MAX_BLOCKS and blocks * THREADS >= n * h * w > (blocks - 1) * THREADS
    with pytest.raises(ValueError, match="exceed one kernel launch"):
        launch_blocks(2**20, 4096, 4096)
