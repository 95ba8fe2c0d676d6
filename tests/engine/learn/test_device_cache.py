"""The device-resident split: coverage, aligned flips, a NumPy reference, memory and input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import engine.learn.device_cache as DC
from engine.errors import ConfigError
from engine.learn.data import SplitArrays, load_split, make_batch
from engine.learn.device_cache import DeviceSplit
from engine.learn.epochs import EpochPlan, augmentation

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def split(n: int = 13, size: int = 16, out: int = 4) -> SplitArrays:
    rng = np.random.default_rng(3)
    return SplitArrays(
        index=np.arange(n), images=rng.integers(0, 256, (n, size, size + 2, 3), dtype=np.uint8),
        depth=rng.uniform(1, 80, (n, out, out + 1)).astype(np.float32), masks=rng.random((n, out, out + 1)) < 0.3,
        bg_index=np.zeros(n, np.int64),
    )


def reference(data: SplitArrays, plan: EpochPlan, epoch: int, i: int):
    """Plain NumPy: the plan's rows, the contract's draws, one array operation at a time."""
    rows, pos = plan.rows(epoch, i)
    flip, gain = augmentation(plan.seed, epoch, pos)
    images = data.images[rows].astype(np.float32) / np.float32(255.0)
    depth, masks = data.depth[rows].copy(), data.masks[rows].copy()
    images[flip], depth[flip], masks[flip] = images[flip, :, ::-1], depth[flip, :, ::-1], masks[flip, :, ::-1]
    images = np.clip(images * gain[:, None, None, :], 0.0, 1.0)
    x = ((images - np.float32(MEAN)) / np.float32(STD)).transpose(0, 3, 1, 2)
    return x, depth[:, None], masks[:, None]


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_equal_the_numpy_reference(drop_last: bool) -> None:
    data = split()
    cache = DeviceSplit.from_arrays(data, "cpu", batch=4, seed=11, mean=MEAN, std=STD, drop_last=drop_last)
    assert cache.batches_per_epoch == (3 if drop_last else 4) == cache.plan.batches_per_epoch()
    for epoch in (0, 2):
        for i in range(cache.batches_per_epoch):
            x, depth, masks = cache.batch(epoch, i)
            b = 1 if i == 3 else 4  # 13 samples: the last batch holds one
            assert x.shape == (b, 3, 16, 18) and x.dtype == torch.float32
            assert x.is_contiguous(memory_format=torch.channels_last)
            assert depth.shape == (b, 1, 4, 5) and depth.dtype == torch.float32 and masks.dtype == torch.bool
            want = reference(data, cache.plan, epoch, i)
            np.testing.assert_allclose(x.numpy(), want[0], rtol=0, atol=1e-6)
            np.testing.assert_array_equal(depth.numpy(), want[1])
            np.testing.assert_array_equal(masks.numpy(), want[2])


def test_without_augmentation_batches_equal_make_batch() -> None:
    data = split()
    cache = DeviceSplit.from_arrays(data, "cpu", batch=5, seed=2, augment=False)  # ImageNet statistics
    rows, _ = cache.plan.rows(1, 1)
    for got, want in zip(cache.batch(1, 1), make_batch(data, rows, None)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("num_shards", [1, 3])
def test_every_row_once_per_epoch(num_shards: int) -> None:
    n = 40
    data = split(n=n)
    data.depth[:] = np.arange(n, dtype=np.float32)[:, None, None]  # each row's depth says which row it is
    seen = []
    for rank in range(num_shards):
        cache = DeviceSplit.from_arrays(data, "cpu", batch=6, seed=5, shard_id=rank, num_shards=num_shards)
        for epoch in (0, 1):
            got = [cache.batch(epoch, i)[1][:, 0, 0, 0] for i in range(cache.batches_per_epoch)]
            seen.append((epoch, torch.cat(got).long().tolist()))
    for epoch in (0, 1):
        rows = [r for e, part in seen if e == epoch for r in part]
        assert sorted(rows) == list(range(n))
    first = {e: part for e, part in reversed(seen)}  # rank 0's rows of each epoch
    assert first[0] != first[1]  # each epoch has its own order


def test_flips_keep_image_depth_and_mask_aligned() -> None:
    n, w = 64, 16
    data = split(n=n, size=w, out=w - 1)
    data.images[:] = (50 + 6 * np.arange(w + 2))[None, None, :, None]  # brightness rises to the right
    data.depth[:] = np.arange(w, dtype=np.float32)[None, None, :]  # so does depth
    data.masks[:] = np.arange(w)[None, None, :] < 4  # the mask sits on the left
    cache = DeviceSplit.from_arrays(data, "cpu", batch=n, seed=9, mean=MEAN, std=STD)
    x, depth, masks = cache.batch(0, 0)
    _, pos = cache.rows(0, 0)
    flip = torch.from_numpy(augmentation(9, 0, pos)[0])
    assert 10 < int(flip.sum()) < 54
    image = x * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]
    slope = image.mean(dim=(1, 2)).diff(dim=1)  # (B, W - 1) brightness steps along x
    depth_slope = depth[:, 0, 0].diff(dim=1)
    assert bool((slope[flip] < 0).all()) and bool((slope[~flip] > 0).all())
    assert bool((depth_slope[flip] < 0).all()) and bool((depth_slope[~flip] > 0).all())
    assert bool(masks[flip][..., -1].all()) and not bool(masks[flip][..., 0].any())
    assert bool(masks[~flip][..., 0].all()) and not bool(masks[~flip][..., -1].any())


def test_a_split_too_large_for_the_device_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(DC, "free_memory", lambda device: 5 << 30)  # 5.4 GB free, 2 GiB kept
    DC.check_fits(10_000, (224, 224), (55, 74), torch.device("cpu"))  # 1.5 GB + 0.2 GB: fits
    with pytest.raises(ConfigError, match=r"40,000 samples need 6\.84 GB on cpu \(images 6\.02 GB uint8 at 224x224"):
        DC.check_fits(40_000, (224, 224), (55, 74), torch.device("cpu"))
    # load() checks before reading anything: no store needed to be refused
    with pytest.raises(ConfigError, match="need 6.84 GB"):
        DeviceSplit.load(tmp_path / "none.zarr", np.arange(40_000), (224, 224), (55, 74), "cpu", batch=8, seed=0)


def test_bad_input_is_one_line() -> None:
    data = split(n=10)
    with pytest.raises(ConfigError, match="batch of 11 is larger than the split"):
        DeviceSplit.from_arrays(data, "cpu", batch=11, seed=0)
    with pytest.raises(ConfigError, match=r"larger than the split \(3 samples on this rank\)"):
        DeviceSplit.from_arrays(data, "cpu", batch=5, seed=0, shard_id=2, num_shards=3)
    with pytest.raises(ConfigError, match="mean needs 3 values"):
        DeviceSplit.from_arrays(data, "cpu", batch=2, seed=0, mean=(0.5, 0.5))
    with pytest.raises(ConfigError, match="std must be positive"):
        DeviceSplit.from_arrays(data, "cpu", batch=2, seed=0, std=(0.5, 0.0, 0.5))
    cache = DeviceSplit.from_arrays(data, "cpu", batch=4, seed=0)
    with pytest.raises(IndexError):
        cache.batch(0, 3)


def test_load_reads_the_store_once(tmp_path: Path) -> None:
    from engine.compose.generate import generate
    from engine.config import GenerateConfig

    out = tmp_path / "s.zarr"
    generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=32, width=48, positions=4,
                            shard_size=16, chunk_size=4), out)
    index = np.array([0, 3, 4, 17, 30, 47])
    cache = DeviceSplit.load(out, index, (24, 32), (6, 8), "cpu", batch=4, seed=1, mean=MEAN, std=STD)
    data = load_split(out, index, (24, 32), (6, 8))
    np.testing.assert_array_equal(cache.images.numpy(), data.images)
    assert cache.depth.dtype == torch.float32 and cache.masks.dtype == torch.bool
    for i in range(cache.batches_per_epoch):
        want = reference(data, cache.plan, 0, i)
        np.testing.assert_allclose(cache.batch(0, i)[0].numpy(), want[0], rtol=0, atol=1e-6)


@pytest.mark.gpu
def test_cuda_batches_equal_the_numpy_reference() -> None:
    data = split()
    cache = DeviceSplit.from_arrays(data, "cuda", batch=4, seed=11, mean=MEAN, std=STD)
    assert cache.images.is_cuda and cache.images.dtype == torch.uint8
    for i in range(cache.batches_per_epoch):
        x, depth, masks = cache.batch(1, i)
        assert x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
        want = reference(data, cache.plan, 1, i)
        np.testing.assert_allclose(x.cpu().numpy(), want[0], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(depth.cpu().numpy(), want[1])
        np.testing.assert_array_equal(masks.cpu().numpy(), want[2])
