"""Per-channel histograms (CPU and CUDA) against ``np.bincount`` per channel."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import placement as P
from kernels.histogram import channel_histogram


def bincount_reference(images: np.ndarray) -> np.ndarray:
    """``(3, 256) int64`` the plain NumPy count of ``(B, H, W, 3) uint8`` images."""
    flat = images.reshape(-1, 3)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(3)]).astype(np.int64)


def count(images: np.ndarray, device: str) -> np.ndarray:
    if device == "cpu":
        return channel_histogram(images)
    from numba import cuda

    from kernels.histogram_cuda import channel_histogram_cuda

    d_counts = cuda.to_device(np.zeros((3, 256), np.int64))
    channel_histogram_cuda(cuda.to_device(images), d_counts)
    return d_counts.copy_to_host()


@pytest.mark.parametrize("shape", [(2, 9, 11, 3), (1, 1, 1, 3), (3, 17, 5, 3)])
def test_equals_bincount(kernel_device: str, shape: tuple[int, ...]) -> None:
    images = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    images[0, 0] = 255  # both ends of the range
    images[-1, -1] = 0
    np.testing.assert_array_equal(count(images, kernel_device), bincount_reference(images))


def test_runs_of_equal_pixels(kernel_device: str) -> None:
    """Flat areas (most of a street scene) and an odd pixel count: the partial tables add up."""
    images = np.zeros((1, 7, 9, 3), np.uint8)
    images[..., 0] = 200
    images[0, :3, :, 1] = 17
    got = count(images, kernel_device)
    np.testing.assert_array_equal(got, bincount_reference(images))
    assert got[0, 200] == 63 and got[1, 17] == 27 and got.sum() == 3 * 63


def test_adds_into_a_table_and_takes_views() -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 6, 8, 3), dtype=np.uint8)
    counts = channel_histogram(images[:2])
    channel_histogram(images[2:], counts)
    np.testing.assert_array_equal(counts, bincount_reference(images))
    strided = images[:, ::2]  # a non-contiguous view is counted as what it shows
    np.testing.assert_array_equal(channel_histogram(strided), bincount_reference(np.ascontiguousarray(strided)))
    assert channel_histogram(images[:0]).sum() == 0


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 4, 4, 3), np.float32), "uint8"),
    (np.zeros((2, 4, 4), np.uint8), "shape"),
    (np.zeros((2, 4, 4, 4), np.uint8), "shape"),
])
def test_bad_input_names_the_argument(bad: np.ndarray, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        channel_histogram(bad)
    with pytest.raises(ValueError, match="counts"):
        channel_histogram(np.zeros((1, 2, 2, 3), np.uint8), np.zeros((3, 255), np.int64))


# -- composites counted from their backgrounds' counts ------------------------------------


def composited(seed: int, occlusion: bool, cut: bool) -> tuple[np.ndarray, ...]:
    """Backgrounds, their composites by the CPU kernel, the table (boxes cut by the border with ``cut``)."""
    from kernels.composite import composite_batch
    from tests.kernels.test_composite import cut_by_the_border, random_batch

    rng = np.random.default_rng(seed)
    bg, depth, atlas, table = random_batch(rng, 12, 19, 23)
    if cut:
        table = cut_by_the_border(rng, table, 19, 23)
    images = np.empty((12, 19, 23, 3), np.uint8)
    composite_batch(bg, depth, atlas, table, 127, images, np.empty((12, 19, 23), np.uint8),
                    np.empty((12, 19, 23), np.uint16), occlusion=occlusion)
    return bg, images, table


@pytest.mark.parametrize("occlusion", [False, True])
@pytest.mark.parametrize("cut", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_composite_histogram_equals_counting_the_composites(seed: int, occlusion: bool, cut: bool) -> None:
    from kernels.histogram import changed_rectangles, composite_histogram, image_histograms

    bg, images, table = composited(seed, occlusion, cut)
    rects = changed_rectangles(table, 19, 23)
    got = composite_histogram(image_histograms(bg), bg, images, np.ascontiguousarray(table[:, P.BG]), rects)
    np.testing.assert_array_equal(got, bincount_reference(images))
    # it reads only inside the rectangles: a pixel changed outside one is not seen
    b = next(b for b, (y0, y1, x0, x1) in enumerate(rects) if (y1 - y0) * (x1 - x0) < 19 * 23)
    y0, y1, x0, x1 = rects[b]
    r, c = next((r, c) for r in range(19) for c in range(23) if not (y0 <= r < y1 and x0 <= c < x1))
    images[b, r, c] ^= 1
    moved = composite_histogram(image_histograms(bg), bg, images, np.ascontiguousarray(table[:, P.BG]), rects)
    np.testing.assert_array_equal(moved, got)


def test_image_histograms_count_each_image() -> None:
    from kernels.histogram import image_histograms

    images = np.random.default_rng(5).integers(0, 256, (4, 7, 3, 3), dtype=np.uint8)
    got = image_histograms(images)
    assert got.shape == (4, 3, 256)
    for i in range(4):
        np.testing.assert_array_equal(got[i], bincount_reference(images[i : i + 1]))


def test_changed_rectangles_clip_and_cover_several_objects() -> None:
    from kernels.histogram import changed_rectangles

    table = np.zeros((3, P.N_OBJECT_COLUMNS), np.int64)
    table[:, [P.X, P.Y, P.H, P.W]] = [[-3, 2, 4, 5], [6, -1, 3, 30], [1, 1, 2, 2]]
    single = changed_rectangles(table[:, : P.N_COLUMNS], 10, 12)
    np.testing.assert_array_equal(single, [[2, 6, 0, 2], [0, 2, 6, 12], [1, 3, 1, 3]])
    # objects: samples of rows 0:2 and 2:3 -> the first covers both boxes
    objects = changed_rectangles(table, 10, 12, offset=np.array([0, 2, 3]))
    np.testing.assert_array_equal(objects, [[0, 6, 0, 12], [1, 3, 1, 3]])


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(bg_index=np.array([0, 5], np.int64)), "bg_index"),
    (lambda a: a.update(rects=np.array([[0, 9, 0, 1], [0, 1, 0, 1]], np.int64)), "rects"),
    (lambda a: a.update(rects=np.array([[2, 1, 0, 1], [0, 1, 0, 1]], np.int64)), "rects"),
    (lambda a: a.update(bg_counts=np.zeros((2, 3, 255), np.int64)), "shape"),
    (lambda a: a.update(images=np.zeros((2, 4, 5, 3), np.uint8)), "dimension"),
])
def test_composite_histogram_rejects_bad_inputs(change, message: str) -> None:
    from kernels.histogram import composite_histogram

    args = {"bg_counts": np.zeros((2, 3, 256), np.int64), "bg_images": np.zeros((2, 4, 4, 3), np.uint8),
            "images": np.zeros((2, 4, 4, 3), np.uint8), "bg_index": np.array([0, 1], np.int64),
            "rects": np.array([[0, 1, 0, 1], [0, 4, 0, 4]], np.int64)}
    change(args)
    with pytest.raises(ValueError, match=message):
        composite_histogram(**args)
