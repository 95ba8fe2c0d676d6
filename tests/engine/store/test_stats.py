"""Per-channel image statistics: streaming pass, generate-time counts, resume."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

import engine.compose.generate as gen
from engine.compose.generate import generate
from engine.config import RunOptions
from engine.errors import StoreError
from engine.store import stats as S
from engine.store.zarr_store import ZarrWriter
from tests.small_stores import disk_full_at_shard, small


def reference(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy float64 mean and std per channel of ``(N, H, W, 3)`` images."""
    x = images.astype(np.float64).reshape(-1, 3)
    return x.mean(0), x.std(0)


def stored_images(root: Path) -> np.ndarray:
    group = zarr.open_group(root, mode="r")
    if "images" in group:
        return group["images"][:]
    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in group["images_jpeg"][:]])


@pytest.fixture(scope="module")
def lossless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stats") / "s.zarr"
    generate(small(), out)
    return out


def test_histogram_stats_equal_numpy() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 7, 9, 3), dtype=np.uint8)
    images[..., 2] = rng.integers(250, 256, (5, 7, 9))  # nearly constant: variance from a small difference
    stats = S.ChannelHistogram().add(images[:2]).merge(S.ChannelHistogram().add(images[2:])).to_stats("images")
    mean, std = reference(images)
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(stats["std"], std, rtol=1e-12)
    assert stats["samples"] == 5 and stats["source"] == "images"
    with pytest.raises(ValueError, match="uint8"):
        S.ChannelHistogram().add(images.astype(np.float32))


def test_streaming_pass_equals_numpy_on_a_lossless_store(lossless: Path) -> None:
    stats = S.channel_stats(lossless, threads=2)
    mean, std = reference(stored_images(lossless))
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(stats["std"], std, rtol=1e-12)
    assert stats["samples"] == 48 and stats["source"] == "images"


def test_generate_saves_the_streaming_pass_statistics(lossless: Path) -> None:
    saved = S.read_stats(lossless)
    assert saved == S.channel_stats(lossless)  # integer counts: exactly equal, not just close
    assert json.loads((lossless / "zarr.json").read_text())["attributes"]["fgbg"]["stats"] == saved


def test_streaming_pass_decodes_a_jpeg_store(tmp_path: Path) -> None:
    out = tmp_path / "j.zarr"
    generate(small(image_codec="jpeg"), out)
    assert S.read_stats(out) is None  # generate counts lossless stores only; info --stats computes these
    stats = S.store_stats(out)
    mean, std = reference(stored_images(out))
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(stats["std"], std, rtol=1e-12)
    assert stats["source"] == "images_jpeg" and S.read_stats(out) == stats


def test_resumed_store_stats_cover_every_sample(lossless: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.zarr"
    real = disk_full_at_shard(monkeypatch, 2)
    with pytest.raises(OSError):
        generate(small(), out)
    assert S.read_stats(out) is None  # saved only when the store completes
    monkeypatch.setattr(ZarrWriter, "write_shard", real)
    scanned: list[list[int]] = []
    histogram = S.histogram
    monkeypatch.setattr(S, "histogram", lambda path, shards=None, threads=None: (
        scanned.append(sorted(shards)), histogram(path, shards, threads))[1])
    report = generate(small(), out, RunOptions(resume=True))
    assert report.resumed and 0 < report.shards_written < 3
    assert S.read_stats(out) == S.read_stats(lossless)  # every sample, not just this run's
    assert scanned and len(scanned[0]) == 3 - report.shards_written  # only the earlier run's shards were read


def test_images_kept_on_the_device_leave_stats_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch without host images (nvCOMP compressed them on the GPU): nothing
    to count, so no statistics rather than statistics of some shards."""
    from numcodecs import Zstd

    real = gen.Compositor.composite
    codec = Zstd(level=small().compression_level)

    def device_images(self, placements):
        batch = real(self, placements)
        images, c = batch.images, small().chunk_size
        frames = lambda: [bytes(codec.encode(np.ascontiguousarray(images[i : i + c]))) for i in range(0, len(images), c)]
        return dataclasses.replace(batch, images=None, compressed={"images": frames}, histogram=None)

    monkeypatch.setattr(gen.Compositor, "composite", device_images)
    out = tmp_path / "d.zarr"
    generate(small(), out)
    assert S.read_stats(out) is None
    stats = S.store_stats(out)  # what info --stats does
    assert stats["samples"] == 48 and S.read_stats(out) == stats


def test_saved_stats_are_reused_until_the_done_samples_change(lossless: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(S, "channel_stats", lambda *a, **k: pytest.fail("saved statistics should be reused"))
    assert S.store_stats(lossless) == S.read_stats(lossless)


def test_damaged_shard_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "bad.zarr"
    generate(small(), out)
    shard = out / "images" / "c" / "1" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:-30])
    with pytest.raises(StoreError, match="images shard 1 .*damaged"):
        S.channel_stats(out)
    with pytest.raises(StoreError, match="not done"):
        S.histogram(tmp_path / "bad.zarr", [7])
