"""Training batches: the sampler, and batch assembly against a plain NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import StoreError
from engine.learn.data import IMAGENET_MEAN, IMAGENET_STD, BatchSampler, SplitArrays, make_batch

#: float32 batch assembly: the same IEEE operations in the same order
ATOL = {"cpu": 0.0, "cuda": 1e-6}


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> str:
    return request.param


def split(n: int = 12, size: int = 16, out: int = 4) -> SplitArrays:
    rng = np.random.default_rng(3)
    return SplitArrays(
        index=np.arange(n), images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        depth=rng.uniform(1, 80, (n, out, out)).astype(np.float32), masks=rng.random((n, out, out)) < 0.3,
        bg_index=np.zeros(n, np.int64),
    )


def reference_batch(data: SplitArrays, rows: np.ndarray, augment_seed: int | None):
    """Plain NumPy: the same draws, flips and jitter, one array operation at a time."""
    images = data.images[rows].astype(np.float32) / np.float32(255.0)
    depth, masks = data.depth[rows].copy(), data.masks[rows].copy()
    if augment_seed is not None:
        rng = np.random.default_rng([augment_seed, 0xA06])
        flip = rng.random(len(rows)) < 0.5
        gain = rng.uniform(0.8, 1.2, (len(rows), 1, 1, 1)) * rng.uniform(0.8, 1.2, (len(rows), 1, 1, 3))
        images[flip], depth[flip], masks[flip] = images[flip, :, ::-1], depth[flip, :, ::-1], masks[flip, :, ::-1]
        images = np.clip(images * gain.astype(np.float32), 0.0, 1.0)
    x = ((images - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)
    return x, depth[:, None], masks[:, None]


@pytest.mark.parametrize("augment_seed", [None, 7, 123456789])
def test_make_batch_matches_the_reference(device: str, augment_seed: int | None) -> None:
    data = split()
    rows = np.array([3, 0, 11, 5, 5, 8])
    x, depth, masks = make_batch(data, rows, augment_seed, device)
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32 and x.device.type == device
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert depth.shape == (6, 1, 4, 4) and depth.dtype == torch.float32 and masks.dtype == torch.bool
    want_x, want_depth, want_masks = reference_batch(data, rows, augment_seed)
    np.testing.assert_allclose(x.cpu().numpy(), want_x, rtol=0, atol=ATOL[device])
    np.testing.assert_array_equal(depth.cpu().numpy(), want_depth)
    np.testing.assert_array_equal(masks.cpu().numpy(), want_masks)


def test_flips_move_image_depth_and_mask_together() -> None:
    data = split(n=64)
    data.images[:] = (50 + 6 * np.arange(16))[None, None, :, None]  # brightness rises to the right
    rows = np.arange(64)
    _, d0, m0 = make_batch(data, rows, None)
    x1, d1, m1 = make_batch(data, rows, 5)
    flipped = (d1 != d0).flatten(1).any(1)
    assert 10 < int(flipped.sum()) < 54  # about half
    torch.testing.assert_close(d1[flipped], d0[flipped].flip(-1))
    torch.testing.assert_close(m1[flipped], m0[flipped].flip(-1))
    image = x1 * torch.from_numpy(IMAGENET_STD)[:, None, None] + torch.from_numpy(IMAGENET_MEAN)[:, None, None]
    slope = image.mean(dim=(1, 2)).diff(dim=1)  # (B, W - 1) brightness steps along x
    assert bool((slope[flipped] < 0).all()) and bool((slope[~flipped] > 0).all())


def test_sampler_is_a_pure_function_of_seed_and_step() -> None:
    a, b = BatchSampler(10, 4, seed=1), BatchSampler(10, 4, seed=1)
    steps = [a(s) for s in range(10)]  # 40 draws = 4 epochs of 10
    np.testing.assert_array_equal(b(7), steps[7])  # a fresh sampler jumps straight to step 7
    epochs = np.concatenate(steps).reshape(4, 10)
    for epoch in epochs:
        assert sorted(epoch) == list(range(10))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(BatchSampler(10, 4, seed=2)(0), steps[0])


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory):
    from engine.compose.generate import generate
    from engine.config import GenerateConfig

    out = tmp_path_factory.mktemp("data") / "s.zarr"
    generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=40, width=56, positions=4,
                            shard_size=16, chunk_size=4), out)
    return out


def reference_split(path, index: np.ndarray, input_size: tuple[int, int], output_size: tuple[int, int]):
    """Plain: whole arrays, torch's antialiased bilinear for images, nearest-exact for depth and masks."""
    import torch.nn.functional as F
    import zarr

    g = zarr.open_group(path, mode="r")
    x = torch.from_numpy(g["images"][:][index]).permute(0, 3, 1, 2).float()
    if tuple(x.shape[-2:]) != input_size:
        x = F.interpolate(x, size=input_size, mode="bilinear", align_corners=False, antialias=True)
    images = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    dm = torch.from_numpy(np.stack([g["depth"][:][index].astype(np.float32), (g["masks"][:][index] > 0).astype(np.float32)], 1))
    dm = F.interpolate(dm, size=output_size, mode="nearest-exact")
    return images, dm[:, 0].numpy(), dm[:, 1].numpy() > 0.5


@pytest.mark.parametrize("input_size, output_size", [((40, 56), (9, 13)), ((24, 32), (5, 7)), ((64, 80), (15, 19))])
def test_load_split_matches_the_reference(small_store, input_size, output_size) -> None:
    from engine.learn.data import load_split

    index = np.array([0, 1, 2, 5, 17, 18, 19, 20, 33, 47])  # runs that start and stop inside chunks and shards
    want = reference_split(small_store, index, input_size, output_size)
    for threads in (1, 3):
        got = load_split(small_store, index, input_size, output_size, block=4, threads=threads)
        np.testing.assert_array_equal(got.images, want[0])
        np.testing.assert_array_equal(got.depth, want[1])
        np.testing.assert_array_equal(got.masks, want[2])
        np.testing.assert_array_equal(got.index, index)


def test_store_images_read_like_the_loaded_split(small_store) -> None:
    from engine.learn.data import StoreImages, load_split

    index = np.array([0, 3, 4, 9, 16, 31, 40, 47])
    for size in ((40, 56), (20, 28)):
        loaded = load_split(small_store, index, size, (5, 7)).images
        streamed = StoreImages(small_store, index, size, threads=2)
        assert streamed.shape == loaded.shape and len(streamed) == len(index)
        rows = np.array([7, 0, 0, 3, 5])  # any order, repeats
        np.testing.assert_array_equal(streamed[rows], loaded[rows])
        np.testing.assert_array_equal(streamed[2], loaded[2])
        streamed.prefetch(np.array([1, 6]))
        np.testing.assert_array_equal(streamed[np.array([1, 6])], loaded[[1, 6]])


def test_shard_reader_matches_zarr_and_checks_its_input(small_store, tmp_path) -> None:
    import json

    import zarr

    from engine.store.shard_codec import ShardReader, shard_spec

    for name in ("images", "depth", "masks"):
        array = zarr.open_array(small_store / name, mode="r")
        spec = shard_spec(json.loads((small_store / name / "zarr.json").read_text()))
        key = lambda k, a=array: small_store / name / a.metadata.encode_chunk_key((k,) + (0,) * (a.ndim - 1))
        reader = ShardReader(key, spec, array.shape[1:], array.dtype, array.shape[0])
        samples = np.array([47, 0, 5, 5, 16, 33])
        np.testing.assert_array_equal(reader.read(samples), array[:][samples])
        with pytest.raises(ValueError, match="samples must be in"):
            reader.read(np.array([48]))
    original = small_store / "masks" / zarr.open_array(small_store / "masks").metadata.encode_chunk_key((1, 0, 0))
    raw = bytearray(original.read_bytes())
    raw[-10] ^= 0xFF  # inside the index
    shard = tmp_path / "damaged"
    shard.write_bytes(bytes(raw))
    fresh = ShardReader(lambda k: shard, spec, array.shape[1:], array.dtype, array.shape[0], name="masks", store="s")
    with pytest.raises(StoreError, match=r"^s: masks shard 0 \(samples 0-15\) is damaged: damaged shard index"):
        fresh.read(np.array([0]))
    shard.write_bytes(bytes(raw[:20]))  # shorter than its index
    with pytest.raises(StoreError, match="masks shard 1 .* file truncated"):
        ShardReader(lambda k: shard, spec, array.shape[1:], array.dtype, array.shape[0], name="masks").read(np.array([16]))
    missing = ShardReader(lambda k: tmp_path / "gone", spec, array.shape[1:], array.dtype, array.shape[0], name="masks")
    with pytest.raises(StoreError, match="masks shard 2 .* file missing"):
        missing.read(np.array([40]))


def test_prefetched_batches_are_read_once(small_store, monkeypatch) -> None:
    """The training loop's order (take batch s, then prefetch s + 1) reads each batch once."""
    from engine.learn.data import StoreImages

    images = StoreImages(small_store, np.arange(48), (40, 56), threads=2)
    reads: list[bytes] = []
    original = images._read
    monkeypatch.setattr(images, "_read", lambda rows: reads.append(rows.tobytes()) or original(rows))
    batches = [np.array([s, s + 7, 40 - s]) for s in range(5)]
    for s, rows in enumerate(batches):
        np.testing.assert_array_equal(images[rows], original(rows))
        if s + 1 < len(batches):
            images.prefetch(batches[s + 1])
    assert reads == [b.tobytes() for b in batches]
