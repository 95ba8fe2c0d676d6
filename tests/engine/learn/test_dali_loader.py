"""The DALI loader on the CPU: the plan's batches, augmentation aligned across image,
depth and mask, agreement with make_batch, JPEG decoding, errors that surface."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.compose.generate import generate
from engine.config import GenerateConfig
from engine.errors import ConfigError, StoreError
from engine.learn.dali_loader import DaliLoader
from engine.learn.data import IMAGENET_MEAN, IMAGENET_STD, load_split, make_batch, resize_images, split_indices
from engine.learn.epochs import augmentation

pytest.importorskip("nvidia.dali")

#: one uint8 level in normalised units (the smallest std)
LEVEL = 1.0 / (255.0 * float(IMAGENET_STD.min()))
#: same size, no resize: only float32 rounding differs ((x - 255m)/(255s) vs (x/255 - m)/s)
EXACT = 1e-5
#: resized: DALI's antialiased linear filter equals torch's inside the image; on the outermost
#: output pixels the two treat the truncated filter differently (measured up to ~10 levels there)
INTERIOR_LEVELS, MEAN_LEVELS = 2, 0.5


def make_store(path: Path, codec: str) -> Path:
    """3 backgrounds x 2 cars x 2 flips x 4 positions = 48 samples at 32x48, shards of 16, chunks of 4."""
    generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=32, width=48, positions=4,
                            shard_size=16, chunk_size=4, image_codec=codec), path)
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dali")
    return {codec: make_store(root / f"{codec}.zarr", codec) for codec in ("zstd", "jpeg")}


@pytest.fixture(scope="module")
def train_index(stores: dict[str, Path]) -> np.ndarray:
    index, _ = split_indices(stores["zstd"], "train", 0.34, 0)  # two of three backgrounds: not contiguous
    assert 0 < len(index) < 48
    return index


def reference(store: Path, index: np.ndarray, input_size, output_size=(8, 12)):
    return load_split(store, index, input_size, output_size, stream_images=True)


def denormalise(x: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` normalised → ``(B, H, W, 3) float64`` in 0..255."""
    x = x.float().permute(0, 2, 3, 1).numpy().astype(np.float64)
    return (x * IMAGENET_STD + IMAGENET_MEAN) * 255.0


def identify(loader: DaliLoader, epochs: list[int]) -> list[int]:
    """Store samples served, found by matching each served image to the split's (no resize, no augmentation)."""
    ref = reference_images(loader)
    found = []
    for e in epochs:
        for x, _, _ in loader.epoch(e):
            got = denormalise(x).reshape(len(x), -1)
            dist = np.abs(got[:, None] - ref[None]).max(axis=2)  # (B, N)
            assert (dist.min(axis=1) < 1e-3).all()
            found.extend(loader.index[dist.argmin(axis=1)].tolist())
    return found


def reference_images(loader: DaliLoader) -> np.ndarray:
    images = loader.reader.read(loader.index)
    return images.reshape(len(images), -1).astype(np.float64)


def test_every_sample_once_per_epoch(stores: dict[str, Path], train_index: np.ndarray) -> None:
    loader = DaliLoader(stores["zstd"], train_index, (32, 48), (8, 12), batch=5, seed=3, augment=False)
    assert len(np.unique(reference_images(loader), axis=0)) == len(train_index)  # samples are tell-apart
    sizes = [len(x) for x, _, _ in loader.epoch(0)]
    assert sizes == [5] * (len(train_index) // 5) + ([len(train_index) % 5] if len(train_index) % 5 else [])
    assert loader.batches_per_epoch == len(sizes)
    e0, e1 = identify(loader, [0]), identify(loader, [1])
    assert sorted(e0) == sorted(e1) == train_index.tolist()
    assert e0 != e1  # a new order each epoch
    drop = DaliLoader(stores["zstd"], train_index, (32, 48), (8, 12), batch=5, seed=3, augment=False, drop_last=True)
    assert [len(x) for x, _, _ in drop.epoch(0)] == [5] * (len(train_index) // 5)


def test_two_ranks_cover_the_split_disjointly(stores: dict[str, Path], train_index: np.ndarray) -> None:
    ranks = [identify(DaliLoader(stores["zstd"], train_index, (32, 48), (8, 12), batch=4, seed=9, shard_id=r,
                                 num_shards=2, augment=False), [2]) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == train_index.tolist()
    assert abs(len(ranks[0]) - len(ranks[1])) <= 1


@pytest.mark.parametrize("input_size", [(32, 48), (24, 40)])
def test_without_augmentation_equals_make_batch(stores: dict[str, Path], train_index: np.ndarray, input_size) -> None:
    loader = DaliLoader(stores["zstd"], train_index, input_size, (8, 12), batch=6, seed=1, augment=False)
    data = reference(stores["zstd"], train_index, input_size)
    for i, (x, depth, masks) in enumerate(loader.epoch(4)):
        rows, _ = loader.plan.rows(4, i)
        want_x, want_depth, want_masks = make_batch(data, rows, None)
        assert x.shape == want_x.shape and x.dtype == want_x.dtype
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert depth.shape == want_depth.shape and depth.dtype == torch.float32 and masks.dtype == torch.bool
        torch.testing.assert_close(depth, want_depth, rtol=0, atol=0)
        torch.testing.assert_close(masks, want_masks, rtol=0, atol=0)
        diff = (x - want_x).abs()
        if input_size == (32, 48):
            assert float(diff.max()) < EXACT
        else:
            assert float(diff[..., 1:-1, 1:-1].max()) <= INTERIOR_LEVELS * LEVEL
            assert float(diff.mean()) <= MEAN_LEVELS * LEVEL


def test_augmentation_keeps_image_depth_and_mask_aligned(stores: dict[str, Path], train_index: np.ndarray) -> None:
    """Against NumPy: resize (torch's, as the in-memory loader), flip, gains, clamp,
    normalise with the draws of epochs.augmentation; depth and masks flipped alike."""
    seed, epoch, size = 5, 2, (24, 40)
    loader = DaliLoader(stores["zstd"], train_index, size, (8, 12), batch=8, seed=seed)
    data = reference(stores["zstd"], train_index, size)
    images = resize_images(loader.reader.read(train_index), size).astype(np.float32)  # (N, H, W, 3)
    flipped = 0
    for i, (x, depth, masks) in enumerate(loader.epoch(epoch)):
        rows, positions = loader.plan.rows(epoch, i)
        flip, gain = augmentation(seed, epoch, positions)
        flipped += int(flip.sum())
        want_depth, want_masks, img = data.depth[rows].copy(), data.masks[rows].copy(), images[rows].copy()
        want_depth[flip], want_masks[flip], img[flip] = want_depth[flip, :, ::-1], want_masks[flip, :, ::-1], img[flip, :, ::-1]
        np.testing.assert_array_equal(depth[:, 0].numpy(), want_depth)
        np.testing.assert_array_equal(masks[:, 0].numpy(), want_masks)
        want_x = ((np.clip(img * gain[:, None, None], 0, 255) / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)
        diff = np.abs(x.numpy() - want_x)
        assert diff[..., 1:-1, 1:-1].max() <= 1.5 * INTERIOR_LEVELS * LEVEL  # gains up to 1.44 scale a level
        assert diff.mean() <= MEAN_LEVELS * LEVEL
    assert 0 < flipped < len(train_index)


def test_jpeg_decodes_close_to_its_lossless_source(stores: dict[str, Path], train_index: np.ndarray) -> None:
    size = (24, 40)
    batches = {codec: list(DaliLoader(stores[codec], train_index, size, (8, 12), batch=8, seed=2, augment=False).epoch(0))
               for codec in stores}
    for (xj, dj, mj), (xl, dl, ml) in zip(batches["jpeg"], batches["zstd"]):
        mse = float(np.mean((denormalise(xj) - denormalise(xl)) ** 2))
        assert 10 * np.log10(255.0**2 / mse) >= 35.0
        assert torch.equal(dj, dl) and torch.equal(mj, ml)


@pytest.mark.parametrize("dtype, channels_last", [("float16", True), ("bfloat16", True), ("float32", False)])
def test_dtypes_and_layouts(stores: dict[str, Path], train_index: np.ndarray, dtype: str, channels_last: bool) -> None:
    ref = DaliLoader(stores["jpeg"], train_index, (24, 40), (8, 12), batch=8, seed=2)
    loader = DaliLoader(stores["jpeg"], train_index, (24, 40), (8, 12), batch=8, seed=2, dtype=dtype,
                        channels_last=channels_last)
    (x, _, _), (want, _, _) = next(iter(loader.epoch(0))), next(iter(ref.epoch(0)))
    assert x.dtype == getattr(torch, dtype) and x.shape == want.shape
    assert x.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    tol = {"float32": 1e-6, "float16": 1e-2, "bfloat16": 3e-2}[dtype]
    torch.testing.assert_close(x.float(), want, rtol=tol, atol=tol)


def test_resume_at_a_step_sees_the_same_batches(stores: dict[str, Path], train_index: np.ndarray) -> None:
    loader = DaliLoader(stores["zstd"], train_index, (24, 40), (8, 12), batch=7, seed=4)
    per = loader.batches_per_epoch
    run = list(loader.epoch(0)) + list(loader.epoch(1))
    step = per + 1
    stream = loader.from_step(step)
    for k in range(step, 2 * per + 1):  # through the end of epoch 1 into epoch 2
        x, depth, masks = next(stream)
        if k < 2 * per:
            assert torch.equal(x, run[k][0]) and torch.equal(depth, run[k][1]) and torch.equal(masks, run[k][2])
    stream.close()
    first = next(iter(loader.epoch(0, start=2)))  # after an abandoned epoch: a fresh pipeline, the right batch
    assert torch.equal(first[0], run[2][0])


class Timeout(Exception):
    pass


def within(seconds: int, fn) -> None:
    """Run ``fn``; a hang fails the test instead of stalling the suite."""
    def alarm(*_) -> None:
        raise Timeout(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("codec, array", [("zstd", "images"), ("jpeg", "images_jpeg")])
def test_a_damaged_shard_is_one_line_naming_it(stores: dict[str, Path], tmp_path: Path, codec: str, array: str) -> None:
    store = tmp_path / "s.zarr"
    shutil.copytree(stores[codec], store)
    index = np.arange(48)
    loader = DaliLoader(store, index, (32, 48), (8, 12), batch=8, seed=0)
    shard = loader.reader.shard_path(1)
    raw = bytearray(shard.read_bytes())
    raw[:64] = bytes(64) if codec == "zstd" else b"\xff" * 64  # first chunk: zstd magic / vlen count gone
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=rf"{array} shard 1 \(samples 16-31\) is damaged") as caught:
        within(60, lambda: [None for _ in loader.epoch(0)])
    assert "\n" not in str(caught.value)
    with pytest.raises(StoreError, match="is damaged"):  # and again on the next epoch, on a fresh pipeline
        within(60, lambda: [None for _ in loader.epoch(1)])


def test_store_and_config_errors(stores: dict[str, Path], tmp_path: Path, train_index: np.ndarray) -> None:
    store = tmp_path / "s.zarr"
    shutil.copytree(stores["zstd"], store)
    shutil.rmtree(store / "masks")
    with pytest.raises(StoreError, match="no 'masks' array"):
        DaliLoader(store, train_index, (32, 48), (8, 12), batch=4, seed=0)
    with pytest.raises(ConfigError, match="larger than the split"):
        DaliLoader(stores["zstd"], train_index, (32, 48), (8, 12), batch=len(train_index) + 1, seed=0)
    with pytest.raises(ConfigError, match="on rank 1 of 2"):
        DaliLoader(stores["zstd"], train_index, (32, 48), (8, 12), batch=len(train_index) // 2 + 1, seed=0,
                   shard_id=1, num_shards=2)
    with pytest.raises(ConfigError, match="dtype"):
        DaliLoader(stores["zstd"], train_index, (32, 48), (8, 12), batch=4, seed=0, dtype="int8")
