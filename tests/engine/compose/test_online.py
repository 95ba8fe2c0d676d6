"""Online compositing gives, for any indices, exactly the samples a store holds.

The CUDA cases run the real CUDA path (slot, pinned buffers, events, a kernel
on another stream) on Numba's simulator at a tiny size without a GPU; the
``gpu`` test checks the torch-tensor path where a GPU exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.compose.generate import generate
from engine.compose.online import OnlineSamples, held_out_backgrounds
from engine.config import GenerateConfig, RunOptions
from engine.errors import ConfigError
from tests.engine.compose.test_generate_cuda import tiny

#: shuffled, with repeats, crossing every shard (tiny() has 24 samples in shards of 5)
INDICES = np.array([17, 3, 23, 0, 9, 3, 12, 20, 5, 14])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A lossless tiny() store made on the CPU, and its arrays."""
    import zarr

    path = tmp_path_factory.mktemp("online") / "store.zarr"
    generate(tiny(), path, RunOptions(device="cpu"))
    group = zarr.open_group(path, mode="r")
    arrays = {name: group[name][:] for name in ("images", "depth", "masks", "meta/bg_index")}
    return path, arrays


def assert_same_as_store(read: tuple[np.ndarray, np.ndarray, np.ndarray], arrays: dict[str, np.ndarray],
                         indices: np.ndarray) -> None:
    images, depth, masks = read
    assert images.dtype == np.uint8 and masks.dtype == np.uint8 and depth.dtype == np.float16
    np.testing.assert_array_equal(images, arrays["images"][indices])
    np.testing.assert_array_equal(masks, arrays["masks"][indices])
    # bit for bit: compare the float16 bits, so NaN or -0 could not hide a difference
    np.testing.assert_array_equal(depth.view(np.uint16), arrays["depth"][indices].view(np.uint16))


def test_cpu_read_of_shuffled_indices_equals_the_store(store) -> None:
    _, arrays = store
    online = OnlineSamples(tiny(), device="cpu")
    assert (online.n_samples, online.height, online.width) == (24, 16, 24)
    assert_same_as_store(online.read(INDICES), arrays, INDICES)
    np.testing.assert_array_equal(online.bg_index(INDICES), arrays["meta/bg_index"][INDICES])


def test_cuda_read_in_several_launches_equals_the_store(store) -> None:
    """capacity 4 < 10 indices: three launches through one pinned slot, reused."""
    _, arrays = store
    online = OnlineSamples(tiny(), device="cuda", capacity=4)
    assert online.device == "cuda"
    assert_same_as_store(online.read(INDICES), arrays, INDICES)


def test_cuda_launch_into_device_arrays_equals_the_store(store) -> None:
    """The device path of read_device, with Numba arrays for torch's tensors."""
    from numba import cuda

    _, arrays = store
    online = OnlineSamples(tiny(), device="cuda", capacity=4)
    indices = INDICES[:5]
    prepared = online.compositor.prepare(online.plan.placements_at(indices))
    images = cuda.device_array((5, 16, 24, 3), np.uint8)
    masks = cuda.device_array((5, 16, 24), np.uint8)
    depth = cuda.device_array((5, 16, 24), np.uint16)
    stream = cuda.stream()
    online.launch(prepared, cuda.to_device(prepared.table), images, masks, depth, stream)
    stream.synchronize()
    read = images.copy_to_host(), depth.copy_to_host().view(np.float16), masks.copy_to_host()
    assert_same_as_store(read, arrays, indices)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_jpeg_config_gives_the_composites_before_encoding(store, device: str) -> None:
    """On CUDA, nvJPEG would keep the images on the GPU: online must bring them back."""
    _, arrays = store
    config = tiny(image_codec="jpeg", jpeg_encoder="nvjpeg" if device == "cuda" else "libjpeg")
    online = OnlineSamples(config, device=device)
    assert_same_as_store(online.read(INDICES[:3]), arrays, INDICES[:3])


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_filled_atlas_resizes_nothing_more_and_changes_nothing(store, device: str) -> None:
    _, arrays = store
    online = OnlineSamples(tiny(), device=device)
    assert online.fill_atlas()
    atlas = online.compositor.atlas
    used = atlas.used
    assert used > 0 and atlas.resizes > 0
    assert_same_as_store(online.read(INDICES), arrays, INDICES)
    assert atlas.used == used


def test_an_atlas_over_budget_is_not_filled() -> None:
    online = OnlineSamples(tiny(), device="cpu")
    online.compositor.atlas.max_bytes = 100
    assert not online.fill_atlas()
    assert online.compositor.atlas.used == 0


@pytest.mark.parametrize("split", ["train", "val", "all"])
@pytest.mark.parametrize("fraction, seed", [(0.5, 0), (0.5, 7), (0.2, 3)])
def test_split_equals_the_stores(store, split: str, fraction: float, seed: int) -> None:
    from engine.learn.data import split_indices

    path, _ = store
    want_index, want_bgs = split_indices(path, split, fraction, seed)
    index, bgs = OnlineSamples(tiny(), device="cpu").split_indices(split, fraction, seed)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_array_equal(bgs, want_bgs)


def test_held_out_rule_equals_the_learn_rule() -> None:
    from engine.learn.data import validation_backgrounds

    for n in (2, 3, 10, 101):
        for fraction in (0.0, 0.1, 0.5, 0.99):
            for seed in (0, 1, 12345):
                np.testing.assert_array_equal(held_out_backgrounds(n, fraction, seed),
                                              validation_backgrounds(n, fraction, seed))


def test_a_split_needs_two_backgrounds_and_a_known_name() -> None:
    online = OnlineSamples(tiny(builtin_backgrounds=1), device="cpu")
    with pytest.raises(ConfigError, match="two"):
        online.split_indices("train", 0.5, 0)
    with pytest.raises(ConfigError, match="split"):
        OnlineSamples(tiny(), device="cpu").split_indices("test", 0.5, 0)


@pytest.mark.parametrize("bad", [np.array([24]), np.array([0, -1]), np.array([[1, 2]]), np.array([0.5])])
def test_bad_indices_are_errors(bad: np.ndarray) -> None:
    online = OnlineSamples(tiny(), device="cpu")
    with pytest.raises(ValueError, match="indices"):
        online.read(bad)
    with pytest.raises(ValueError, match="indices"):
        online.bg_index(bad)


def test_read_device_needs_cuda() -> None:
    with pytest.raises(ConfigError, match="cuda"):
        OnlineSamples(tiny(), device="cpu").read_device(INDICES)


@pytest.mark.gpu
def test_read_device_equals_read_and_the_store(store) -> None:
    import torch

    _, arrays = store
    online = OnlineSamples(tiny(), device="cuda", capacity=4)
    images, depth, masks = online.read_device(INDICES)
    assert images.is_cuda and depth.dtype == torch.float16 and masks.dtype == torch.uint8
    assert_same_as_store((images.cpu().numpy(), depth.cpu().numpy(), masks.cpu().numpy()), arrays, INDICES)
    assert_same_as_store(online.read(INDICES), arrays, INDICES)


@pytest.mark.gpu
def test_read_device_at_full_size_equals_read() -> None:
    """224x224, a batch of 32 drawn at random, with the atlas filled over several reads."""
    import torch

    config = GenerateConfig(builtin_backgrounds=4, builtin_foregrounds=4, height=224, width=224, positions=20)
    online = OnlineSamples(config, device="cuda", capacity=32)
    cpu = OnlineSamples(config, device="cpu")
    rng = np.random.default_rng(0)
    for _ in range(3):
        indices = rng.integers(0, online.n_samples, 32)
        images, depth, masks = online.read_device(indices)
        torch.cuda.synchronize()
        want = cpu.read(indices)
        np.testing.assert_array_equal(images.cpu().numpy(), want[0])
        np.testing.assert_array_equal(depth.cpu().numpy().view(np.uint16), want[1].view(np.uint16))
        np.testing.assert_array_equal(masks.cpu().numpy(), want[2])


# -- several objects per image ----------------------------------------------------------


def objects_tiny(**overrides) -> GenerateConfig:
    return tiny(objects_min=1, objects_max=3, max_overlap=0.8, occlusion="background", **overrides)


@pytest.fixture(scope="module")
def objects_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The arrays of a lossless objects_tiny() store made on the CPU."""
    import zarr

    path = tmp_path_factory.mktemp("online-objects") / "store.zarr"
    generate(objects_tiny(), path, RunOptions(device="cpu"))
    group = zarr.open_group(path, mode="r")
    arrays = {name: group[name][:] for name in ("images", "depth", "masks", "meta/object_offset")}
    counts = np.diff(arrays["meta/object_offset"])[INDICES]
    assert counts.min() == 1 and counts.max() == 3  # the indices read hold one, two and three objects
    return arrays


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_several_objects_read_equals_the_store(objects_store, device: str) -> None:
    """On CUDA capacity 4 < 10 indices: three launches of the objects kernel through one slot."""
    online = OnlineSamples(objects_tiny(), device=device, capacity=4)
    assert_same_as_store(online.read(INDICES), objects_store, INDICES)


def test_several_objects_launch_into_device_arrays_equals_the_store(objects_store) -> None:
    """The device path of read_device with several objects, Numba arrays for torch's tensors."""
    from numba import cuda

    online = OnlineSamples(objects_tiny(), device="cuda", capacity=4)
    indices = INDICES[:5]
    prepared = online.compositor.prepare(online.plan.objects_at(indices))
    assert prepared.objects is not None and len(prepared.table) > 5
    images = cuda.device_array((5, 16, 24, 3), np.uint8)
    masks = cuda.device_array((5, 16, 24), np.uint8)
    depth = cuda.device_array((5, 16, 24), np.uint16)
    stream = cuda.stream()
    with pytest.raises(ValueError, match="d_offset and instances"):
        online.launch(prepared, cuda.to_device(prepared.table), images, masks, depth, stream)
    online.launch(prepared, cuda.to_device(prepared.table), images, masks, depth, stream,
                  cuda.to_device(prepared.objects.offset), cuda.device_array((5, 16, 24), np.uint16))
    stream.synchronize()
    read = images.copy_to_host(), depth.copy_to_host().view(np.float16), masks.copy_to_host()
    assert_same_as_store(read, objects_store, indices)


def test_several_objects_filled_atlas_holds_every_objects_size(objects_store) -> None:
    online = OnlineSamples(objects_tiny(), device="cpu")
    assert online.fill_atlas()
    used = online.compositor.atlas.used
    assert_same_as_store(online.read(INDICES), objects_store, INDICES)
    assert online.compositor.atlas.used == used  # extra objects' sizes were resized up front too


@pytest.mark.gpu
def test_several_objects_read_device_equals_the_store(objects_store) -> None:
    online = OnlineSamples(objects_tiny(), device="cuda", capacity=4)
    images, depth, masks = online.read_device(INDICES)
    assert_same_as_store((images.cpu().numpy(), depth.cpu().numpy(), masks.cpu().numpy()), objects_store, INDICES)


# -- blending modes ---------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"blend": "feather", "feather_sigma": 1.0},
                                       {"blend": "motion", "harmonize": True, "objects_min": 1, "objects_max": 3,
                                        "max_overlap": 0.8}], ids=["feather", "motion+harmonize objects"])
def test_blended_reads_and_launches_equal_the_store(tmp_path: Path, overrides: dict) -> None:
    """``--blend``/``--harmonize`` run online too: CPU reads, CUDA reads and the device
    launch (read_device's path) give the blended store's images."""
    import zarr
    from numba import cuda

    config = tiny(**overrides)
    generate(config, tmp_path / "s.zarr", RunOptions(device="cpu"))
    group = zarr.open_group(tmp_path / "s.zarr", mode="r")
    arrays = {name: group[name][:] for name in ("images", "depth", "masks")}
    assert not np.array_equal(arrays["images"], OnlineSamples(tiny(**{**overrides, "blend": "alpha", "harmonize": False}),
                                                              device="cpu").read(np.arange(24))[0])
    for device in ("cpu", "cuda"):
        assert_same_as_store(OnlineSamples(config, device=device, capacity=4).read(INDICES), arrays, INDICES)
    online = OnlineSamples(config, device="cuda", capacity=8)
    indices = INDICES[:5]
    prepared = online.compositor.prepare(online._plan_at(indices))
    outs = [cuda.device_array((5, 16, 24, 3), np.uint8), cuda.device_array((5, 16, 24), np.uint8),
            cuda.device_array((5, 16, 24), np.uint16)]
    extra = () if prepared.objects is None else (cuda.to_device(prepared.objects.offset),
                                                 cuda.device_array((5, 16, 24), np.uint16))
    stream = cuda.stream()
    online.launch(prepared, cuda.to_device(prepared.table), *outs, stream, *extra)
    stream.synchronize()
    read = outs[0].copy_to_host(), outs[2].copy_to_host().view(np.float16), outs[1].copy_to_host()
    assert_same_as_store(read, arrays, indices)
