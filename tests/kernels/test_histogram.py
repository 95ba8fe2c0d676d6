"""Per-channel histograms (CPU and CUDA) against ``np.bincount`` per channel."""

from __future__ import annotations

import numpy as np
import pytest

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
