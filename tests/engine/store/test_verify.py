"""Damaged stores: verify finds each kind of damage, info flags it, readers name it
in one line, and generate --resume rewrites it to the original bytes."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from engine.compose.generate import generate
from engine.config import RunOptions
from engine.errors import StoreError
from engine.learn.data import StoreImages, load_split
from engine.store.preview import contact_sheet
from engine.store.shard_codec import _crc32c
from engine.store.verify import StoreShards
from engine.store.zarr_store import inspect_store
from tests.small_stores import several_objects, small, tree

runner = CliRunner()


def delete(path: Path) -> None:
    path.unlink()


def flip_first_byte(path: Path) -> None:
    """Breaks the first chunk: a Zstandard frame's magic number, or a vlen chunk's item count."""
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    path.write_bytes(bytes(raw))


def truncate_index(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 10)


DAMAGE: dict[str, Callable[[Path], None]] = {"deleted": delete, "flipped": flip_first_byte, "truncated": truncate_index}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verify")
    out = {"zstd": root / "zstd.zarr", "jpeg": root / "jpeg.zarr"}
    generate(small(), out["zstd"])
    generate(small(image_codec="jpeg"), out["jpeg"])
    return out


def damaged_copy(stores: dict[str, Path], tmp_path: Path, codec: str, damage: str, array: str | None = None) -> Path:
    """A copy of the ``codec`` store with shard 1 of ``array`` (its images by default) damaged."""
    copy = tmp_path / f"{codec}-{damage}.zarr"
    shutil.copytree(stores[codec], copy)
    name = array or ("images_jpeg" if codec == "jpeg" else "images")
    DAMAGE[damage](StoreShards(copy).path(name, 1))
    return copy


@pytest.mark.parametrize("codec", ["zstd", "jpeg"])
def test_clean_stores_verify_clean(stores: dict[str, Path], codec: str) -> None:
    assert StoreShards(stores[codec]).check("full") == []
    result = runner.invoke(app, ["verify", str(stores[codec]), "-q"])
    assert result.exit_code == 0 and "clean" in result.output, result.output
    assert inspect_store(stores[codec]).damaged == ()


@pytest.mark.parametrize("codec", ["zstd", "jpeg"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_verify_lists_the_damaged_shard(stores: dict[str, Path], tmp_path: Path, codec: str, damage: str) -> None:
    store = damaged_copy(stores, tmp_path, codec, damage)
    problems = StoreShards(store).check("full", threads=2)
    name = "images_jpeg" if codec == "jpeg" else "images"
    assert [(p.array, p.shard, p.start, p.stop) for p in problems] == [(name, 1, 16, 32)]
    result = runner.invoke(app, ["verify", str(store), "-q"])
    assert result.exit_code == 1, result.output
    assert f"{name} shard 1 (samples 16-31)" in result.output and "DAMAGED" in result.output


def test_verify_checks_every_array_and_decodes_jpegs(stores: dict[str, Path], tmp_path: Path) -> None:
    store = damaged_copy(stores, tmp_path, "zstd", "flipped", array="depth")
    assert [(p.array, p.shard) for p in StoreShards(store).check("full")] == [("depth", 1)]
    jpeg = tmp_path / "badjpeg.zarr"
    shutil.copytree(stores["jpeg"], jpeg)
    path = StoreShards(jpeg).path("images_jpeg", 2)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"\xff\xd8")  # the first JPEG: corrupt its header, keep the chunk's layout
    raw[start : start + 4] = b"\x00\x00\x00\x00"
    path.write_bytes(bytes(raw))
    problems = StoreShards(jpeg).check("full")
    assert [(p.array, p.shard) for p in problems] == [("images_jpeg", 2)] and "checksum" in problems[0].reason
    # a bad JPEG under a sound checksum (a faulty encoder): only decoding it finds it
    offset, nbytes = np.frombuffer(bytes(raw[-(4 * 16 + 4) : -4]), "<u8").reshape(4, 2)[0]
    raw[offset + nbytes - 4 : offset + nbytes] = _crc32c(bytes(raw[offset : offset + nbytes - 4]))
    path.write_bytes(bytes(raw))
    problems = StoreShards(jpeg).check("full")
    assert [(p.array, p.shard) for p in problems] == [("images_jpeg", 2)] and "JPEG" in problems[0].reason
    assert StoreShards(jpeg).check("full", decode_jpeg=False) == []


def test_verify_checks_alpha_and_instances_of_several_objects(tmp_path: Path) -> None:
    store = tmp_path / "alpha.zarr"
    generate(several_objects(save_alpha=True), store)
    shards = StoreShards(store)
    assert shards.names == ("images", "masks", "depth", "alpha", "instances") and shards.check("full") == []
    flip_first_byte(shards.path("alpha", 1))
    assert [(p.array, p.shard) for p in StoreShards(store).check("full")] == [("alpha", 1)]


def test_verify_exit_2_for_what_is_not_a_store(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 2 and "not a Zarr v3 store" in result.output


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_info_says_shards_are_damaged(stores: dict[str, Path], tmp_path: Path, damage: str) -> None:
    store = damaged_copy(stores, tmp_path, "zstd", damage)
    assert [(p.array, p.shard) for p in inspect_store(store).damaged] == [("images", 1)]
    result = runner.invoke(app, ["info", str(store)])
    assert result.exit_code == 0, result.output
    assert "complete, but 1 shards missing/damaged: run `cli.py verify" in result.output


@pytest.mark.parametrize("codec", ["zstd", "jpeg"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_training_reads_name_the_damaged_shard(stores: dict[str, Path], tmp_path: Path, codec: str, damage: str) -> None:
    store = damaged_copy(stores, tmp_path, codec, damage)
    name = "images_jpeg" if codec == "jpeg" else "images"
    where = re.escape(f"{name} shard 1 (samples 16-31) is damaged")
    with pytest.raises(StoreError, match=f"^{re.escape(str(store))}: {where}"):
        load_split(store, np.arange(48), (16, 24), (4, 6), threads=2)
    with pytest.raises(StoreError, match=where):
        contact_sheet(store, n=48)
    if codec == "zstd":  # --stream reads images through the ShardReader
        with pytest.raises(StoreError, match=f"^{re.escape(str(store))}: {where}"):
            StoreImages(store, np.arange(48), (16, 24), threads=2)[np.array([3, 16, 20])]


def test_reads_of_undamaged_shards_still_work(stores: dict[str, Path], tmp_path: Path) -> None:
    store = damaged_copy(stores, tmp_path, "zstd", "deleted")
    clean = load_split(stores["zstd"], np.arange(0, 16), (16, 24), (4, 6), threads=1)
    kept = load_split(store, np.arange(0, 16), (16, 24), (4, 6), threads=1)
    np.testing.assert_array_equal(kept.images, clean.images)
    np.testing.assert_array_equal(kept.depth, clean.depth)


def test_cli_preview_of_a_damaged_store_is_one_line(stores: dict[str, Path], tmp_path: Path) -> None:
    store = damaged_copy(stores, tmp_path, "zstd", "flipped")
    result = runner.invoke(app, ["preview", str(store), "--n", "48", "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 2 and "images shard 1 (samples 16-31) is damaged" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("codec", ["zstd", "jpeg"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_rewrites_damaged_shards_to_the_same_bytes(stores: dict[str, Path], tmp_path: Path, codec: str,
                                                          damage: str) -> None:
    store = damaged_copy(stores, tmp_path, codec, damage)
    config = small(image_codec=codec)
    # a flipped chunk byte leaves the index intact: only the full check sees it
    check = "full" if damage == "flipped" else "index"
    report = generate(config, store, RunOptions(resume=True, resume_check=check))
    assert report.shards_written == 1
    assert tree(store) == tree(stores[codec])


def test_resume_index_check_keeps_shards_whose_index_is_sound(stores: dict[str, Path], tmp_path: Path) -> None:
    store = damaged_copy(stores, tmp_path, "zstd", "flipped")
    assert generate(small(), store, RunOptions(resume=True)).shards_written == 0
