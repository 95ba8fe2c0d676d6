"""The foreground atlas: vectorised lookups give the offsets (and bytes) of a plain per-key reference."""

from __future__ import annotations

import numpy as np
import pytest

from engine.compose.compositor import ForegroundAtlas


def reference_offsets(atlas_fgs: list[np.ndarray], batches: list[tuple[np.ndarray, ...]], max_bytes: int):
    """The atlas as a dict of (fg, h, w) -> offset, filled in sorted key order per batch,
    emptied when it would outgrow ``max_bytes``; returns each batch's offsets."""
    offsets: dict[tuple[int, int, int], int] = {}
    used, out = 0, []
    for fg, h, w in batches:
        keys = sorted({(int(a), int(b), int(c)) for a, b, c in zip(fg, h, w)})
        missing = [k for k in keys if k not in offsets]
        need = sum(k[1] * k[2] * 4 for k in missing)
        if used + need > max_bytes and offsets:
            offsets, used, missing = {}, 0, keys
        for k in sorted(missing, key=lambda k: k[0]):  # by foreground, then as given (stable)
            offsets[k] = used
            used += k[1] * k[2] * 4
        out.append(np.array([offsets[(int(a), int(b), int(c))] for a, b, c in zip(fg, h, w)], np.int64))
    return out


@pytest.mark.parametrize("max_bytes", [1 << 30, 5_000])  # the second empties the atlas on the way
def test_lookup_matches_the_per_key_reference(max_bytes: int) -> None:
    rng = np.random.default_rng(0)
    fgs = [rng.integers(0, 256, (int(rng.integers(4, 12)), int(rng.integers(4, 12)), 4), dtype=np.uint8)
           for _ in range(5)]
    batches = [(rng.integers(0, 5, 40), rng.integers(1, 9, 40), rng.integers(1, 9, 40)) for _ in range(6)]
    atlas = ForegroundAtlas(fgs, max_bytes=max_bytes)
    generations = []
    for (fg, h, w), want in zip(batches, reference_offsets(fgs, batches, max_bytes)):
        got = atlas.lookup(fg, h, w)
        np.testing.assert_array_equal(got, want)
        for k in range(len(fg)):  # each entry holds its foreground at its size
            n = int(h[k] * w[k] * 4)
            entry = atlas.buffer[got[k] : got[k] + n].reshape(int(h[k]), int(w[k]), 4)
            if fgs[fg[k]].shape[:2] == (h[k], w[k]):
                np.testing.assert_array_equal(entry, fgs[fg[k]])
        generations.append(atlas.generation)
    assert (max_bytes < 1 << 30) == (len(set(generations)) > 1)


def test_lookup_of_known_keys_adds_nothing() -> None:
    fgs = [np.full((6, 6, 4), 200, np.uint8)]
    atlas = ForegroundAtlas(fgs)
    first = atlas.lookup(np.array([0, 0]), np.array([3, 6]), np.array([3, 6]))
    used = atlas.used
    again = atlas.lookup(np.array([0, 0, 0]), np.array([6, 3, 6]), np.array([6, 3, 6]))
    assert atlas.used == used and list(again) == [first[1], first[0], first[1]]
    assert len(atlas.lookup(np.array([], np.int64), np.array([], np.int64), np.array([], np.int64))) == 0


def test_lookup_refuses_keys_it_cannot_code() -> None:
    atlas = ForegroundAtlas([np.zeros((4, 4, 4), np.uint8)])
    with pytest.raises(ValueError, match="sizes in 1..65535"):
        atlas.lookup(np.array([0]), np.array([70_000]), np.array([4]))


@pytest.mark.parametrize("occlusion", ["none", "background"])
def test_several_objects_composite_far_to_near_as_the_reference(occlusion: str) -> None:
    """Real plan, real atlas and plane depth: the compositor's batch equals the
    plain reference fed the objects in plan order (it sorts them itself)."""
    from engine.compose.compositor import Compositor
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for
    from engine.config import GenerateConfig
    from kernels import placement as P
    from kernels.reference import composite_objects_reference

    config = GenerateConfig(builtin_backgrounds=2, builtin_foregrounds=3, height=32, width=48, positions=2,
                            objects_min=2, objects_max=4, max_overlap=1.0, occlusion=occlusion, save_alpha=True)
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    compositor = Compositor(assets, depth, config)
    objects = plan.objects(0, plan.n_samples)
    batch = compositor.composite(objects)
    table = compositor.table(objects.objects)  # plan order
    table = np.concatenate([table, objects.instance_id[:, None]], axis=1)
    want = composite_objects_reference(compositor.bg_images, compositor.bg_depth16, compositor.atlas.view(), table,
                                       objects.offset, config.mask_threshold, occlusion == "background")
    np.testing.assert_array_equal(batch.images, want[0])
    np.testing.assert_array_equal(batch.masks, want[1])
    np.testing.assert_array_equal(batch.depth.view(np.uint16), want[2])
    np.testing.assert_array_equal(batch.instances, want[3])
    assert np.abs(batch.alpha.astype(int) - want[4].astype(int)).max() <= 1
    np.testing.assert_array_equal(batch.objects["offset"], objects.offset)
    np.testing.assert_array_equal(np.float16(batch.objects["depth"]).view(np.uint16), table[:, P.DEPTH])
    # up to four objects per image, all of them seen somewhere
    assert len(np.unique(batch.instances)) == 5 and (np.diff(objects.offset) > 1).all()


# -- reused output arrays and the batch's statistics ---------------------------------------


def test_output_buffers_are_reused_only_after_release() -> None:
    from engine.compose.compositor import OutputBuffers

    buffers = OutputBuffers(4, 5, alpha=True, keep=1)
    a, release_a = buffers.take(3, instances=False)
    b, _ = buffers.take(3, instances=False)
    assert not np.shares_memory(a["images"], b["images"])  # a is still out: never handed out twice
    assert a["images"].shape == (3, 4, 5, 3) and a["alpha"].shape == (3, 4, 5) and a["instances"] is None
    release_a()
    release_a()  # a second release gives nothing back twice
    c, release_c = buffers.take(2, instances=False)  # fewer samples: the same memory, viewed shorter
    assert np.shares_memory(c["images"], a["images"]) and c["masks"].shape == (2, 4, 5)
    d, _ = buffers.take(2, instances=False)
    assert not np.shares_memory(d["images"], a["images"])
    release_c()
    e, _ = buffers.take(2, instances=True)  # several objects need instance arrays: not the kept set
    assert e["instances"].shape == (2, 4, 5) and not np.shares_memory(e["images"], a["images"])


def small_compositor(blend: str = "alpha", objects: int = 1, count_images: bool = True):
    from engine.compose.compositor import Compositor
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for
    from engine.config import GenerateConfig

    many = {"objects_min": 2, "objects_max": objects, "max_overlap": 1.0} if objects > 1 else {}
    config = GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=3, height=32, width=48, positions=3,
                            truncation=0.5, blend=blend, **many)
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    work = plan.objects(0, plan.n_samples) if objects > 1 else plan.placements(0, plan.n_samples)
    return Compositor(assets, depth, config, count_images=count_images), work


@pytest.mark.parametrize("objects", [1, 4])
def test_batch_histogram_counts_the_batch_images(objects: int) -> None:
    from tests.kernels.test_histogram import bincount_reference

    compositor, work = small_compositor(objects=objects)
    first = compositor.composite(work)
    want = bincount_reference(first.images)
    np.testing.assert_array_equal(first.histogram, want)
    first.release()
    again = compositor.composite(work)  # into the released arrays: the same batch, the same counts
    np.testing.assert_array_equal(again.histogram, want)
    np.testing.assert_array_equal(bincount_reference(again.images), want)


def test_no_batch_histogram_after_a_blending_pass_or_when_not_asked() -> None:
    pytest.importorskip("kornia")
    compositor, work = small_compositor(blend="feather")
    assert compositor.composite(work).histogram is None  # pixels around the objects changed: the writers count
    compositor, work = small_compositor(count_images=False)
    assert compositor.composite(work).histogram is None


@pytest.mark.parametrize("shape, dtype", [((3, 4, 5, 3), np.uint8), ((2, 4, 5), np.uint16), ((0, 4, 5), np.uint8)])
def test_small_pages_are_plain_writable_c_arrays(shape: tuple[int, ...], dtype: type) -> None:
    from engine.compose.compositor import small_pages

    a = small_pages(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    a[...] = 7
    assert int(a.sum()) == 7 * a.size
