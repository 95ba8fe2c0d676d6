"""The several-objects kernel: far-to-near occlusion, instance ids, CPU = CUDA."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import placement as P
from kernels.composite import composite_batch, composite_objects_batch, instance_stats
from tests.kernels.test_composite import random_batch, soft_sprite


def f16(metres: float) -> int:
    return int(np.array(metres, np.float16).view(np.uint16))


def run_objects(device: str, bg, depth, atlas, table, offset, threshold: int = 127, occlusion: bool = False):
    n = len(offset) - 1
    _, height, width, _ = bg.shape
    outs = [np.zeros((n, height, width, 3), np.uint8), np.zeros((n, height, width), np.uint8),
            np.zeros((n, height, width), np.uint16), np.zeros((n, height, width), np.uint16),
            np.zeros((n, height, width), np.uint8)]
    if device == "cpu":
        composite_objects_batch(bg, depth, atlas, table, offset, threshold, *outs, occlusion=occlusion)
        return outs
    from numba import cuda

    from kernels.composite_cuda import composite_objects_batch_cuda

    d_outs = [cuda.to_device(o) for o in outs]
    composite_objects_batch_cuda(
        cuda.to_device(bg), cuda.to_device(depth), cuda.to_device(atlas), cuda.to_device(table),
        cuda.to_device(offset), threshold, *d_outs, occlusion=occlusion,
    )
    return [o.copy_to_host() for o in d_outs]


def two_boxes(height: int = 32, width: int = 48):
    """Object A (id 1, 20 m, red, opaque 12x16 at (8, 6)) behind object B (id 2,
    5 m, green, opaque 10x14 at (16, 12)); the table rows ordered far to near."""
    bg = np.full((1, height, width, 3), 50, np.uint8)
    depth = np.full((1, height, width), f16(40.0), np.uint16)
    a = np.zeros((12, 16, 4), np.uint8)
    a[..., 0], a[..., 3] = 200, 255
    b = np.zeros((10, 14, 4), np.uint8)
    b[..., 1], b[..., 3] = 180, 255
    atlas = np.concatenate([a.reshape(-1), b.reshape(-1)])
    table = np.zeros((2, P.N_OBJECT_COLUMNS), np.int64)
    table[0, [P.OFFSET, P.X, P.Y, P.H, P.W, P.DEPTH, P.INSTANCE]] = [0, 8, 6, 12, 16, f16(20.0), 1]
    table[1, [P.OFFSET, P.X, P.Y, P.H, P.W, P.DEPTH, P.INSTANCE]] = [a.size, 16, 12, 10, 14, f16(5.0), 2]
    return bg, depth, atlas, table, np.array([0, 2], np.int64)


def test_a_behind_b_pixel_by_pixel(kernel_device: str) -> None:
    bg, depth, atlas, table, offset = two_boxes()
    images, masks, out_depth, ids, alpha = run_objects(kernel_device, bg, depth, atlas, table, offset)
    in_a = np.zeros((32, 48), bool)
    in_a[6:18, 8:24] = True
    in_b = np.zeros((32, 48), bool)
    in_b[12:22, 16:30] = True
    assert (in_a & in_b).sum() > 0  # they do overlap
    want_ids = np.where(in_b, 2, np.where(in_a, 1, 0))
    np.testing.assert_array_equal(ids[0], want_ids)
    np.testing.assert_array_equal(masks[0], np.where(in_a | in_b, 255, 0))
    want_depth = np.where(in_b, f16(5.0), np.where(in_a, f16(20.0), f16(40.0)))
    np.testing.assert_array_equal(out_depth[0], want_depth)
    want_rgb = np.where((want_ids == 2)[..., None], [0, 180, 0], np.where((want_ids == 1)[..., None], [200, 0, 0], 50))
    np.testing.assert_array_equal(images[0], want_rgb)
    np.testing.assert_array_equal(alpha[0], masks[0])


def union_coverage(depth, atlas, table, offset, occlusion: bool) -> np.ndarray:
    """``(B, H, W) uint8`` the kernel's ``alpha`` by its formula, in NumPy: far to near,
    ``cover = (a * 255 + cover * (255 - a) + 127) // 255`` over every object that reaches the pixel."""
    n = len(offset) - 1
    _, height, width = depth.shape
    cover = np.zeros((n, height, width), np.int64)
    for b in range(n):
        for o in range(offset[b], offset[b + 1]):
            x, y, h, w = (int(table[o, c]) for c in (P.X, P.Y, P.H, P.W))
            a = atlas[table[o, P.OFFSET] : table[o, P.OFFSET] + h * w * 4].reshape(h, w, 4)[..., 3].astype(np.int64)
            if table[o, P.FLIP]:
                a = a[:, ::-1]
            behind = depth[table[o, P.BG], y : y + h, x : x + w].astype(np.int64)
            if occlusion:  # hidden by a nearer background surface: no coverage there
                a = np.where((behind != 0) & (behind < table[o, P.DEPTH]), 0, a)
            under = cover[b, y : y + h, x : x + w]
            cover[b, y : y + h, x : x + w] = (a * 255 + under * (255 - a) + 127) // 255
    return cover.astype(np.uint8)


@pytest.mark.parametrize("occlusion", [False, True])
def test_alpha_is_the_union_coverage_of_soft_objects(kernel_device: str, occlusion: bool) -> None:
    """Two soft objects over one pixel: alpha follows the kernel's formula exactly (CPU and CUDA);
    it is above the threshold wherever the mask is set, and may be where neither object alone is."""
    rng = np.random.default_rng(11)
    bg, depth, atlas, table, offset = random_objects(rng, 6, 24, 32)
    depth[:] = np.where(rng.random(depth.shape) < 0.3, rng.integers(0, 0x7BFF, depth.shape), 0x7BFF)
    _, masks, _, ids, alpha = run_objects(kernel_device, bg, depth, atlas, table, offset, occlusion=occlusion)
    np.testing.assert_array_equal(alpha, union_coverage(depth, atlas, table, offset, occlusion))
    assert (alpha[masks == 255] > 127).all() and (masks[ids > 0] == 255).all()
    # a pixel two half-transparent objects cover: 100 over 100 is 100 + 100 * 155 / 255 = 161, no mask
    sprite = np.zeros((4, 4, 4), np.uint8)
    sprite[..., 3] = 100
    two = np.zeros((2, P.N_OBJECT_COLUMNS), np.int64)
    two[:, [P.OFFSET, P.H, P.W, P.DEPTH]] = [0, 4, 4, f16(5.0)]
    two[:, P.INSTANCE] = [1, 2]
    two[1, P.X] = 2
    _, masks, _, ids, alpha = run_objects(kernel_device, bg[:1], depth[:1] * 0, sprite.reshape(-1), two,
                                          np.array([0, 2], np.int64))
    assert alpha[0, 0, 2] == (100 * 255 + 100 * 155 + 127) // 255 == 161 and alpha[0, 0, 0] == 100
    assert not masks.any() and not ids.any()


def test_background_occlusion_applies_to_every_object(kernel_device: str) -> None:
    """A wall at 10 m over the left half: it hides A (20 m) but not B (5 m)."""
    bg, depth, atlas, table, offset = two_boxes()
    depth[0, :, :20] = f16(10.0)
    _, masks, out_depth, ids, _ = run_objects(kernel_device, bg, depth, atlas, table, offset, occlusion=True)
    assert (ids[0, :, :20] != 1).all()
    assert (ids[0, 6:12, 20:24] == 1).all()
    assert (ids[0, 12:22, 16:30] == 2).all()
    np.testing.assert_array_equal(out_depth[0][ids[0] == 0], depth[0][ids[0] == 0])
    np.testing.assert_array_equal(masks[0] > 0, ids[0] > 0)


def test_one_object_each_equals_the_one_object_kernel() -> None:
    rng = np.random.default_rng(0)
    bg, depth, atlas, table = random_batch(rng, 8, 32, 48)
    single = [np.zeros((8, 32, 48, 3), np.uint8), np.zeros((8, 32, 48), np.uint8),
              np.zeros((8, 32, 48), np.uint16), np.zeros((8, 32, 48), np.uint8)]
    composite_batch(bg, depth, atlas, table, 127, *single, occlusion=True)
    objects = np.concatenate([table, np.ones((8, 1), np.int64)], axis=1)
    images, masks, out_depth, ids, alpha = run_objects(
        "cpu", bg, depth, atlas, objects, np.arange(9, dtype=np.int64), occlusion=True)
    for got, want in zip([images, masks, out_depth, alpha], single):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ids, (masks > 0).astype(np.uint16))


def random_objects(rng: np.random.Generator, n: int, height: int, width: int):
    bg, depth, atlas, _ = random_batch(rng, 1, height, width)
    counts = rng.integers(1, 4, n)
    offset = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rows, sprites, used = [], [atlas], len(atlas)
    for b in range(n):
        for k in range(counts[b]):
            h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
            sprite = soft_sprite(rng, h, w)
            rows.append([0, used, rng.integers(0, width - w + 1), rng.integers(0, height - h + 1), h, w,
                         rng.integers(2), rng.integers(1, 0x7BFF), k + 1])
            sprites.append(sprite.reshape(-1))
            used += sprite.size
    return bg, depth, np.concatenate(sprites), np.array(rows, np.int64), offset


def assert_cpu_equals_cuda(seed: int, n: int, height: int, width: int) -> None:
    """Random objects composited by both kernels, with and without occlusion: every output bit for bit."""
    bg, depth, atlas, table, offset = random_objects(np.random.default_rng(seed), n, height, width)
    for occlusion in (False, True):
        cpu = run_objects("cpu", bg, depth, atlas, table, offset, occlusion=occlusion)
        gpu = run_objects("cuda", bg, depth, atlas, table, offset, occlusion=occlusion)
        for a, b in zip(cpu, gpu):
            np.testing.assert_array_equal(a, b)


def test_cpu_equals_cuda_bit_for_bit() -> None:
    assert_cpu_equals_cuda(3, 3, 10, 12)


def test_instance_stats_match_numpy() -> None:
    bg, depth, atlas, table, offset = random_objects(np.random.default_rng(5), 6, 32, 48)
    _, _, _, ids, _ = run_objects("cpu", bg, depth, atlas, table, offset)
    visible, box = instance_stats(ids, offset)
    for b in range(6):
        for k in range(offset[b + 1] - offset[b]):
            o = offset[b] + k
            rr, cc = np.nonzero(ids[b] == k + 1)
            assert visible[o] == rr.size
            want = [cc.min(), rr.min(), cc.max() - cc.min() + 1, rr.max() - rr.min() + 1] if rr.size else [0] * 4
            assert box[o].tolist() == want


@pytest.mark.parametrize("change, message", [
    (lambda t, o: t.__setitem__((1, P.INSTANCE), 0), "instance ids"),
    (lambda t, o: t.__setitem__((1, P.BG), 1), "share its background"),
    (lambda t, o: o.__setitem__(1, 3), "offset"),
    (lambda t, o: t.__setitem__((1, P.X), 48), "out of bounds"),  # wholly right of the image
])
def test_rejects_bad_tables(change, message: str) -> None:
    bg, depth, atlas, table, offset = two_boxes()
    bg = np.concatenate([bg, bg])
    depth = np.concatenate([depth, depth])
    change(table, offset)
    with pytest.raises(ValueError, match=message):
        run_objects("cpu", bg, depth, atlas, table, offset)


@pytest.mark.gpu
def test_real_gpu_matches_cpu_on_a_full_batch() -> None:
    assert_cpu_equals_cuda(7, 64, 224, 224)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_reference_from_an_unsorted_table(seed: int) -> None:
    """The reference sorts far to near itself; the kernel gets the table ordered by the engine's rule."""
    from engine.compose.compositor import object_table
    from engine.compose.plan import ObjectPlacements
    from kernels.reference import composite_objects_reference

    rng = np.random.default_rng(seed)
    bg, depth, atlas, table, offset = random_objects(rng, 8, 32, 48)
    table[::3, P.DEPTH] = table[1, P.DEPTH]  # ties: lower id drawn first
    objects = ObjectPlacements(samples=None, objects=None, offset=offset)  # type: ignore[arg-type]
    ordered = object_table(objects, table[:, : P.N_COLUMNS])
    for occlusion in (False, True):
        want = composite_objects_reference(bg, depth, atlas, table, offset, 127, occlusion)
        got = run_objects("cpu", bg, depth, atlas, ordered, offset, occlusion=occlusion)
        for name, g, w in zip(["images", "masks", "depth", "instances"], got, want):
            np.testing.assert_array_equal(g, w, err_msg=name)
        assert np.abs(got[4].astype(int) - want[4].astype(int)).max() <= 1  # coverage: integer vs float rounding


def test_objects_cut_by_the_border_match_the_reference_and_cuda() -> None:
    """--truncation: objects reaching beyond the image, CPU against the reference and the CUDA kernel
    (simulated without a GPU); their visible boxes lie inside the image."""
    from engine.compose.compositor import object_table
    from engine.compose.plan import ObjectPlacements
    from kernels.reference import composite_objects_reference
    from tests.kernels.test_composite import cut_by_the_border

    rng = np.random.default_rng(4)
    bg, depth, atlas, table, offset = random_objects(rng, 6, 24, 32)
    table = cut_by_the_border(rng, table, 24, 32)
    depth[:, :6] = 0
    ordered = object_table(ObjectPlacements(samples=None, objects=None, offset=offset),  # type: ignore[arg-type]
                           table[:, : P.N_COLUMNS])
    for occlusion in (False, True):
        want = composite_objects_reference(bg, depth, atlas, table, offset, 127, occlusion)
        got = run_objects("cpu", bg, depth, atlas, ordered, offset, occlusion=occlusion)
        for name, g, w in zip(["images", "masks", "depth", "instances"], got, want):
            np.testing.assert_array_equal(g, w, err_msg=name)
    first3 = ordered[: offset[3]], offset[:4]  # the simulator runs every thread in Python: three samples
    cpu = run_objects("cpu", bg, depth, atlas, *first3, occlusion=True)
    gpu = run_objects("cuda", bg, depth, atlas, *first3, occlusion=True)
    for a, b in zip(cpu, gpu):
        np.testing.assert_array_equal(a, b)
    visible, box = instance_stats(got[3], offset)
    assert visible.sum() > 0
    seen = visible > 0
    assert (box[seen, 0] >= 0).all() and (box[seen, 1] >= 0).all()
    assert (box[seen, 0] + box[seen, 2] <= 32).all() and (box[seen, 1] + box[seen, 3] <= 24).all()
